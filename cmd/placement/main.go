// Command placement runs the placement service of a shardd cluster: the
// replicated owner of the range map.
//
//	placement start   run one placement process
//	placement version print the build of this binary
//	placement help    explain a command and its flags
//
// shardd inspects the service: shardd nodes --placement ADDRS and shardd
// ranges --placement ADDRS.
//
// The command is thin: it parses flags, starts a service.Server (package
// placement/service, where all the logic lives) and handles signals. Its
// help has shardd's layout (internal/cli.Program).
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/shardd/shardd/internal/buildinfo"
	"github.com/shardd/shardd/internal/cli"
	"github.com/shardd/shardd/internal/metrics/endpoint"
	"github.com/shardd/shardd/internal/tracing/provider"
	"github.com/shardd/shardd/placement/service"
)

// Exit codes.
const (
	exitOK    = 0
	exitError = 1 // the command failed
	exitUsage = 2 // bad command line
)

// usageError is a bad command line: exit code 2, with a pointer to help.
type usageError struct{ error }

// env is what a command runs against: the process's output streams, and
// releaseSignals, called once a command has begun stopping after a
// signal, so that a second Ctrl-C kills the process.
type env struct {
	stdout, stderr io.Writer
	releaseSignals func()
}

type command struct {
	name, args, summary, doc string
	setup                    func(fs *flag.FlagSet) func(ctx context.Context, e *env) error
}

var commands = []*command{
	{name: "start", args: "--id N --data-dir DIR [flags]", summary: "run one placement process",
		doc: `Start runs one placement process until SIGINT or SIGTERM, then stops
cleanly and exits 0.

Run 1 process, or 3 to tolerate the loss of one: give each its own --id and
--data-dir, and all of them the same --peers. The processes replicate the
range map among themselves; the one that leads serves the API and, once
--expected-nodes shardd nodes have registered, creates the first ranges on
them and then keeps their leaders spread evenly, and splits the ranges
whose data grows past --split-size or whose load passes --split-qps.
With --balance-load (on by default) it also spreads the load: it moves
leaders, and if that cannot do, replicas, off nodes that serve more reads
and writes per second than the mean by over --load-threshold of it (and by
over --load-floor ops/s), keeping the counts of leaders and replicas per
node even.

Inspect the service with shardd: "shardd nodes --placement ADDRS" lists
the registered nodes and "shardd ranges --placement ADDRS" the range map.`,
		setup: setupStart},
	{name: "version", summary: "print the build of this binary",
		doc: `Prints, on one line, the module version, the commit this binary was built
from (its hash, whether the tree had uncommitted changes, its time), the Go
version and the platform. 'placement --version' prints the same.`,
		setup: func(*flag.FlagSet) func(context.Context, *env) error {
			return func(_ context.Context, e *env) error {
				_, err := fmt.Fprintln(e.stdout, buildinfo.Line("placement"))
				return err
			}
		}},
}

// program is placement's help.
func program() cli.Program {
	p := cli.Program{
		Name:     "placement",
		Synopsis: "<command> [flags]",
		About: `placement runs the placement service of a shardd cluster: the replicated
owner of the range map, which creates the ranges on the nodes, keeps
their leaders spread, moves replicas and splits ranges.`,
		Notes: `Run 'placement help <command>' or 'placement <command> -h' for a command's
flags. shardd inspects the service: 'shardd nodes --placement ADDRS' and
'shardd ranges --placement ADDRS'.`,
	}
	for _, c := range commands {
		p.Commands = append(p.Commands, [2]string{c.name, c.summary})
	}
	return p
}

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := run(ctx, &env{stdout: os.Stdout, stderr: os.Stderr, releaseSignals: stop}, os.Args[1:])
	stop()
	os.Exit(code)
}

