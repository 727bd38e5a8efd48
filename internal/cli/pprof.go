package cli

import (
	"fmt"
	"net"
	"net/http"
	"net/http/pprof"
)

// ServePprof serves Go's profiles (/debug/pprof/) on addr until the
// returned function is called. It serves them from a mux of its own, so
// that nothing else registered on http.DefaultServeMux is exposed there.
func ServePprof(addr string) (stop func(), err error) {
	lis, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("pprof: %w", err)
	}
	mux := http.NewServeMux()
	mux.HandleFunc("/debug/pprof/", pprof.Index)
	mux.HandleFunc("/debug/pprof/cmdline", pprof.Cmdline)
	mux.HandleFunc("/debug/pprof/profile", pprof.Profile)
	mux.HandleFunc("/debug/pprof/symbol", pprof.Symbol)
	mux.HandleFunc("/debug/pprof/trace", pprof.Trace)
	srv := &http.Server{Handler: mux}
	go func() { _ = srv.Serve(lis) }()
	return func() { _ = srv.Close() }, nil
}
