package main

import (
	"context"
	"flag"
	"fmt"
	"net"
	"runtime"
	"sync/atomic"
	"time"

	"github.com/shardd/shardd/internal/tracing/provider"
	"github.com/shardd/shardd/router"
	coltracepb "go.opentelemetry.io/proto/otlp/collector/trace/v1"
	"google.golang.org/grpc"
)

// tracingCmd measures what tracing costs the write path: one cluster
// whose nodes export to an OTLP collector (a sink in this process, which
// counts and drops the spans), written to through three routers that
// sample none, 1% or every write at the client. The settings alternate,
// run after run, each round starting with the next, so that the
// machine's drift hits all three alike; each is compared with "off"
// round by round, in writes/s and in CPU per write (the nodes', and this
// process's, which holds the clients and the sink).
//
//	go run ./bench tracing --groups 100 --clients 64 --duration 5s --rounds 3
func tracingCmd(args []string) error {
	fs := flag.NewFlagSet("tracing", flag.ExitOnError)
	groups := fs.Int("groups", 100, "ranges (Paxos groups), split evenly over the key space")
	clients := fs.Int("clients", 64, "concurrent writers in this process")
	duration := fs.Duration("duration", 5*time.Second, "how long each run writes")
	rounds := fs.Int("rounds", 3, "runs of each setting, alternated")
	size := fs.Int("value-size", 16, "value size in bytes")
	fs.Parse(args)

	sink, stopSink, err := startSpanSink()
	if err != nil {
		return err
	}
	defer stopSink()
	c, cleanup, err := setup(*groups, "", "--otlp-endpoint", sink.addr)
	if err != nil {
		return err
	}
	defer cleanup()
	if err := c.waitLeaders(2 * time.Minute); err != nil {
		return err
	}
	ctx := context.Background()
	seeds := []string{c.nodes[0].addr, c.nodes[1].addr, c.nodes[2].addr}
	settings := []struct {
		name   string
		sample float64
	}{{"off", 0}, {"1%", 0.01}, {"100%", 1}}
	clientsBySetting := make([]*router.Client, len(settings))
	for i, s := range settings {
		cfg := router.Config{Seeds: seeds}
		if s.sample > 0 {
			tp, err := provider.New(provider.Config{Endpoint: sink.addr, Sample: s.sample, ServiceName: "bench"})
			if err != nil {
				return err
			}
			defer tp.Shutdown(context.Background())
			cfg.TracerProvider = tp.TracerProvider()
		}
		rc, err := router.New(ctx, cfg)
		if err != nil {
			return err
		}
		defer rc.Close()
		clientsBySetting[i] = rc
	}
	fmt.Printf("tracing: 3 nodes exporting over OTLP, %d groups, %d clients, %d-byte values, sync on, %d rounds of %v per setting, %d CPUs\n",
		*groups, *clients, *size, *rounds, *duration, runtime.NumCPU())
	// A first run, not counted, warms the caches and the connections.
	runWrites(ctx, clientsBySetting[0], *clients, *duration/2, *size)
	var pids []int
	for _, p := range c.nodes {
		pids = append(pids, p.cmd.Process.Pid)
	}
	rates := make([][]float64, len(settings))
	cpus := make([][]float64, len(settings)) // µs per write, nodes and this process
	for round := range *rounds {
		// Each round starts with the next setting, so that none always
		// follows 100% (whose spans are still being exported) or runs
		// first.
		for j := range settings {
			i := (j + round) % len(settings)
			s := settings[i]
			spans0 := sink.spans.Load()
			m := startCPUMeter(pids, runtime.NumCPU())
			r := runWrites(ctx, clientsBySetting[i], *clients, *duration, *size)
			cpu := m.stop(r.ops, r.elapsed)
			rates[i] = append(rates[i], r.rate())
			cpus[i] = append(cpus[i], cpu.StoreMicros+cpu.LoadMicros)
			fmt.Printf("  round %d, sampling %-5s %8.0f writes/s, p50 %v, p99 %v, CPU/write %.0f µs (nodes %.0f, client and sink %.0f), %d errors, %d spans exported\n",
				round+1, s.name+":", r.rate(), pct(r.lat, 50), pct(r.lat, 99), cpu.StoreMicros+cpu.LoadMicros, cpu.StoreMicros, cpu.LoadMicros,
				r.errs, sink.spans.Load()-spans0)
		}
	}
	mean := func(xs []float64) float64 {
		t := 0.0
		for _, x := range xs {
			t += x
		}
		return t / float64(len(xs))
	}
	for i, s := range settings {
		w, cpu := ratioOf(rates[i], rates[0]), ratioOf(cpus[i], cpus[0])
		fmt.Printf("  sampling %-5s mean %6.0f writes/s, %.0f µs CPU/write; against off, round by round: writes/s median %.3f (%.3f-%.3f), CPU/write median %.3f (%.3f-%.3f)\n",
			s.name+":", mean(rates[i]), mean(cpus[i]), w.Median, w.Min, w.Max, cpu.Median, cpu.Min, cpu.Max)
	}
	return nil
}

// spanSink is an OTLP/gRPC trace collector that counts the spans it
// receives and keeps none.
type spanSink struct {
	coltracepb.UnimplementedTraceServiceServer
	addr  string
	spans atomic.Int64
}

func startSpanSink() (*spanSink, func(), error) {
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, nil, err
	}
	s := &spanSink{addr: lis.Addr().String()}
	srv := grpc.NewServer()
	coltracepb.RegisterTraceServiceServer(srv, s)
	go func() { _ = srv.Serve(lis) }()
	return s, srv.Stop, nil
}

func (s *spanSink) Export(_ context.Context, req *coltracepb.ExportTraceServiceRequest) (*coltracepb.ExportTraceServiceResponse, error) {
	n := 0
	for _, rs := range req.ResourceSpans {
		for _, ss := range rs.ScopeSpans {
			n += len(ss.Spans)
		}
	}
	s.spans.Add(int64(n))
	return &coltracepb.ExportTraceServiceResponse{}, nil
}
