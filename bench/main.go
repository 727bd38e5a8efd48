// Command bench measures a three-node shardd cluster of real processes on
// this machine: YCSB workloads with latency tables and charts, the same
// side by side with etcd or another shardd build, write throughput and
// latency through the router, the cost of idle groups, and restart time.
// It builds cmd/shardd first, so run it from the repository root:
//
//	go run ./bench run --workload A,B,C,E,F,write --ranges 1000 --duration 30s --charts charts/
//	scripts/build-etcd && go run ./bench compare --workload A,B,write --rounds 3
//	go run ./bench write --groups 1000 --clients 256 --duration 10s
//	go run ./bench idle --groups 10000
//
// The load generator shares the machine with the three nodes; report the
// machine with the figures (scripts/bench-scenario does).
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"math/rand/v2"
	"os"
	"runtime"
	"runtime/pprof"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/shardd/shardd/router"
)

func main() {
	if len(os.Args) < 2 {
		usage()
	}
	var err error
	switch os.Args[1] {
	case "write":
		err = writeCmd(os.Args[2:])
	case "idle":
		err = idleCmd(os.Args[2:])
	case "tracing":
		err = tracingCmd(os.Args[2:])
	case "run":
		err = runCmd(os.Args[2:])
	case "compare":
		err = compareCmd(os.Args[2:])
	default:
		usage()
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "bench:", err)
		os.Exit(1)
	}
}

func usage() {
	fmt.Fprintln(os.Stderr, `usage: go run ./bench <command> [flags]

commands:
  run      YCSB workloads (A, B, C, E, F, write) against shardd or etcd: tables, JSON, charts
  compare  the same workloads on shardd and etcd (or two shardd builds), alternating, with ratios
  write    write throughput and latency through the router (3 nodes, sync on)
  idle     idle CPU and memory per node with many groups, and restart time
  tracing  write throughput with tracing off, 1% and 100% sampled, alternated

Run "go run ./bench <command> -h" for a command's flags.`)
	os.Exit(2)
}

// setup starts a cluster of groups ranges; extra are more flags for
// every node's start.
func setup(groups int, pprof string, extra ...string) (*cluster, func(), error) {
	return setupBinary("", groups, pprof, extra)
}

