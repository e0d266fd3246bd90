package main

import (
	"fmt"
	"net/http"
	"strings"
	"sync"
	"time"
)

// reportCacheCap bounds the retained heap: 2500 reports of ~100 KiB is about
// 250 MiB, after which the oldest entries are replaced.
const reportCacheCap = 2500

// reportRow is one line of a generated report; building thousands of them
// per request is the allocation churn.
type reportRow struct {
	key    string
	labels map[string]string
	values []float64
}

// reportCache keeps every rendered report "for later": the growing retained
// heap that makes each GC cycle mark more.
type reportCache struct {
	mu      sync.Mutex
	reports [][]byte
	next    int
}

// buildReport allocates thousands of short-lived rows and strings and renders
// them into one ~100 KiB report.
//
//go:noinline
func buildReport(seq int) []byte {
	rows := make([]*reportRow, 0, 64)
	var sb strings.Builder
	for i := 0; i < 2000; i++ {
		row := &reportRow{
			key:    fmt.Sprintf("series-%d-%d", seq, i),
			labels: map[string]string{"pod": "gc", "shard": fmt.Sprint(i % 16)},
			values: make([]float64, 16),
		}
		for j := range row.values {
			row.values[j] = float64(i*j) * 0.5
		}
		rows = append(rows, row)
		if len(rows) == cap(rows) {
			for _, r := range rows {
				fmt.Fprintf(&sb, "%s %s %v\n", r.key, r.labels["shard"], r.values[:2])
			}
			rows = rows[:0]
		}
	}
	return []byte(sb.String())
}

// keep retains a report, replacing the oldest once the cache is full.
func (c *reportCache) keep(report []byte) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if len(c.reports) < reportCacheCap {
		c.reports = append(c.reports, report)
		return
	}
	c.reports[c.next] = report
	c.next = (c.next + 1) % reportCacheCap
}

func (c *reportCache) serveReport(w http.ResponseWriter, _ *http.Request) {
	c.mu.Lock()
	seq := len(c.reports) + c.next
	c.mu.Unlock()
	report := buildReport(seq)
	c.keep(report)
	writeJSON(w, map[string]int{"bytes": len(report)})
}

func init() {
	registerMode(faultMode{
		name:    "gc",
		summary: "allocation churn in buildReport and a growing retained heap",
		setup: func(mux *http.ServeMux) loadSpec {
			c := &reportCache{}
			mux.HandleFunc("/api/report", c.serveReport)
			return loadSpec{path: "/api/report", workers: 2, pause: 20 * time.Millisecond}
		},
	})
}
