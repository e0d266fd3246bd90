package main

import (
	"net/http"
	"os"
	"strconv"
	"time"
)

// unbufferedExporter writes every metric line with its own write(2) and
// re-reads a small /proc file per line: no bufio, so one export costs
// thousands of syscalls. The storm is in syscalls, not in Go code.
type unbufferedExporter struct {
	sink *os.File // /dev/null, standing in for a log file or pipe
}

// export writes n metric lines, one write(2) each, and polls the process's
// own stat file every 16 lines.
//
//go:noinline
func (e *unbufferedExporter) export(n int) (int, error) {
	line := make([]byte, 0, 64)
	small := make([]byte, 128)
	written := 0
	for i := 0; i < n; i++ {
		line = append(line[:0], "faultsvc_requests_total{shard=\""...)
		line = strconv.AppendInt(line, int64(i%32), 10)
		line = append(line, "\"} 1\n"...)
		k, err := e.sink.Write(line)
		if err != nil {
			return written, err
		}
		written += k
		if i%16 == 0 {
			f, err := os.Open("/proc/self/stat")
			if err == nil {
				_, _ = f.Read(small)
				_ = f.Close()
			}
		}
	}
	return written, nil
}

func (e *unbufferedExporter) serveExport(w http.ResponseWriter, _ *http.Request) {
	n, err := e.export(2000)
	if err != nil {
		http.Error(w, err.Error(), http.StatusInternalServerError)
		return
	}
	writeJSON(w, map[string]int{"bytes": n})
}

func init() {
	registerMode(faultMode{
		name:    "syscall",
		summary: "syscall storm: one write(2) per line in (*unbufferedExporter).export",
		setup: func(mux *http.ServeMux) loadSpec {
			sink, err := os.OpenFile(os.DevNull, os.O_WRONLY, 0)
			if err != nil {
				panic("faultsvc: cannot open " + os.DevNull + ": " + err.Error())
			}
			e := &unbufferedExporter{sink: sink}
			mux.HandleFunc("/api/export", e.serveExport)
			// Two clients, each pausing 10 ms between exports of 2000 lines.
			return loadSpec{path: "/api/export", workers: 2, pause: 10 * time.Millisecond}
		},
	})
}
