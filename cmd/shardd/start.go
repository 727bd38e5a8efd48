package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"maps"
	"os"
	"sync"
	"time"

	"github.com/shardd/shardd/engine"
	"github.com/shardd/shardd/internal/cli"
	"github.com/shardd/shardd/internal/metrics/endpoint"
	"github.com/shardd/shardd/internal/tracing/provider"
	"github.com/shardd/shardd/kvpb"
	"github.com/shardd/shardd/node"
	"github.com/shardd/shardd/placement/client"
)

var startCommand = &command{
	name:    "start",
	args:    "--id N --data-dir DIR [flags]",
	summary: "run one node",
	doc: `
Start runs one node: it opens (or creates) the node's store in --data-dir,
serves the KV and Admin gRPC APIs on --listen and joins the cluster, then
runs until SIGINT or SIGTERM, stops cleanly and exits 0. If the node stops
by itself because its disk failed, start logs why and exits 1.

A data dir belongs to one node of one cluster: start exits 1, saying what
to do, on a data dir created with another --id, and (with --placement) on
a placement service of another cluster, or one that knew this node with
another data dir (a wiped one must not rejoin as if it had its state).

Peers find each other through gossip (--gossip, --join), through static
addresses (--peers), through the placement service, or any of these.

With --placement the node registers with the placement service (see the
placement command), reports its load to it every second and learns the
other nodes' addresses from it. The service creates the cluster's first
ranges on the nodes once enough have registered, and keeps their leaders
spread. This is the usual way:

  placement start --id 1 --listen 127.0.0.1:7000 --data-dir /tmp/p1 \
    --initial-ranges 16 --expected-nodes 3
  shardd start --id 1 --listen 127.0.0.1:7101 --gossip 127.0.0.1:7201 \
    --data-dir /tmp/n1 --placement 127.0.0.1:7000
  shardd start --id 2 --listen 127.0.0.1:7102 --gossip 127.0.0.1:7202 \
    --join 127.0.0.1:7201 --data-dir /tmp/n2 --placement 127.0.0.1:7000
  (and the same for node 3)

Without a placement service, a new cluster is bootstrapped by starting
every one of its nodes with the same bootstrap flags: --bootstrap-ranges N
(or --split-keys) with --bootstrap-replicas, or --bootstrap-file. Without
gossip, --peers must then list every node the node shares a range with.
A node creates its replicas of those ranges only on its first start (while
its store holds no range); later starts ignore the bootstrap flags.

Example, a three-node cluster with four ranges on one machine:

  shardd start --id 1 --listen 127.0.0.1:7101 --gossip 127.0.0.1:7201 \
    --data-dir /tmp/n1 --bootstrap-ranges 4 --bootstrap-replicas 1,2,3
  shardd start --id 2 --listen 127.0.0.1:7102 --gossip 127.0.0.1:7202 \
    --join 127.0.0.1:7201 --data-dir /tmp/n2 \
    --bootstrap-ranges 4 --bootstrap-replicas 1,2,3
  (and the same for node 3)

Bootstrap file format (JSON; keys are strings, "" is the start or the end
of the key space; the ranges must cover the key space without gaps):

  {"peers": {"1": "127.0.0.1:7101", "2": "127.0.0.1:7102"},
   "ranges": [
     {"range_id": 1, "start_key": "", "end_key": "m", "replicas": [1, 2], "leader": 1},
     {"range_id": 2, "start_key": "m", "end_key": "", "replicas": [1, 2], "leader": 2}]}

"peers" is optional, and the file may also be just the array of ranges.
"leader" is the node that campaigns first (0: left to an election).`,
	setup: func(fs *flag.FlagSet) func(context.Context, *env, []string) error {
		var f startFlags
		f.register(fs)
		return func(ctx context.Context, e *env, args []string) error {
			if len(args) > 0 {
				return usagef("unexpected arguments %q", args)
			}
			opts, err := f.options()
			if err != nil {
				return err
			}
			return runStart(ctx, e, opts)
		}
	},
}

// startFlags are start's flags as given.
type startFlags struct {
	id                uint64
	listen            string
	dataDir           string
	gossip            string
	join              string
	peers             string
	bootstrapRanges   int
	bootstrapReplicas string
	splitKeys         string
	bootstrapFile     string
	tick              time.Duration
	logLevel          string
	logFormat         string
	metricsAddr       string
	pprof             string
	placement         string
	faultInjection    bool
	clockOffset       time.Duration
	drainTimeout      time.Duration
	memTableSize      byteSize
	walPreallocation  byteSize
	tracing           provider.Flags
}

