package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strconv"
	"time"

	"github.com/shardd/shardd/kvpb"
	"github.com/shardd/shardd/node"
)

// demoNodes is the size of the demo cluster.
const demoNodes = 3

var demoCommand = &command{
	name:    "demo",
	args:    "[--ranges N] [--data-dir DIR] [flags]",
	summary: "run a three-node cluster inside this process",
	doc: `
Demo starts three nodes in this one process on free loopback ports,
gossiping with each other, with --ranges ranges split evenly at keys
"k%04d" and replicated on all three nodes (leaders spread evenly). It
waits until every range has a leader, prints the nodes' addresses and
commands to try against them, and runs until Ctrl-C; then it stops the
nodes and removes the data, unless it lives in a --data-dir you gave.

A --data-dir that holds an earlier demo's data is reused: its ranges and
keys are kept, and --ranges is ignored.`,
	setup: func(fs *flag.FlagSet) func(context.Context, *env, []string) error {
		var o demoOptions
		var logLevel string
		fs.IntVar(&o.ranges, "ranges", 8, "the number of ranges to create (1 to 10000)")
		fs.StringVar(&o.dataDir, "data-dir", "", "`directory` for the nodes' stores (node1, node2, node3 in it), kept on exit; default a temporary directory removed on exit")
		fs.DurationVar(&o.tick, "tick", 50*time.Millisecond, "the nodes' logical tick")
		fs.DurationVar(&o.wait, "wait", 30*time.Second, "how long to wait for every range to have a leader")
		fs.StringVar(&logLevel, "log-level", "warn", "log `level`: debug, info, warn or error (logs go to stderr)")
		return func(ctx context.Context, e *env, args []string) error {
			if len(args) > 0 {
				return usagef("unexpected arguments %q", args)
			}
			var err error
			if o.logLevel, err = parseLogLevel(logLevel); err != nil {
				return usagef("--log-level: %v", err)
			}
			if o.tick <= 0 || o.wait <= 0 {
				return usagef("--tick and --wait must be positive")
			}
			keys, err := evenSplitKeys(o.ranges)
			if err != nil {
				return usagef("--ranges: %v", err)
			}
			if o.descs, err = splitDescriptors(keys, demoNodeIDs()); err != nil {
				return err
			}
			return runDemo(ctx, e, o)
		}
	},
}

type demoOptions struct {
	ranges   int
	dataDir  string
	tick     time.Duration
	wait     time.Duration
	logLevel slog.Level
	descs    []*kvpb.RangeDescriptor
}

func demoNodeIDs() []uint64 {
	ids := make([]uint64, demoNodes)
	for i := range ids {
		ids[i] = uint64(i + 1)
	}
	return ids
}

func runDemo(ctx context.Context, e *env, o demoOptions) (err error) {
	logger := newLogger(e, o.logLevel)
	dir, temp := o.dataDir, false
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
			TickInterval: o.tick, Logger: logger,
		}
		if len(nodes) > 0 {
			cfg.Seeds = []string{nodes[0].GossipAddr()}
		}
		// A reused --data-dir keeps its ranges: Start bootstraps only an
		// empty store.
		n, err := startNode(e, cfg, o.descs, logger)
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
	wctx, cancel := context.WithTimeout(ctx, o.wait)
	leaders, err := waitForLeaders(wctx, addrs, 1)
	cancel()
	if err != nil {
		if ctx.Err() != nil {
			return nil // interrupted while waiting
		}
		return err
	}
	writeDemoBanner(e.stdout, nodes, len(leaders), dir, temp)
	err = serve(ctx, e, nodes, logger)
	nodes = nil // serve stopped them
	return err
}

// demoCommands are the commands the demo suggests, against the node at
// addr.
func demoCommands(addr string) []string {
	const prefix = "go run ./cmd/shardd "
	return []string{
		prefix + "ranges --addr " + addr,
		prefix + "status --addr " + addr,
		prefix + "kv put --addr " + addr + " k0001 hello",
		prefix + "kv get --addr " + addr + " k0001",
		prefix + "kv scan --addr " + addr + " k0000 k9999",
		prefix + "kv cas --addr " + addr + " --expect hello k0001 world",
		prefix + "kv del --addr " + addr + " k0001",
	}
}

func writeDemoBanner(w io.Writer, nodes []*node.Node, ranges int, dir string, temp bool) {
	where := dir + " (kept on exit)"
	if temp {
		where = dir + " (removed on exit)"
	}
	fmt.Fprintf(w, "shardd demo: %d nodes, %d ranges replicated on all of them, every range has a leader.\nData in %s.\n\n", len(nodes), ranges, where)
	for _, n := range nodes {
		fmt.Fprintf(w, "  node %d  grpc %s  gossip %s\n", n.ID(), n.Addr(), n.GossipAddr())
	}
	fmt.Fprintf(w, "\nTry (from the repository root; any node's address works):\n\n")
	for _, c := range demoCommands(nodes[0].Addr()) {
		fmt.Fprintf(w, "  %s\n", c)
	}
	fmt.Fprintf(w, "\nPress Ctrl-C to stop.\n")
}
