package main

import (
	"net/http"
	"sync"
)

// inventory keeps stock counts behind one mutex and, on every reservation,
// re-validates the whole table while still holding the lock: the classic
// "work inside the critical section" that serialises every request.
type inventory struct {
	mu       sync.Mutex
	stock    []int64
	checksum uint64
	reserved int64
}

func newInventory(n int) *inventory {
	inv := &inventory{stock: make([]int64, n)}
	for i := range inv.stock {
		inv.stock[i] = int64(1000 + i%13)
	}
	return inv
}

// reserve takes one unit of a SKU. The checksum loop over every SKU runs
// under the lock, so concurrent callers queue on inv.mu.
//
//go:noinline
func (inv *inventory) reserve(sku int) bool {
	inv.mu.Lock()
	defer inv.mu.Unlock()
	sum := uint64(14695981039346656037)
	for _, s := range inv.stock {
		sum ^= uint64(s)
		sum *= 1099511628211
	}
	inv.checksum = sum
	i := sku % len(inv.stock)
	if inv.stock[i] == 0 {
		return false
	}
	inv.stock[i]--
	inv.reserved++
	if inv.stock[i] < 10 {
		inv.stock[i] += 1000 // restock so the fault never runs dry
	}
	return true
}

func (inv *inventory) serveReserve(w http.ResponseWriter, _ *http.Request) {
	var ok int
	for j := 0; j < 4; j++ {
		if inv.reserve(j * 7919) {
			ok++
		}
	}
	writeJSON(w, map[string]int{"reserved": ok})
}

func init() {
	registerMode(faultMode{
		name:    "mutex",
		summary: "lock contention in (*inventory).reserve",
		setup: func(mux *http.ServeMux) loadSpec {
			inv := newInventory(100000)
			mux.HandleFunc("/api/reserve", inv.serveReserve)
			// Sixteen back-to-back clients: far more than one lock can serve.
			return loadSpec{path: "/api/reserve", workers: 16}
		},
	})
}