func (f *startFlags) register(fs *flag.FlagSet) {
	fs.Uint64Var(&f.id, "id", 0, "this node's id: a positive integer, unique in the cluster and the same across restarts (required)")
	fs.StringVar(&f.listen, "listen", defaultNodeAddr, "`host:port` of the gRPC server for clients and peers (port 0 picks a free port)")
	fs.StringVar(&f.dataDir, "data-dir", "", "`directory` of the node's store, created if missing (required)")
	fs.StringVar(&f.gossip, "gossip", "127.0.0.1:7946", "`ip:port` memberlist binds (UDP and TCP) and advertises for node discovery; --gossip= disables gossip")
	fs.StringVar(&f.join, "join", "", "comma-separated gossip `addresses` of nodes to join through (this node's own address is ignored, so every node may get the same list)")
	fs.StringVar(&f.peers, "peers", "", "static gRPC addresses of nodes, `id=host:port,...` (for example 1=127.0.0.1:7100,2=127.0.0.1:7101); optional with gossip or --placement")
	fs.IntVar(&f.bootstrapRanges, "bootstrap-ranges", 0, "on first start, create `N` ranges split evenly at keys \"k%04d\" over k0000..k9999 (needs --bootstrap-replicas)")
	fs.StringVar(&f.bootstrapReplicas, "bootstrap-replicas", "", "comma-separated node `ids` that replicate every bootstrap range; the ranges' first leaders are spread evenly over them")
	fs.StringVar(&f.splitKeys, "split-keys", "", "on first start, create ranges split at these comma-separated, increasing `keys` instead of the even split (needs --bootstrap-replicas)")
	fs.StringVar(&f.bootstrapFile, "bootstrap-file", "", "on first start, create the ranges listed in this JSON `file` (see above) instead")
	fs.DurationVar(&f.tick, "tick", 100*time.Millisecond, "the node's logical tick; election and lease timeouts are multiples of it")
	fs.StringVar(&f.logLevel, "log-level", "info", "log `level`: debug, info, warn or error (logs go to stderr)")
	cli.RegisterLogFormatFlag(fs, &f.logFormat)
	cli.RegisterMetricsAddrFlag(fs, &f.metricsAddr)
	fs.StringVar(&f.placement, "placement", "", "comma-separated gRPC `addresses` of the placement processes to register with (see above); excludes the bootstrap flags")
	fs.StringVar(&f.pprof, "pprof", "", "serve Go's profiles (/debug/pprof/) on this `host:port`, e.g. 127.0.0.1:6060; empty disables")
	fs.DurationVar(&f.drainTimeout, "drain-timeout", 10*time.Second, "on SIGTERM or SIGINT, hand off the node's leaderships for at most this `long` before stopping (see 'shardd drain'); 0 stops at once")
	store := engine.DefaultOptions()
	f.memTableSize, f.walPreallocation = byteSize(store.MemTableSize), byteSize(store.WALPreallocation)
	fs.Var(&f.memTableSize, "memtable-size", "`size` of the store's memtables (1MiB to 4GiB): larger ones absorb more writes of the groups' logs before they reach sstables, at the cost of memory and of WAL files about as large on disk")
	fs.Var(&f.walPreallocation, "wal-preallocation", "`size` of WAL file the store keeps preallocated ahead of its writes; 0 leaves it to Pebble, which preallocates 110% of --memtable-size for every WAL file at once")
	f.tracing.Register(fs)
	fs.BoolVar(&f.faultInjection, "enable-fault-injection", false, "serve the Fault gRPC service (kvpb/fault.proto), through which anyone who reaches --listen can cut this node's links to peers and clients and make its clock jump: a test hook, never for production")
	fs.DurationVar(&f.clockOffset, "clock-offset", 0, "start the clock the node measures leases on this `far` ahead (not negative): a test hook, which changes nothing since no node reads another's clock; the Fault service's JumpClock moves it while leases run")
}

// startOptions are start's checked settings.
type startOptions struct {
	id       uint64
	listen   string
	dataDir  string
	gossip   string // "" disables gossip
	join     []string
	peers    map[uint64]string
	tick     time.Duration
	logLevel slog.Level
	// logFormat and metricsAddr: see cli.RegisterLogFormatFlag and
	// RegisterMetricsAddrFlag ("" turns metrics off).
	logFormat   cli.LogFormat
	metricsAddr string
	pprof       string
	// faultInjection serves the Fault service (node.Config.EnableFaultInjection).
	faultInjection bool
	// clockOffset is node.Config.ClockOffset.
	clockOffset time.Duration
	// drainTimeout bounds the drain before a signalled stop.
	drainTimeout time.Duration
	// placement are the placement processes' addresses, nil for none.
	placement []string
	// bootstrap are the ranges of a new cluster, nil if none were given.
	bootstrap []*kvpb.RangeDescriptor
	// memTableSize and walPreallocation size the store (node.Config).
	memTableSize     uint64
	walPreallocation int64
	// tracing is the node's tracing (node.Config.Tracing).
	tracing provider.Config
}