// run runs the command line args (without the program name) and returns
// the process's exit code.
func run(ctx context.Context, e *env, args []string) int {
	if len(args) > 0 && (args[0] == "--version" || args[0] == "-version") {
		args = append([]string{"version"}, args[1:]...)
	}
	if len(args) == 0 {
		program().WriteUsage(e.stderr)
		return exitUsage
	}
	name, rest := args[0], args[1:]
	switch name {
	case "help", "-h", "-help", "--help":
		return runHelp(e, rest)
	}
	c := find(name)
	if c == nil {
		fmt.Fprintf(e.stderr, "placement: unknown command %q\n\n", name)
		program().WriteUsage(e.stderr)
		return exitUsage
	}
	fs := flagSet(c, e.stderr)
	runCmd := c.setup(fs)
	pos, err := cli.ParseInterspersed(fs, rest)
	if err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return exitOK
		}
		return exitUsage // fs printed the error and the usage
	}
	if len(pos) > 0 {
		err = usageError{fmt.Errorf("unexpected arguments %q", pos)}
	} else {
		err = runCmd(ctx, e)
	}
	if err == nil {
		return exitOK
	}
	fmt.Fprintf(e.stderr, "placement %s: %v\n", c.name, err)
	var ue usageError
	if errors.As(err, &ue) {
		fmt.Fprintf(e.stderr, "Run 'placement help %s' for its flags.\n", c.name)
		return exitUsage
	}
	return exitError
}

func runHelp(e *env, args []string) int {
	if len(args) == 0 {
		program().WriteUsage(e.stdout)
		return exitOK
	}
	c := find(args[0])
	if c == nil {
		fmt.Fprintf(e.stderr, "placement help: unknown command %q\n\n", args[0])
		program().WriteUsage(e.stderr)
		return exitUsage
	}
	fs := flagSet(c, e.stdout)
	c.setup(fs)
	fs.Usage()
	return exitOK
}

func find(name string) *command {
	for _, c := range commands {
		if c.name == name {
			return c
		}
	}
	return nil
}

func flagSet(c *command, out io.Writer) *flag.FlagSet {
	fs := flag.NewFlagSet("placement "+c.name, flag.ContinueOnError)
	fs.SetOutput(out)
	fs.Usage = func() {
		cli.WriteCommandHead(out, "placement "+c.name+" "+c.args, c.doc)
		cli.WriteFlags(out, "Flags:", fs)
	}
	return fs
}

// startFlags are the flags of "placement start".
type startFlags struct {
	id                      uint64
	listen, dataDir, peers  string
	splitKeys, logLevel     string
	logFormat, metricsAddr  string
	pprof                   string
	balanceLoad             bool
	loadThreshold           float64
	loadFloor               float64
	loadCooldown            time.Duration
	tracing                 provider.Flags
	initialRanges, replicas int
	expectedNodes           int
	balanceInterval         time.Duration
	settleTime              time.Duration
	deadAfter               time.Duration
	maxConcurrentMoves      int
	splitSize               int64
	splitQPS                float64
	maxConcurrentSplits     int
}

