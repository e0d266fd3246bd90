package main

import (
	"encoding/json"
	"net/http"
	"strconv"
	"sync"
	"time"
)

// item is one catalogue entry the JSON API serves.
type item struct {
	ID    int     `json:"id"`
	Name  string  `json:"name"`
	Price float64 `json:"price"`
	Stock int     `json:"stock"`
}

// catalogue is a read-mostly in-memory store behind an RWMutex: the well-behaved
// baseline the fault modes are compared against.
type catalogue struct {
	mu    sync.RWMutex
	items []item
}

func newCatalogue(n int) *catalogue {
	c := &catalogue{items: make([]item, n)}
	for i := range c.items {
		c.items[i] = item{ID: i + 1, Name: "item-" + strconv.Itoa(i+1), Price: float64(i%50) + 0.99, Stock: 100 + i%7}
	}
	return c
}

func (c *catalogue) list(limit int) []item {
	c.mu.RLock()
	defer c.mu.RUnlock()
	if limit <= 0 || limit > len(c.items) {
		limit = len(c.items)
	}
	out := make([]item, limit)
	copy(out, c.items[:limit])
	return out
}

func (c *catalogue) serveItems(w http.ResponseWriter, r *http.Request) {
	limit, _ := strconv.Atoi(r.URL.Query().Get("limit"))
	writeJSON(w, c.list(limit))
}

func writeJSON(w http.ResponseWriter, v any) {
	w.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(w).Encode(v)
}

func init() {
	registerMode(faultMode{
		name:    "healthy",
		summary: "JSON API under a gentle load",
		setup: func(mux *http.ServeMux) loadSpec {
			c := newCatalogue(200)
			mux.HandleFunc("/api/items", c.serveItems)
			// Two workers pausing 50 ms: about 40 requests/s, a quiet service.
			return loadSpec{path: "/api/items?limit=20", workers: 2, pause: 50 * time.Millisecond}
		},
	})
}