// options checks the flags and turns them into startOptions.
func (f *startFlags) options() (startOptions, error) {
	o := startOptions{id: f.id, listen: f.listen, dataDir: f.dataDir, gossip: f.gossip, tick: f.tick, pprof: f.pprof,
		faultInjection: f.faultInjection, clockOffset: f.clockOffset, drainTimeout: f.drainTimeout, metricsAddr: f.metricsAddr}
	var err error
	switch {
	case f.id == 0:
		return o, usagef("--id is required: a positive integer, unique in the cluster")
	case f.dataDir == "":
		return o, usagef("--data-dir is required: the directory of the node's store")
	case f.tick <= 0:
		return o, usagef("--tick must be positive, not %v", f.tick)
	case f.drainTimeout < 0:
		return o, usagef("--drain-timeout must not be negative, not %v", f.drainTimeout)
	case f.clockOffset < 0:
		return o, usagef("--clock-offset must not be negative, not %v", f.clockOffset)
	case f.memTableSize < 1<<20 || f.memTableSize >= 4<<30:
		return o, usagef("--memtable-size must be at least 1MiB and below 4GiB, not %s", f.memTableSize.String())
	}
	o.memTableSize, o.walPreallocation = uint64(f.memTableSize), int64(f.walPreallocation)
	if o.walPreallocation == 0 {
		o.walPreallocation = -1 // Pebble's own
	}
	if err := cli.CheckListenAddr(f.listen); err != nil {
		return o, usagef("--listen: %v", err)
	}
	if f.gossip != "" {
		if err := cli.CheckGossipAddr(f.gossip); err != nil {
			return o, usagef("--gossip: %v", err)
		}
	}
	if o.join, err = cli.ParseAddrList(f.join); err != nil {
		return o, usagef("--join: %v", err)
	}
	if len(o.join) > 0 && f.gossip == "" {
		return o, usagef("--join needs gossip, but --gossip is empty")
	}
	if o.peers, err = cli.ParsePeers(f.peers); err != nil {
		return o, usagef("--peers: %v", err)
	}
	if o.logLevel, err = cli.ParseLogLevel(f.logLevel); err != nil {
		return o, usagef("--log-level: %v", err)
	}
	if o.tracing, err = f.tracing.Config(provider.Config{}, os.Getenv); err != nil {
		return o, usagef("tracing: %v", err)
	}
	if o.logFormat, err = cli.ParseLogFormat(f.logFormat); err != nil {
		return o, usagef("--log-format: %v", err)
	}
	if o.bootstrap, err = f.bootstrapDescriptors(o.peers); err != nil {
		return o, err
	}
	if o.placement, err = cli.ParseAddrList(f.placement); err != nil {
		return o, usagef("--placement: %v", err)
	}
	if len(o.placement) > 0 && len(o.bootstrap) > 0 {
		return o, usagef("--placement and the bootstrap flags exclude each other: with a placement service, it creates the ranges")
	}
	if f.gossip == "" {
		for _, id := range replicaNodes(o.bootstrap) {
			if _, ok := o.peers[id]; !ok && id != f.id {
				return o, usagef("without gossip, --peers must give the address of every node; node %d (a bootstrap replica) is missing", id)
			}
		}
	}
	return o, nil
}