func setupStart(fs *flag.FlagSet) func(context.Context, *env) error {
	var f startFlags
	fs.Uint64Var(&f.id, "id", 0, "this process's `id` among the placement processes (1, 2, 3); required")
	fs.StringVar(&f.listen, "listen", "127.0.0.1:7000", "`host:port` to serve the Placement API and the placement group's traffic on")
	fs.StringVar(&f.dataDir, "data-dir", "", "`directory` of this process's store, created if missing; required")
	fs.StringVar(&f.peers, "peers", "", "every placement process as `id=host:port,...`, this one included (default: this process alone)")
	fs.IntVar(&f.initialRanges, "initial-ranges", 1, "`number` of ranges to bootstrap, cut evenly over the keys k0000..k9999")
	fs.StringVar(&f.splitKeys, "split-keys", "", "explicit split `keys` of the first ranges, comma-separated, in increasing order (instead of --initial-ranges)")
	fs.IntVar(&f.replicas, "replicas", 3, "replicas per range, on distinct nodes")
	fs.IntVar(&f.expectedNodes, "expected-nodes", 0, "nodes that must register before the first ranges are created (default: --replicas)")
	fs.DurationVar(&f.balanceInterval, "balance-interval", time.Second, "how often the leader spreads range leaders over the nodes")
	fs.DurationVar(&f.settleTime, "settle-time", 10*time.Second, "how long a node that was down must be back before the balancer moves leaders or replicas onto it")
	fs.Int64Var(&f.splitSize, "split-size", 64<<20, "split a range automatically once its data reaches this many bytes (0: never)")
	fs.Float64Var(&f.splitQPS, "split-qps", 2500, "split a range automatically once its leader serves this many reads and writes per second (0: never)")
	fs.DurationVar(&f.deadAfter, "dead-after", time.Minute, "how long a node must be silent before its replicas are re-created on other nodes")
	fs.IntVar(&f.maxConcurrentMoves, "max-concurrent-moves", 2, "replica moves (repairs and balancing) under way at once, at most")
	fs.IntVar(&f.maxConcurrentSplits, "max-concurrent-splits", 4, "splits under way at once, at most; automatic splits wait for a free one")
	fs.BoolVar(&f.balanceLoad, "balance-load", true, "spread the reads and writes per second the nodes serve, by moving leaders (and replicas, if leaders cannot do)")
	fs.Float64Var(&f.loadThreshold, "load-threshold", 0.1, "with --balance-load, move load off a node serving more than the mean by over this fraction of it")
	fs.Float64Var(&f.loadFloor, "load-floor", 100, "with --balance-load, move load off a node only if it serves more than the mean by over this many ops/s too (0: no floor)")
	fs.DurationVar(&f.loadCooldown, "load-cooldown", 30*time.Second, "with --balance-load, how long a range whose leader changed stays where it is (its new leader needs a load window or two to measure it)")
	fs.StringVar(&f.logLevel, "log-level", "info", "log `level`: debug, info, warn or error (logs go to stderr)")
	f.tracing.Register(fs)
	cli.RegisterLogFormatFlag(fs, &f.logFormat)
	cli.RegisterMetricsAddrFlag(fs, &f.metricsAddr)
	fs.StringVar(&f.pprof, "pprof", "", "serve Go's profiles (/debug/pprof/) on this `host:port`, e.g. 127.0.0.1:6061; empty disables")
	return func(ctx context.Context, e *env) error {
		cfg, err := f.config(e.stderr)
		if err != nil {
			return usageError{err}
		}
		if f.pprof != "" {
			stopPprof, err := cli.ServePprof(f.pprof)
			if err != nil {
				return err
			}
			defer stopPprof()
		}
		ep, err := endpoint.Open(f.metricsAddr)
		if err != nil {
			return err
		}
		defer ep.Close()
		if cfg.MeterProvider, err = ep.Provider(endpoint.PlacementLabel(cfg.ID)); err != nil {
			return err
		}
		sinceSignal := cli.StopClock(ctx)
		s, err := service.Start(cfg)
		if err != nil {
			return fmt.Errorf("%w\ncheck the flags, that --listen is free and that --data-dir is writable", err)
		}
		if url := ep.URL(); url != "" {
			fmt.Fprintf(e.stdout, "placement process %d metrics on %s\n", cfg.ID, url)
		}
		fmt.Fprintf(e.stdout, "placement process %d serving on %s\n", cfg.ID, s.Addr())
		<-ctx.Done()
		if e.releaseSignals != nil {
			e.releaseSignals()
		}
		cfg.Logger.Info("signal received: stopping (a second signal stops at once)")
		s.Stop()
		cli.LogStopped(cfg.Logger, sinceSignal())
		return nil
	}
}

