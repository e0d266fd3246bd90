package main

import (
	"context"
	"io"
	"net/http"
	"time"
)

// startLoad runs workers goroutines that each GET url in a loop until ctx is
// done, pausing between requests. The url always points at the service's own
// listener, so the load stays inside the pod's network namespace.
func startLoad(ctx context.Context, url string, workers int, pause time.Duration) {
	client := &http.Client{
		Timeout: 10 * time.Second,
		Transport: &http.Transport{
			MaxIdleConns:        workers,
			MaxIdleConnsPerHost: workers,
			IdleConnTimeout:     30 * time.Second,
		},
	}
	for i := 0; i < workers; i++ {
		go loadWorker(ctx, client, url, pause)
	}
}

func loadWorker(ctx context.Context, client *http.Client, url string, pause time.Duration) {
	for ctx.Err() == nil {
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
		if err != nil {
			return
		}
		wait := pause
		resp, err := client.Do(req)
		if err == nil {
			_, _ = io.Copy(io.Discard, resp.Body)
			_ = resp.Body.Close()
		} else {
			// The server is starting or shutting down: back off instead of spinning.
			wait = max(pause, 100*time.Millisecond)
		}
		if wait > 0 {
			select {
			case <-ctx.Done():
				return
			case <-time.After(wait):
			}
		}
	}
}
