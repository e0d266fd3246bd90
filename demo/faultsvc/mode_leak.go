package main

import (
	"log"
	"net/http"
	"sync/atomic"
	"time"
)

// maxLeaked caps the leak so a forgotten demo pod cannot exhaust the node:
// at about 30 leaked goroutines a second the cap is reached after ~30 minutes.
const maxLeaked = 60000

// update is what a subscriber would receive, if anyone ever sent one.
type update struct {
	key   string
	value []byte
}

// subscriber is a change-feed client. Each one gets its own goroutine that
// waits for updates on a channel that nothing ever sends on or closes: the
// goroutine, its stack and its buffer live for ever.
type subscriber struct {
	id      int64
	updates chan update
	buf     []byte
}

type feed struct {
	next   atomic.Int64
	leaked atomic.Int64
}

// watch waits for updates that never come.
//
//go:noinline
func (s *subscriber) watch() {
	for u := range s.updates {
		s.buf = append(s.buf[:0], u.value...)
	}
}

// subscribe registers a subscriber and starts its watcher, but the handler
// returns without ever unsubscribing: the leak.
func (f *feed) subscribe(w http.ResponseWriter, _ *http.Request) {
	if f.leaked.Load() >= maxLeaked {
		writeJSON(w, map[string]any{"subscribed": false, "reason": "leak cap reached"})
		return
	}
	s := &subscriber{id: f.next.Add(1), updates: make(chan update), buf: make([]byte, 512)}
	go s.watch()
	if f.leaked.Add(1) == maxLeaked {
		log.Printf("faultsvc: leak capped at %d goroutines", maxLeaked)
	}
	writeJSON(w, map[string]int64{"subscriber": s.id})
}

func init() {
	registerMode(faultMode{
		name:    "leak",
		summary: "goroutine leak in (*subscriber).watch",
		setup: func(mux *http.ServeMux) loadSpec {
			f := &feed{}
			mux.HandleFunc("/api/subscribe", f.subscribe)
			// One client every 33 ms: ~30 new goroutines a second that never exit.
			return loadSpec{path: "/api/subscribe", workers: 1, pause: 33 * time.Millisecond}
		},
	})
}