// bootstrapDescriptors builds the bootstrap ranges from whichever of the
// bootstrap flags were given; addresses from a bootstrap file are added
// to peers.
func (f *startFlags) bootstrapDescriptors(peers map[uint64]string) ([]*kvpb.RangeDescriptor, error) {
	split := f.bootstrapRanges != 0 || f.splitKeys != ""
	switch {
	case f.bootstrapFile != "" && (split || f.bootstrapReplicas != ""):
		return nil, usagef("--bootstrap-file replaces --bootstrap-ranges, --split-keys and --bootstrap-replicas; give one or the other")
	case f.bootstrapFile != "":
		descs, filePeers, err := readBootstrapFile(f.bootstrapFile)
		if err != nil {
			return nil, fmt.Errorf("--bootstrap-file: %w", err)
		}
		for id, addr := range filePeers {
			if prev, ok := peers[id]; ok && prev != addr {
				return nil, usagef("node %d has address %s in --peers but %s in the bootstrap file", id, prev, addr)
			}
			peers[id] = addr
		}
		return descs, nil
	case !split && f.bootstrapReplicas != "":
		return nil, usagef("--bootstrap-replicas needs --bootstrap-ranges or --split-keys")
	case !split:
		return nil, nil
	case f.bootstrapReplicas == "":
		return nil, usagef("--bootstrap-ranges and --split-keys need --bootstrap-replicas: the node ids that replicate the ranges")
	case f.bootstrapRanges < 0:
		return nil, usagef("--bootstrap-ranges must be positive, not %d", f.bootstrapRanges)
	}
	replicas, err := cli.ParseIDList(f.bootstrapReplicas)
	if err != nil {
		return nil, usagef("--bootstrap-replicas: %v", err)
	}
	var keys []string
	if f.splitKeys != "" {
		if keys, err = cli.SplitList(f.splitKeys); err != nil {
			return nil, usagef("--split-keys: %v", err)
		}
		if f.bootstrapRanges != 0 && f.bootstrapRanges != len(keys)+1 {
			return nil, usagef("--bootstrap-ranges %d disagrees with the %d ranges --split-keys makes; give just --split-keys", f.bootstrapRanges, len(keys)+1)
		}
	} else if keys, err = evenSplitKeys(f.bootstrapRanges); err != nil {
		return nil, usagef("--bootstrap-ranges: %v", err)
	}
	descs, err := splitDescriptors(keys, replicas)
	if err != nil {
		return nil, usagef("bootstrap ranges: %v", err)
	}
	return descs, nil
}

// nodeConfig is the node.Config for the options.
func (o startOptions) nodeConfig(logger *slog.Logger) node.Config {
	cfg := node.Config{
		NodeID:       o.id,
		Dir:          o.dataDir,
		ListenAddr:   o.listen,
		GossipAddr:   o.gossip,
		Seeds:        o.join,
		TickInterval: o.tick,
		Logger:       logger,
		Tracing:      o.tracing,
		// With a placement service, the node is ready (health SERVING)
		// once it registered.
		WaitReady: len(o.placement) > 0,

		EnableFaultInjection: o.faultInjection,
		ClockOffset:          o.clockOffset,
		MemTableSize:         o.memTableSize,
		WALPreallocation:     o.walPreallocation,
	}
	if len(o.peers) > 0 {
		cfg.Peers = maps.Clone(o.peers)
	}
	return cfg
}

func runStart(ctx context.Context, e *env, o startOptions) error {
	logger := o.logFormat.NewLogger(e.stderr, o.logLevel)
	if o.pprof != "" {
		stopPprof, err := cli.ServePprof(o.pprof)
		if err != nil {
			return err
		}
		defer stopPprof()
	}
	ep, err := endpoint.Open(o.metricsAddr)
	if err != nil {
		return err
	}
	defer ep.Close()
	cfg := o.nodeConfig(logger)
	if cfg.MeterProvider, err = ep.Provider(endpoint.NodeLabel(o.id)); err != nil {
		return err
	}
	n, err := startNode(e, cfg, o.bootstrap, logger)
	if err != nil {
		return err
	}
	sinceSignal := cli.StopClock(ctx)
	gossip := n.GossipAddr()
	if gossip == "" {
		gossip = "off"
	}
	ctx, refused := context.WithCancelCause(ctx)
	defer refused(nil)
	unregister := func() {}
	if len(o.placement) > 0 {
		if unregister, err = register(o.placement, []*node.Node{n}, refused); err != nil {
			n.Stop()
			return err
		}
	}
	if url := ep.URL(); url != "" {
		fmt.Fprintf(e.stdout, "shardd node %d metrics on %s\n", n.ID(), url)
	}
	fmt.Fprintf(e.stdout, "shardd node %d serving on %s (gossip %s), data in %s\n", n.ID(), n.Addr(), gossip, o.dataDir)
	err = serve(ctx, e, []*node.Node{n}, logger, o.drainTimeout)
	unregister()
	if err == nil {
		cli.LogStopped(logger, sinceSignal())
	}
	return err
}

// drain hands off the nodes' leaderships, all at once, for at most
// timeout.
func drain(nodes []*node.Node, timeout time.Duration) {
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	var wg sync.WaitGroup
	for _, n := range nodes {
		wg.Go(func() { n.Drain(ctx) })
	}
	wg.Wait()
}

// heartbeatInterval is how often a node reports to the placement service,
// well within the service's default 5 s liveness timeout, and often
// enough that a node its peers lost is seen down within a second.
const heartbeatInterval = 250 * time.Millisecond