func writeCmd(args []string) error {
	fs := flag.NewFlagSet("write", flag.ExitOnError)
	groups := fs.Int("groups", 1000, "ranges (Paxos groups), split evenly over the key space")
	clients := fs.Int("clients", 256, "concurrent writers in this process")
	duration := fs.Duration("duration", 10*time.Second, "how long to write")
	size := fs.Int("value-size", 16, "value size in bytes")
	pprof := fs.String("pprof", "", "serve node 1's profiles on this host:port (e.g. 127.0.0.1:6060)")
	cpuProfile := fs.String("cpuprofile", "", "write the load generator's CPU profile of the run to this file")
	clientKind := fs.String("client", "router", "how to write: router (package router), or direct (one stream per node straight to the leaders, the range map read once, no retries)")
	nodeFlags := fs.String("node-flags", "", "more flags for every node's shardd start, space-separated (e.g. \"--memtable-size=16MiB\"), to compare settings with the same build")
	fs.Parse(args)

	c, cleanup, err := setup(*groups, *pprof, strings.Fields(*nodeFlags)...)
	if err != nil {
		return err
	}
	defer cleanup()
	if err := c.waitLeaders(2 * time.Minute); err != nil {
		return err
	}
	ctx := context.Background()
	var cl putter
	var rc *router.Client
	switch *clientKind {
	case "router":
		if rc, err = router.New(ctx, router.Config{Seeds: []string{c.nodes[0].addr, c.nodes[1].addr, c.nodes[2].addr}}); err != nil {
			return err
		}
		defer rc.Close()
		cl = rc
	case "direct":
		dc, err := newDirectClient(ctx, c)
		if err != nil {
			return err
		}
		defer dc.Close()
		cl = dc
	default:
		return fmt.Errorf("--client %q: want router or direct", *clientKind)
	}
	before := c.totalSyncs()
	cpu0 := c.cpu()
	self0, _ := cpuTime(os.Getpid())
	if *cpuProfile != "" {
		stop, err := startCPUProfile(*cpuProfile)
		if err != nil {
			return err
		}
		defer stop()
	}
	res := runWrites(ctx, cl, *clients, *duration, *size)
	ops, errs, lat, elapsed := res.ops, res.errs, res.lat, res.elapsed
	after := c.totalSyncs()
	cpu1 := c.cpu()
	self1, _ := cpuTime(os.Getpid())
	var cpv, mpf, rps float64
	for _, p := range c.nodes {
		if st, err := p.status(ctx); err == nil {
			cpv += st.CommandsPerValue / 3
			mpf += st.MessagesPerFrame / 3
			rps += st.RecordsPerSync / 3
		}
	}
	fmt.Printf("write: 3 nodes, %d groups, %d clients, %d-byte values, sync on, through the %s client, %v, %d CPUs\n",
		*groups, *clients, *size, *clientKind, elapsed.Round(time.Millisecond), runtime.NumCPU())
	fmt.Printf("  %.0f writes/s, p50 %v, p99 %v, %d errors\n", res.rate(), pct(lat, 50), pct(lat, 99), errs)
	fmt.Printf("  %.0f fsyncs/s across the nodes, %.0f records per fsync, %.2f commands per Paxos value, %.1f messages per frame",
		float64(after-before)/elapsed.Seconds(), rps, cpv, mpf)
	if rc != nil {
		fmt.Printf(", %.1f requests per client frame", rc.Stats().RequestsPerFrame())
	}
	fmt.Println()
	fmt.Printf("  CPU, in cores: nodes")
	var nodesCPU time.Duration
	for i := range cpu0 {
		nodesCPU += cpu1[i] - cpu0[i]
		fmt.Printf(" %.2f", float64(cpu1[i]-cpu0[i])/float64(elapsed))
	}
	loadCPU := self1 - self0
	fmt.Printf(", load generator %.2f\n", float64(loadCPU)/float64(elapsed))
	// CPU per write is the figure that bounds throughput on a CPU-bound
	// machine: with every core busy at this cost, writes/s can be at most
	// cores / (CPU per write), however the work is scheduled.
	if n := ops; n > 0 {
		perWrite := func(d time.Duration) float64 { return float64(d.Microseconds()) / float64(n) }
		total := perWrite(nodesCPU + loadCPU)
		fmt.Printf("  CPU per write: %.0f µs (nodes %.0f, load generator %.0f); at that cost %d CPUs allow at most %.0f writes/s\n",
			total, perWrite(nodesCPU), perWrite(loadCPU), runtime.NumCPU(), float64(runtime.NumCPU())*1e6/total)
	}
	if errs > 0 {
		return errors.New("some writes failed")
	}
	return nil
}

// writeResult is what a run of writes did: the writes acknowledged and
// failed, the latencies of the acknowledged ones (sorted), and how long
// it took.
type writeResult struct {
	ops, errs int64
	lat       []time.Duration
	elapsed   time.Duration
}

func (r writeResult) rate() float64 { return float64(r.ops) / r.elapsed.Seconds() }

// runWrites runs clients concurrent writers of size-byte values to
// random keys through cl for d.
func runWrites(ctx context.Context, cl putter, clients int, d time.Duration, size int) writeResult {
	value := make([]byte, size)
	var (
		ops    atomic.Int64
		errs   atomic.Int64
		mu     sync.Mutex
		lat    []time.Duration
		wg     sync.WaitGroup
		stopAt = time.Now().Add(d)
	)
	start := time.Now()
	for w := range clients {
		wg.Add(1)
		go func() {
			defer wg.Done()
			rng := rand.New(rand.NewPCG(uint64(w), 7))
			var mine []time.Duration
			for time.Now().Before(stopAt) {
				key := fmt.Appendf(nil, "k%04d-%08x", rng.IntN(10000), rng.Uint32())
				t0 := time.Now()
				if err := cl.Put(ctx, key, value); err != nil {
					errs.Add(1)
					continue
				}
				mine = append(mine, time.Since(t0))
				ops.Add(1)
			}
			mu.Lock()
			lat = append(lat, mine...)
			mu.Unlock()
		}()
	}
	wg.Wait()
	r := writeResult{ops: ops.Load(), errs: errs.Load(), lat: lat, elapsed: time.Since(start)}
	slices.Sort(r.lat)
	return r
}

