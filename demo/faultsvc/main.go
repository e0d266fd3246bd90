// Command faultsvc is the sandbox's Go workload: one small HTTP service that
// reproduces one production fault at a time (lock contention, a goroutine
// leak, CPU throttling, channel blocking, GC pressure, a syscall storm) and
// drives itself with a built-in load generator, so a pod running it misbehaves
// on its own. Every mode serves net/http/pprof and expvar on the pprof address.
//
// The mode comes from -mode or FAULT_MODE; every flag has an environment twin
// so pod manifests can set it without a command line.
package main

import (
	"context"
	"errors"
	"expvar"
	"flag"
	"fmt"
	"log"
	"net"
	"net/http"
	_ "net/http/pprof" // registers /debug/pprof/ on http.DefaultServeMux
	"os"
	"os/signal"
	"runtime"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// blockProfileRate samples, on average, one blocking event per 100 µs spent
// blocked: enough for a channel fault to fill the block profile within a
// second, cheap enough to leave on in a real service.
const blockProfileRate = 100_000

// mutexProfileFraction reports one in five contention events, the value the
// Go documentation suggests for production.
const mutexProfileFraction = 5

// loadSpec describes the traffic a mode's built-in load generator sends to
// its own API: workers goroutines each GET path in a loop, pausing between
// requests.
type loadSpec struct {
	path    string
	workers int
	pause   time.Duration
}

// faultMode is one fault: it registers its API handlers and says how to load
// them.
type faultMode struct {
	name    string
	summary string
	setup   func(mux *http.ServeMux) loadSpec
}

var modes = map[string]faultMode{}

func registerMode(m faultMode) { modes[m.name] = m }

func modeNames() []string {
	names := make([]string, 0, len(modes))
	for n := range modes {
		names = append(names, n)
	}
	sort.Strings(names)
	return names
}

func envOr(key, def string) string {
	if v, ok := os.LookupEnv(key); ok && v != "" {
		return v
	}
	return def
}

func envBool(key string, def bool) bool {
	v, ok := os.LookupEnv(key)
	if !ok || v == "" {
		return def
	}
	b, err := strconv.ParseBool(v)
	if err != nil {
		log.Fatalf("faultsvc: environment variable %s=%q is not a boolean (use true or false)", key, v)
	}
	return b
}

type config struct {
	mode           string
	appAddr        string
	pprofAddr      string
	noContention   bool
	load           bool
	loadMultiplier float64
}

func parseConfig(args []string) config {
	fs := flag.NewFlagSet("faultsvc", flag.ExitOnError)
	var c config
	fs.StringVar(&c.mode, "mode", envOr("FAULT_MODE", "healthy"),
		"fault to reproduce: "+strings.Join(modeNames(), ", ")+" (env FAULT_MODE)")
	fs.StringVar(&c.appAddr, "addr", envOr("APP_ADDR", ":8080"), "address of the JSON API (env APP_ADDR)")
	fs.StringVar(&c.pprofAddr, "pprof-addr", envOr("PPROF_ADDR", ":6060"),
		"address of net/http/pprof and expvar; 127.0.0.1:6060 for the hardened set-up (env PPROF_ADDR)")
	fs.BoolVar(&c.noContention, "no-contention-profiles", envBool("NO_CONTENTION_PROFILES", false),
		"leave the mutex and block profiles disabled, as most services do (env NO_CONTENTION_PROFILES)")
	fs.BoolVar(&c.load, "load", envBool("LOAD", true),
		"run the built-in load generator against the own API (env LOAD)")
	fs.Float64Var(&c.loadMultiplier, "load-scale", 1, "multiply the load generator's worker count")
	_ = fs.Parse(args)
	return c
}

// loopbackTarget turns the API listener's address into one the load
// generator can dial: the same port on 127.0.0.1 when the listener is on all
// addresses, so the traffic never leaves the process's network namespace.
func loopbackTarget(addr net.Addr) string {
	tcp, ok := addr.(*net.TCPAddr)
	if !ok {
		return addr.String()
	}
	host := "127.0.0.1"
	if !tcp.IP.IsUnspecified() {
		host = tcp.IP.String()
	}
	return net.JoinHostPort(host, strconv.Itoa(tcp.Port))
}

func main() {
	log.SetFlags(log.LstdFlags | log.LUTC)
	cfg := parseConfig(os.Args[1:])
	mode, ok := modes[cfg.mode]
	if !ok {
		log.Fatalf("faultsvc: unknown mode %q; choose one of: %s", cfg.mode, strings.Join(modeNames(), ", "))
	}
	if !cfg.noContention {
		runtime.SetMutexProfileFraction(mutexProfileFraction)
		runtime.SetBlockProfileRate(blockProfileRate)
	}
	expvar.NewString("mode").Set(mode.name)
	expvar.Publish("goroutines", expvar.Func(func() any { return runtime.NumGoroutine() }))

	appMux := http.NewServeMux()
	appMux.HandleFunc("/healthz", func(w http.ResponseWriter, _ *http.Request) {
		_, _ = w.Write([]byte("ok\n"))
	})
	spec := mode.setup(appMux)

	appLn, err := net.Listen("tcp", cfg.appAddr)
	if err != nil {
		log.Fatalf("faultsvc: cannot listen for the API on %s: %v", cfg.appAddr, err)
	}
	pprofLn, err := net.Listen("tcp", cfg.pprofAddr)
	if err != nil {
		log.Fatalf("faultsvc: cannot listen for pprof on %s: %v", cfg.pprofAddr, err)
	}

	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()

	appSrv := &http.Server{Handler: appMux, ReadHeaderTimeout: 5 * time.Second}
	pprofSrv := &http.Server{Handler: http.DefaultServeMux, ReadHeaderTimeout: 5 * time.Second}
	go serve(appSrv, appLn, "API")
	go serve(pprofSrv, pprofLn, "pprof")

	workers := int(float64(spec.workers)*cfg.loadMultiplier + 0.5)
	if !cfg.load || spec.path == "" {
		workers = 0
	}
	log.Printf("faultsvc mode=%s (%s) api=%s pprof=%s contention-profiles=%t load=%d workers on %s GOMAXPROCS=%d pid=%d %s",
		mode.name, mode.summary, appLn.Addr(), pprofLn.Addr(), !cfg.noContention, workers, spec.path,
		runtime.GOMAXPROCS(0), os.Getpid(), runtime.Version())

	loadCtx, stopLoad := context.WithCancel(ctx)
	defer stopLoad()
	if workers > 0 {
		startLoad(loadCtx, "http://"+loopbackTarget(appLn.Addr())+spec.path, workers, spec.pause)
	}

	<-ctx.Done()
	log.Printf("faultsvc: signal received, shutting down")
	stopLoad()
	shutdownCtx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
	defer cancel()
	_ = appSrv.Shutdown(shutdownCtx)
	_ = pprofSrv.Shutdown(shutdownCtx)
	fmt.Fprintln(os.Stderr, "faultsvc: stopped")
}

func serve(srv *http.Server, ln net.Listener, what string) {
	if err := srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
		log.Fatalf("faultsvc: %s server failed: %v", what, err)
	}
}
