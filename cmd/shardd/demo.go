package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strconv"
	"time"

	"github.com/shardd/shardd/internal/cli"
	"github.com/shardd/shardd/internal/metrics/endpoint"
	"github.com/shardd/shardd/internal/tracing/provider"
	"github.com/shardd/shardd/node"
	"github.com/shardd/shardd/placement/client"
	"github.com/shardd/shardd/placement/service"
)

// demoNodes is the size of the demo cluster.
const demoNodes = 3

var demoCommand = &command{
	name:    "demo",
	args:    "[--ranges N] [--data-dir DIR] [flags]",
	summary: "run a placement service and three nodes inside this process",
	doc: `
Demo starts a cluster in this one process, on free loopback ports: a
placement service and three nodes that gossip with each other and
register with it. The placement service creates --ranges ranges split
evenly at keys "k%04d", each replicated on all three nodes, and spreads
their leaders evenly. The demo waits until every range has a leader,
prints the addresses and commands to try, and runs until Ctrl-C; then it
stops everything and removes the data, unless it lives in a --data-dir you
gave.

A --data-dir that holds an earlier demo's data is reused: its ranges and
keys are kept, and --ranges is ignored.

The same cluster as separate processes is one placement start and three
shardd start --placement (see shardd help start).`,
	setup: func(fs *flag.FlagSet) func(context.Context, *env, []string) error {
		var o demoOptions
		var logLevel, logFormat string
		var tracing provider.Flags
		tracing.Register(fs)
		fs.IntVar(&o.ranges, "ranges", 8, "the number of ranges to create (1 to 9000)")
		fs.StringVar(&o.dataDir, "data-dir", "", "`directory` for the nodes' stores (node1, node2, node3 in it), kept on exit; default a temporary directory removed on exit")
		fs.DurationVar(&o.tick, "tick", 50*time.Millisecond, "the nodes' logical tick")
		fs.DurationVar(&o.wait, "wait", 30*time.Second, "how long to wait for every range to have a leader")
		fs.StringVar(&logLevel, "log-level", "warn", "log `level`: debug, info, warn or error (logs go to stderr)")
		cli.RegisterLogFormatFlag(fs, &logFormat)
		cli.RegisterMetricsAddrFlag(fs, &o.metricsAddr)
		return func(ctx context.Context, e *env, args []string) error {
			if len(args) > 0 {
				return usagef("unexpected arguments %q", args)
			}
			var err error
			if o.logLevel, err = cli.ParseLogLevel(logLevel); err != nil {
				return usagef("--log-level: %v", err)
			}
			if o.tracing, err = tracing.Config(provider.Config{}, os.Getenv); err != nil {
				return usagef("tracing: %v", err)
			}
			if o.logFormat, err = cli.ParseLogFormat(logFormat); err != nil {
				return usagef("--log-format: %v", err)
			}
			if o.tick <= 0 || o.wait <= 0 {
				return usagef("--tick and --wait must be positive")
			}
			if o.ranges < 1 || o.ranges > maxDemoRanges {
				return usagef("--ranges must be between 1 and %d, not %d", maxDemoRanges, o.ranges)
			}
			return runDemo(ctx, e, o)
		}
	},
}

// demoMemTableSize sizes the demo nodes' memtables: a demo holds little
// data, and its WAL files on disk are about as large as its memtables.
const demoMemTableSize = 8 << 20

// maxDemoRanges is what the placement service bootstraps at most.
const maxDemoRanges = 9000

type demoOptions struct {
	ranges   int
	dataDir  string
	tick     time.Duration
	wait     time.Duration
	logLevel slog.Level
	tracing  provider.Config // each node's
	// logFormat and metricsAddr: see cli.RegisterLogFormatFlag and
	// RegisterMetricsAddrFlag. One endpoint serves the metrics of the
	// placement service and the three nodes, told apart by their labels.
	logFormat   cli.LogFormat
	metricsAddr string
}

func demoNodeIDs() []uint64 {
	ids := make([]uint64, demoNodes)
	for i := range ids {
		ids[i] = uint64(i + 1)
	}
	return ids
}

