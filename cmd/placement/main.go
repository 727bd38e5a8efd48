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
// placement/service, where all the logic lives) and handles signals.
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

// usageError is a bad command line: exit code 2, with a pointer to --help.
type usageError struct{ error }

type command struct {
	name, args, summary, doc string
	setup                    func(fs *flag.FlagSet) func(ctx context.Context, stdout io.Writer) error
}

var commands = []*command{
	{name: "start", args: "--id N --data-dir DIR [flags]", summary: "run one placement process",
		doc: `Runs one placement process until interrupted (SIGINT or SIGTERM).

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
		setup: func(*flag.FlagSet) func(context.Context, io.Writer) error {
			return func(_ context.Context, stdout io.Writer) error {
				_, err := fmt.Fprintln(stdout, buildinfo.Line("placement"))
				return err
			}
		}},
}

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := run(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	os.Exit(code)
}

// run runs the command line args and returns the exit code.
func run(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	if len(args) > 0 && (args[0] == "--version" || args[0] == "-version") {
		args = append([]string{"version"}, args[1:]...)
	}
	if len(args) == 0 || args[0] == "help" || args[0] == "-h" || args[0] == "--help" || args[0] == "-help" {
		if len(args) > 1 {
			if c := find(args[1]); c != nil {
				fs := flagSet(c, stdout)
				c.setup(fs)
				fs.Usage()
				return exitOK
			}
			fmt.Fprintf(stderr, "placement: no command %q\n", args[1])
			usage(stderr)
			return exitUsage
		}
		w := stdout
		if len(args) == 0 {
			w = stderr
		}
		usage(w)
		if len(args) == 0 {
			return exitUsage
		}
		return exitOK
	}
	c := find(args[0])
	if c == nil {
		fmt.Fprintf(stderr, "placement: no command %q\n", args[0])
		usage(stderr)
		return exitUsage
	}
	for _, a := range args[1:] {
		if a == "-h" || a == "-help" || a == "--help" {
			fs := flagSet(c, stdout) // asked for: to stdout
			c.setup(fs)
			fs.Usage()
			return exitOK
		}
	}
	fs := flagSet(c, stderr)
	runCmd := c.setup(fs)
	if err := fs.Parse(args[1:]); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return exitOK
		}
		return exitUsage // the flag package printed the error and usage
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(stderr, "placement %s: unexpected arguments %q\nRun 'placement %s --help' for usage.\n", c.name, fs.Args(), c.name)
		return exitUsage
	}
	if err := runCmd(ctx, stdout); err != nil {
		fmt.Fprintf(stderr, "placement %s: %v\n", c.name, err)
		var ue usageError
		if errors.As(err, &ue) {
			fmt.Fprintf(stderr, "Run 'placement %s --help' for usage.\n", c.name)
			return exitUsage
		}
		return exitError
	}
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
		fmt.Fprintf(out, "Usage: placement %s %s\n\n%s\n\nFlags:\n", c.name, c.args, c.doc)
		fs.PrintDefaults()
	}
	return fs
}

func usage(w io.Writer) {
	fmt.Fprintf(w, "Usage: placement <command> [flags]\n\nCommands:\n")
	for _, c := range commands {
		fmt.Fprintf(w, "  %-8s %s\n", c.name, c.summary)
	}
	fmt.Fprintf(w, "  %-8s %s\n\nRun 'placement <command> --help' for a command's flags.\n", "help", "explain a command and its flags")
}

// startFlags are the flags of "placement start".
type startFlags struct {
	id                      uint64
	listen, dataDir, peers  string
	splitKeys, logLevel     string
	logFormat, metricsAddr  string
	initialRanges, replicas int
	expectedNodes           int
	balanceInterval         time.Duration
	settleTime              time.Duration
	deadAfter               time.Duration
	maxConcurrentMoves      int
	splitSize               int64
	splitQPS                float64
	maxConcurrentSplits     int
	balanceLoad             bool
	loadThreshold           float64
	loadFloor               float64
	loadCooldown            time.Duration
	tracing                 provider.Flags
}

func setupStart(fs *flag.FlagSet) func(context.Context, io.Writer) error {
	var f startFlags
	fs.Uint64Var(&f.id, "id", 0, "this process's id among the placement processes (1, 2, 3); required")
	fs.StringVar(&f.listen, "listen", "127.0.0.1:7000", "host:port to serve the Placement API and the placement group's traffic on")
	fs.StringVar(&f.dataDir, "data-dir", "", "directory of this process's store; required")
	fs.StringVar(&f.peers, "peers", "", "every placement process as id=host:port, comma-separated, this one included (default: this process alone)")
	fs.IntVar(&f.initialRanges, "initial-ranges", 1, "number of ranges to bootstrap, cut evenly over the keys k0000..k9999")
	fs.StringVar(&f.splitKeys, "split-keys", "", "explicit split keys of the first ranges, comma-separated, in increasing order (instead of --initial-ranges)")
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
	fs.StringVar(&f.logLevel, "log-level", "info", "debug, info, warn or error")
	f.tracing.Register(fs)
	cli.RegisterLogFormatFlag(fs, &f.logFormat)
	cli.RegisterMetricsAddrFlag(fs, &f.metricsAddr)
	return func(ctx context.Context, stdout io.Writer) error {
		cfg, err := f.config()
		if err != nil {
			return usageError{err}
		}
		ep, err := endpoint.Open(f.metricsAddr)
		if err != nil {
			return err
		}
		defer ep.Close()
		if cfg.MeterProvider, err = ep.Provider(endpoint.PlacementLabel(cfg.ID)); err != nil {
			return err
		}
		s, err := service.Start(cfg)
		if err != nil {
			return fmt.Errorf("%w\ncheck the flags, that --listen is free and that --data-dir is writable", err)
		}
		if url := ep.URL(); url != "" {
			fmt.Fprintf(stdout, "placement process %d metrics on %s\n", cfg.ID, url)
		}
		fmt.Fprintf(stdout, "placement process %d serving on %s\n", cfg.ID, s.Addr())
		<-ctx.Done()
		s.Stop()
		return nil
	}
}

// config turns the flags into a service.Config, or says what is wrong.
func (f *startFlags) config() (service.Config, error) {
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
	cfg.Logger = format.NewLogger(os.Stderr, level)
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