// config turns the flags into a service.Config, or says what is wrong.
// The service logs to logs.
func (f *startFlags) config(logs io.Writer) (service.Config, error) {
	cfg := service.Config{ID: f.id, ListenAddr: f.listen, DataDir: f.dataDir, Replicas: f.replicas,
		ExpectedNodes: f.expectedNodes, BalanceInterval: f.balanceInterval, SettleTime: f.settleTime,
		SplitSize: offIfZero(f.splitSize), SplitQPS: offIfZero(f.splitQPS), MaxConcurrentSplits: f.maxConcurrentSplits,
		DeadAfter: f.deadAfter, MaxConcurrentMoves: f.maxConcurrentMoves,
		LoadThreshold: f.loadThreshold, LoadFloor: offIfZero(f.loadFloor), LoadCooldown: f.loadCooldown}
	if !f.balanceLoad {
		cfg.LoadThreshold = -1
	}
	var err error
	if cfg.Tracing, err = f.tracing.Config(provider.Config{}, os.Getenv); err != nil {
		return cfg, err
	}
	switch {
	case f.id == 0:
		return cfg, errors.New("--id is required and must not be 0")
	case f.dataDir == "":
		return cfg, errors.New("--data-dir is required")
	case f.replicas < 1:
		return cfg, fmt.Errorf("--replicas %d: must be at least 1", f.replicas)
	case f.expectedNodes < 0:
		return cfg, fmt.Errorf("--expected-nodes %d: must not be negative", f.expectedNodes)
	case f.balanceInterval <= 0:
		return cfg, fmt.Errorf("--balance-interval %v: must be positive", f.balanceInterval)
	case f.settleTime <= 0:
		return cfg, fmt.Errorf("--settle-time %v: must be positive", f.settleTime)
	case f.splitSize < 0:
		return cfg, fmt.Errorf("--split-size %d: must not be negative (0 turns size splits off)", f.splitSize)
	case f.splitQPS < 0:
		return cfg, fmt.Errorf("--split-qps %v: must not be negative (0 turns load splits off)", f.splitQPS)
	case f.deadAfter <= 0:
		return cfg, fmt.Errorf("--dead-after %v: must be positive", f.deadAfter)
	case f.maxConcurrentMoves < 1:
		return cfg, fmt.Errorf("--max-concurrent-moves %d: must be at least 1", f.maxConcurrentMoves)
	case f.maxConcurrentSplits < 1:
		return cfg, fmt.Errorf("--max-concurrent-splits %d: must be at least 1", f.maxConcurrentSplits)
	case f.balanceLoad && f.loadThreshold <= 0:
		return cfg, fmt.Errorf("--load-threshold %v: must be positive (--balance-load=false turns load balancing off)", f.loadThreshold)
	case f.balanceLoad && f.loadFloor < 0:
		return cfg, fmt.Errorf("--load-floor %v: must not be negative (0: no floor)", f.loadFloor)
	case f.balanceLoad && f.loadCooldown <= 0:
		return cfg, fmt.Errorf("--load-cooldown %v: must be positive", f.loadCooldown)
	}
	if err := cli.CheckListenAddr(f.listen); err != nil {
		return cfg, fmt.Errorf("--listen: %w", err)
	}
	if f.peers != "" {
		peers, err := cli.ParsePeers(f.peers)
		if err != nil {
			return cfg, fmt.Errorf("--peers: %w", err)
		}
		if len(peers) != 1 && len(peers) != 3 {
			return cfg, fmt.Errorf("--peers: %d placement processes; run 1, or 3 to tolerate one failure", len(peers))
		}
		if peers[f.id] == "" {
			return cfg, fmt.Errorf("--peers does not list this process (--id %d)", f.id)
		}
		cfg.Peers = peers
	}
	if f.splitKeys != "" {
		if f.initialRanges != 1 {
			return cfg, errors.New("give either --initial-ranges or --split-keys, not both")
		}
		keys, err := cli.SplitList(f.splitKeys)
		if err != nil {
			return cfg, fmt.Errorf("--split-keys: %w", err)
		}
		for _, k := range keys {
			cfg.SplitKeys = append(cfg.SplitKeys, []byte(k))
		}
	} else if f.initialRanges < 1 {
		return cfg, fmt.Errorf("--initial-ranges %d: must be at least 1", f.initialRanges)
	} else {
		cfg.InitialRanges = f.initialRanges
	}
	level, err := cli.ParseLogLevel(f.logLevel)
	if err != nil {
		return cfg, fmt.Errorf("--log-level: %w", err)
	}
	format, err := cli.ParseLogFormat(f.logFormat)
	if err != nil {
		return cfg, fmt.Errorf("--log-format: %w", err)
	}
	cfg.Logger = format.NewLogger(logs, level)
	return cfg, nil
}

// offIfZero turns a flag's 0 ("off") into the negative value that turns
// a service.Config threshold off (its 0 means the default).
func offIfZero[T int64 | float64](v T) T {
	if v == 0 {
		return -1
	}
	return v
}