func runDemo(ctx context.Context, e *env, o demoOptions) (err error) {
	logger := o.logFormat.NewLogger(e.stderr, o.logLevel)
	ep, err := endpoint.Open(o.metricsAddr)
	if err != nil {
		return err
	}
	defer ep.Close()
	plMetrics, err := ep.Provider(endpoint.PlacementLabel(1))
	if err != nil {
		return err
	}
	signalled, sinceSignal := ctx, cli.StopClock(ctx)
	dir, temp := o.dataDir, false
	// Said last, once everything has stopped and the data is gone, on
	// stdout like the banner: the demo logs only warnings by default.
	defer func() {
		if err != nil || signalled.Err() == nil {
			return
		}
		data := "data kept in " + dir
		if temp {
			data = "data removed"
		}
		fmt.Fprintf(e.stdout, "shardd demo: stopped cleanly, %v after the signal (%s).\n", sinceSignal().Round(time.Millisecond), data)
	}()
	if dir == "" {
		if dir, err = os.MkdirTemp("", "shardd-demo-"); err != nil {
			return err
		}
		temp = true
		defer func() {
			if rmErr := os.RemoveAll(dir); rmErr != nil && err == nil {
				err = fmt.Errorf("removing the demo's data: %w", rmErr)
			}
		}()
	}
	// A reused --data-dir keeps its map: the service bootstraps only an
	// empty store, and so do the nodes.
	pl, err := service.Start(service.Config{
		ID: 1, ListenAddr: "127.0.0.1:0", DataDir: filepath.Join(dir, "placement"),
		InitialRanges: o.ranges, Replicas: demoNodes, ExpectedNodes: demoNodes,
		TickInterval: o.tick, Logger: logger, MeterProvider: plMetrics,
	})
	if err != nil {
		return fmt.Errorf("cannot start the placement service: %w", err)
	}
	defer pl.Stop()
	var nodes []*node.Node
	defer func() {
		for i := len(nodes) - 1; i >= 0; i-- {
			nodes[i].Stop()
		}
	}()
	for _, id := range demoNodeIDs() {
		cfg := node.Config{
			NodeID: id, Dir: filepath.Join(dir, "node"+strconv.FormatUint(id, 10)),
			ListenAddr: "127.0.0.1:0", GossipAddr: "127.0.0.1:0",
			TickInterval: o.tick, Logger: logger, WaitReady: true, Tracing: o.tracing, MemTableSize: demoMemTableSize,
		}
		if cfg.MeterProvider, err = ep.Provider(endpoint.NodeLabel(id)); err != nil {
			return err
		}
		if len(nodes) > 0 {
			cfg.Seeds = []string{nodes[0].GossipAddr()}
		}
		n, err := startNode(e, cfg, nil, logger)
		if err != nil {
			return err
		}
		nodes = append(nodes, n)
	}
	addrs := make(map[uint64]string, len(nodes))
	for _, n := range nodes {
		addrs[n.ID()] = n.Addr()
		for _, m := range nodes {
			n.SetPeer(m.ID(), m.Addr())
		}
	}
	ctx, refused := context.WithCancelCause(ctx)
	defer refused(nil)
	unregister, err := register([]string{pl.Addr()}, nodes, refused)
	if err != nil {
		return err
	}
	defer unregister()
	wctx, cancel := context.WithTimeout(ctx, o.wait)
	ranges, err := waitForMap(wctx, pl.Addr())
	if err == nil {
		_, err = waitForLeaders(wctx, addrs, ranges)
	}
	cancel()
	if err != nil {
		if cause := context.Cause(ctx); errors.Is(cause, client.ErrRefused) {
			return cause // the service refused a node: not an interruption
		}
		if ctx.Err() != nil {
			return nil // interrupted while waiting
		}
		return err
	}
	writeDemoBanner(e.stdout, pl.Addr(), nodes, ranges, dir, temp, ep.URL())
	// The demo's nodes stop together: none would take the others'
	// leaderships, so there is nothing to drain.
	err = serve(ctx, e, nodes, logger, 0)
	nodes = nil // serve stopped them
	return err
}

// waitForMap waits until the placement service at addr has created the
// first ranges, and returns how many there are.
func waitForMap(ctx context.Context, addr string) (int, error) {
	c, err := client.New([]string{addr})
	if err != nil {
		return 0, err
	}
	defer c.Close()
	for {
		descs, err := c.AllRanges(ctx, 0)
		if err == nil && len(descs) > 0 {
			return len(descs), nil
		}
		select {
		case <-ctx.Done():
			return 0, fmt.Errorf("the placement service has not created the ranges (last error: %v): %w", err, ctx.Err())
		case <-time.After(20 * time.Millisecond):
		}
	}
}

// demoCommands are the commands the demo suggests, against the placement
// service at placement and the node at node.
func demoCommands(placement, node string) []string {
	const prefix = "go run ./cmd/shardd "
	p := " --placement " + placement
	return []string{
		prefix + "nodes" + p,
		prefix + "ranges" + p,
		prefix + "status --addr " + node,
		prefix + "kv put" + p + " k0001 hello",
		prefix + "kv get" + p + " k0001",
		prefix + "kv scan" + p + " k0000 k9999",
		prefix + "kv cas" + p + " --expect hello k0001 world",
		prefix + "kv del" + p + " k0001",
	}
}

func writeDemoBanner(w io.Writer, placement string, nodes []*node.Node, ranges int, dir string, temp bool, metricsURL string) {
	where := dir + " (kept on exit)"
	if temp {
		where = dir + " (removed on exit)"
	}
	fmt.Fprintf(w, "shardd demo: a placement service and %d nodes, %d ranges replicated on all of them, every range has a leader.\nData in %s.\n\n", len(nodes), ranges, where)
	fmt.Fprintf(w, "  placement  grpc %s\n", placement)
	for _, n := range nodes {
		fmt.Fprintf(w, "  node %d  grpc %s  gossip %s\n", n.ID(), n.Addr(), n.GossipAddr())
	}
	if metricsURL != "" {
		fmt.Fprintf(w, "  metrics    %s (all four, labelled node=\"N\" or placement=\"1\")\n", metricsURL)
	}
	fmt.Fprintf(w, "\nTry (from the repository root):\n\n")
	for _, c := range demoCommands(placement, nodes[0].Addr()) {
		fmt.Fprintf(w, "  %s\n", c)
	}
	fmt.Fprintf(w, "\nPress Ctrl-C to stop.\n")
}