// register registers nodes with the placement service at addrs, keeps
// reporting their load and teaches them the other nodes' addresses, until
// the returned function is called. If a registration is refused for good
// (the node belongs to another cluster, or its store is not the one it
// registered with), it calls refused with the error, which matches
// client.ErrRefused: the node must stop.
func register(addrs []string, nodes []*node.Node, refused context.CancelCauseFunc) (stop func(), err error) {
	pc, err := client.New(addrs)
	if err != nil {
		return nil, err
	}
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	for _, n := range nodes {
		wg.Go(func() {
			err := client.Heartbeat(ctx, pc, n, heartbeatInterval, func() client.Load {
				st := n.Stats()
				return client.Load{Replicas: uint32(st.Groups), Leaders: uint32(st.Leaders), Draining: n.Draining(), LostPeers: n.LostPeers()}
			})
			if err != nil {
				refused(fmt.Errorf("node %d: %w", n.ID(), err))
			}
		})
	}
	// Peers' addresses come from the service too, so a node needs neither
	// gossip nor --peers to reach the replicas of its ranges.
	wg.Go(func() {
		client.FollowNodes(ctx, pc, heartbeatInterval, func(id uint64, addr string) {
			for _, n := range nodes {
				if id != n.ID() {
					n.SetPeer(id, addr)
				}
			}
		})
	})
	return func() { cancel(); wg.Wait(); pc.Close() }, nil
}

// startNode starts a node. On its first start (a store with no range) the
// node creates its replicas of the bootstrap ranges before it serves, so
// that no peer's message finds a range missing (node.Config.Bootstrap).
func startNode(e *env, cfg node.Config, bootstrap []*kvpb.RangeDescriptor, logger *slog.Logger) (*node.Node, error) {
	cfg.OnFatal = func(err error) {
		logger.Error("DISK ERROR: the node stopped and will exit; check the disk and the data directory before restarting it",
			"node", cfg.NodeID, "data_dir", cfg.Dir, "err", err)
	}
	if e.tweakNode != nil {
		e.tweakNode(&cfg)
	}
	if len(bootstrap) > 0 && len(hostedBy(bootstrap, cfg.NodeID)) == 0 {
		logger.Warn("no bootstrap range lists this node as a replica: it starts with no ranges", "node", cfg.NodeID)
	}
	cfg.Bootstrap = bootstrap
	n, err := node.Start(cfg)
	if err != nil {
		return nil, fmt.Errorf("cannot start node %d: %w", cfg.NodeID, err)
	}
	return n, nil
}

// serve runs until ctx is cancelled (a signal, or a refused registration:
// see register), then stops the nodes, after handing off their
// leaderships for at most drainTimeout on a signal. If a node stops by
// itself first (a disk error), it stops the others and returns the node's
// error; a refused registration is returned too. A node stopped by an
// operator (shardd drain) ends serve cleanly: it returns nil, and the
// caller, once it has stopped the rest, says "stopped cleanly".
func serve(ctx context.Context, e *env, nodes []*node.Node, logger *slog.Logger, drainTimeout time.Duration) error {
	died := make(chan *node.Node, len(nodes))
	quit := make(chan struct{})
	defer close(quit)
	for _, n := range nodes {
		go func() {
			select {
			case <-n.Done():
				died <- n
			case <-quit:
			}
		}()
	}
	var failed *node.Node
	var refused error
	select {
	case <-ctx.Done():
		if cause := context.Cause(ctx); errors.Is(cause, client.ErrRefused) {
			refused = cause
			logger.Error("the placement service and the node do not belong together: stopping", "err", cause)
			break
		}
		if e.releaseSignals != nil {
			e.releaseSignals()
		}
		if drainTimeout > 0 {
			logger.Info("signal received: draining, then stopping (a second signal stops at once)", "timeout", drainTimeout)
			drain(nodes, drainTimeout)
		} else {
			logger.Info("signal received: stopping")
		}
	case failed = <-died:
		if failed.StopRequested() {
			logger.Info("stopped on request", "node", failed.ID())
			failed = nil
		}
	}
	// The nodes stop together: each one's stop is mostly waiting (its
	// gossip leave lingers for the news to spread), so one after the
	// other would add the waits up.
	var wg sync.WaitGroup
	for _, n := range nodes {
		wg.Go(n.Stop) // waits for a stop already under way to finish
	}
	wg.Wait()
	for _, n := range nodes {
		if err := n.Err(); err != nil {
			return fmt.Errorf("node %d stopped after a disk error: %w", n.ID(), err)
		}
	}
	if refused != nil {
		return refused
	}
	if failed != nil {
		return fmt.Errorf("node %d stopped unexpectedly", failed.ID())
	}
	return nil
}
