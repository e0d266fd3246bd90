package main

import (
	"net/http"
	"time"
)

// auditEvent is one record for the audit trail.
type auditEvent struct {
	at   time.Time
	path string
}

// auditLog hands events to a single writer over an unbuffered channel. The
// writer is slow (it "flushes to disk" for every event), so every request
// handler blocks in record until the writer is ready: channel blocking that
// shows up in the block profile, not in CPU.
type auditLog struct {
	events  chan auditEvent
	written int64
}

func newAuditLog() *auditLog {
	a := &auditLog{events: make(chan auditEvent)}
	go a.drain()
	return a
}

// record sends one event; it blocks while the writer is busy.
//
//go:noinline
func (a *auditLog) record(ev auditEvent) {
	a.events <- ev
}

// drain is the lone slow consumer.
//
//go:noinline
func (a *auditLog) drain() {
	for range a.events {
		time.Sleep(2 * time.Millisecond) // the per-event fsync nobody batched
		a.written++
	}
}

func (a *auditLog) serveOrder(w http.ResponseWriter, r *http.Request) {
	a.record(auditEvent{at: time.Now(), path: r.URL.Path})
	writeJSON(w, map[string]string{"status": "accepted"})
}

func init() {
	registerMode(faultMode{
		name:    "chan",
		summary: "handlers blocked sending on an unbuffered channel in (*auditLog).record",
		setup: func(mux *http.ServeMux) loadSpec {
			a := newAuditLog()
			mux.HandleFunc("/api/orders", a.serveOrder)
			// Sixteen clients against a consumer that takes one event per 2 ms.
			return loadSpec{path: "/api/orders", workers: 16}
		},
	})
}
