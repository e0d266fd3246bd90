// Command goprog is the eBPF tests' target: a tiny Go process with one known
// behaviour per mode and net/http/pprof on 127.0.0.1 (address printed first).
//
//	cpu         one hot function (burnCPU) that calls an inlined helper
//	futex       OS threads that park and wake (timers + LockOSThread)
//	goroutines  a steady set of N parked goroutines, resized by GET /set?n=
//	churn       short-lived goroutines created and exiting all the time
//	gc          allocation pressure (GET /gc?n= also forces n cycles)
//	bench       after a line on stdin, time syscalls, goroutines and CPU work
package main

import (
	"flag"
	"fmt"
	"net"
	"net/http"
	_ "net/http/pprof"
	"os"
	"reflect"
	"runtime"
	"strconv"
	"sync"
	"syscall"
	"time"
)

var sink uint64

//go:noinline
func burnCPU(n int) uint64 {
	var h uint64 = 1469598103934665603
	for i := 0; i < n; i++ {
		h = mix(h, uint64(i))
	}
	return h
}

// mix is small enough to be inlined into burnCPU.
func mix(h, v uint64) uint64 {
	h ^= v
	h *= 1099511628211
	return h
}

func cpuMode() {
	for {
		sink += burnCPU(1 << 20)
	}
}

func futexMode() {
	// Each locked thread sleeps and wakes: the Ms park on futexes in between.
	for i := 0; i < 4; i++ {
		go func(d time.Duration) {
			runtime.LockOSThread()
			for {
				time.Sleep(d)
			}
		}(time.Duration(i+1) * 3 * time.Millisecond)
	}
	select {}
}

var (
	mu    sync.Mutex
	stops []chan struct{}
)

func setGoroutines(n int) {
	mu.Lock()
	defer mu.Unlock()
	for len(stops) < n {
		c := make(chan struct{})
		stops = append(stops, c)
		go func() { <-c }()
	}
	for len(stops) > n {
		close(stops[len(stops)-1])
		stops = stops[:len(stops)-1]
	}
}

func churnMode(rate int) {
	tick := time.NewTicker(time.Second / time.Duration(rate))
	for range tick.C {
		go func() { sink++ }()
	}
}

func gcMode() {
	var keep [][]byte
	for {
		for i := 0; i < 1000; i++ {
			keep = append(keep, make([]byte, 1024))
		}
		if len(keep) > 20000 {
			keep = nil
		}
		time.Sleep(time.Millisecond)
	}
}

// bench prints ns per getppid syscall, per goroutine created and exited, and
// per unit of CPU work: the cost measurements run it with and without probes.
func bench() {
	const nsys = 2000000
	t := time.Now()
	for i := 0; i < nsys; i++ {
		syscall.Getppid()
	}
	fmt.Printf("getppid_ns %.1f\n", float64(time.Since(t).Nanoseconds())/nsys)
	const ng = 100000
	var wg sync.WaitGroup
	t = time.Now()
	for i := 0; i < ng; i++ {
		wg.Add(1)
		go func() { wg.Done() }()
		wg.Wait()
	}
	fmt.Printf("goroutine_ns %.1f\n", float64(time.Since(t).Nanoseconds())/ng)
	t = time.Now()
	for i := 0; i < 200; i++ {
		sink += burnCPU(1 << 16)
	}
	fmt.Printf("burn_ns %.1f\n", float64(time.Since(t).Nanoseconds())/200)
}

func main() {
	mode := flag.String("mode", "cpu", "cpu|futex|goroutines|churn|gc|idle|bench")
	n := flag.Int("n", 50, "goroutines for -mode goroutines")
	rate := flag.Int("rate", 200, "goroutines per second for -mode churn")
	flag.Parse()
	http.HandleFunc("/set", func(w http.ResponseWriter, r *http.Request) {
		k, err := strconv.Atoi(r.URL.Query().Get("n"))
		if err != nil {
			http.Error(w, err.Error(), 400)
			return
		}
		setGoroutines(k)
		fmt.Fprintln(w, runtime.NumGoroutine())
	})
	http.HandleFunc("/gc", func(w http.ResponseWriter, r *http.Request) {
		k, err := strconv.Atoi(r.URL.Query().Get("n"))
		if err != nil {
			http.Error(w, err.Error(), 400)
			return
		}
		for i := 0; i < k; i++ {
			runtime.GC()
		}
		fmt.Fprintln(w, k)
	})
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	// Second line: where the runtime placed burnCPU, the symbolizer tests'
	// independent reference for PIE load bias.
	fmt.Println(ln.Addr().String())
	fmt.Printf("%x\n", reflect.ValueOf(burnCPU).Pointer())
	go http.Serve(ln, nil)
	switch *mode {
	case "cpu":
		cpuMode()
	case "futex":
		futexMode()
	case "goroutines":
		setGoroutines(*n)
		select {}
	case "churn":
		churnMode(*rate)
	case "gc":
		gcMode()
	case "bench":
		// Wait for "go" on stdin so probes can attach first.
		var b [1]byte
		os.Stdin.Read(b[:])
		bench()
	default:
		select {}
	}
}