// putter is the client a write run drives.
type putter interface {
	Put(ctx context.Context, key, value []byte) error
}

// startCPUProfile profiles this process into path until the returned
// function is called.
func startCPUProfile(path string) (func(), error) {
	f, err := os.Create(path)
	if err != nil {
		return nil, err
	}
	if err := pprof.StartCPUProfile(f); err != nil {
		f.Close()
		return nil, err
	}
	return func() { pprof.StopCPUProfile(); f.Close() }, nil
}

// cpu returns each node process's CPU time so far.
func (c *cluster) cpu() []time.Duration {
	out := make([]time.Duration, len(c.nodes))
	for i, p := range c.nodes {
		out[i], _ = cpuTime(p.cmd.Process.Pid)
	}
	return out
}

func pct(lat []time.Duration, p int) time.Duration {
	if len(lat) == 0 {
		return 0
	}
	return lat[min(len(lat)-1, len(lat)*p/100)].Round(10 * time.Microsecond)
}

func (c *cluster) totalSyncs() (n uint64) {
	for _, p := range c.nodes {
		if st, err := p.status(context.Background()); err == nil {
			n += st.Syncs
		}
	}
	return n
}

func idleCmd(args []string) error {
	fs := flag.NewFlagSet("idle", flag.ExitOnError)
	groups := fs.Int("groups", 10000, "ranges (Paxos groups), each replicated on all three nodes")
	window := fs.Duration("window", 10*time.Second, "how long to sample idle CPU")
	fs.Parse(args)

	c, cleanup, err := setup(*groups, "")
	if err != nil {
		return err
	}
	defer cleanup()
	t0 := time.Now()
	if err := c.waitLeaders(5 * time.Minute); err != nil {
		return err
	}
	if err := c.waitIdle(5 * time.Minute); err != nil {
		return err
	}
	fmt.Printf("idle: 3 nodes, %d groups each (all replicated 3 ways), %d CPUs; all quiesced %v after start\n",
		*groups, runtime.NumCPU(), time.Since(t0).Round(time.Millisecond))
	cpu0 := map[uint64]time.Duration{}
	for _, p := range c.nodes {
		cpu0[p.id], _ = cpuTime(p.cmd.Process.Pid)
	}
	time.Sleep(*window)
	for _, p := range c.nodes {
		cpu1, _ := cpuTime(p.cmd.Process.Pid)
		mem, _ := rss(p.cmd.Process.Pid)
		fmt.Printf("  node %d: %.2f%% of one core idle, %d MB resident\n", p.id,
			100*float64(cpu1-cpu0[p.id])/float64(*window), mem>>20)
	}

	// Restart: kill -9 a node and time how long until it serves again.
	victim := c.nodes[2]
	c.kill(victim)
	t1 := time.Now()
	if err := c.start(victim, c.peers()); err != nil {
		return err
	}
	err = waitFor("the restarted node to serve", 2*time.Minute, func() bool {
		st, err := victim.status(context.Background())
		return err == nil && int(st.Groups) == *groups
	})
	if err != nil {
		return err
	}
	serving := time.Since(t1)
	if err := c.waitIdle(5 * time.Minute); err != nil {
		return err
	}
	fmt.Printf("  restart after kill -9: node %d serving all %d groups %v after start, idle again %v after start\n",
		victim.id, *groups, serving.Round(time.Millisecond), time.Since(t1).Round(time.Millisecond))
	return nil
}
