package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"os"
	"runtime"
	"strings"
	"time"
)

// runFlags are the flags of a workload run that run and compare share.
type runFlags struct {
	workloads  string
	ranges     int
	cfg        runConfig
	load       bool
	jsonPath   string
	chartsDir  string
	etcdBinary string
	etcdConns  int
}

func (f *runFlags) register(fs *flag.FlagSet) {
	fs.StringVar(&f.workloads, "workload", "A", "YCSB `workloads` to run one after the other, comma-separated: A (50% read, 50% update), B (95/5), C (read only), E (short scans, 5% inserts), F (read-modify-write by compare-and-swap), write (update only)")
	fs.IntVar(&f.ranges, "ranges", 1000, "ranges (Paxos groups) of the shardd cluster this tool starts, split evenly over the key space")
	fs.IntVar(&f.cfg.clients, "clients", 64, "concurrent clients, each with one operation in flight")
	fs.DurationVar(&f.cfg.duration, "duration", 10*time.Second, "how long each workload runs (0: until --ops)")
	fs.Int64Var(&f.cfg.ops, "ops", 0, "stop each workload after this many operations (0: after --duration)")
	fs.IntVar(&f.cfg.keys, "keys", 10000, "records the load phase writes and the workloads read and update")
	fs.IntVar(&f.cfg.valueSize, "value-size", 100, "value size in bytes")
	fs.StringVar(&f.cfg.distribution, "distribution", "zipfian", "how keys are chosen: zipfian (YCSB's, constant 0.99) or uniform")
	fs.IntVar(&f.cfg.scanLength, "scan-length", 100, "a scan reads 1 to this many keys (uniformly drawn)")
	fs.BoolVar(&f.load, "load", true, "write every record before the first workload (turn off against a cluster already loaded)")
	fs.DurationVar(&f.cfg.progress, "progress", 5*time.Second, "print a progress line this often (0: never)")
	fs.DurationVar(&f.cfg.sample, "sample", time.Second, "the time series' window: the charts' and JSON's resolution")
	fs.Uint64Var(&f.cfg.seed, "seed", 1, "seed of the clients' random operations and keys")
	fs.StringVar(&f.jsonPath, "json", "", "write every result, the configuration and the machine as one JSON record to this `file`")
	fs.StringVar(&f.chartsDir, "charts", "", "write throughput, latency and distribution charts (PNG and SVG) into this `directory`")
	fs.StringVar(&f.etcdBinary, "etcd-binary", defaultEtcdBinary, "the etcd binary to start (scripts/build-etcd builds it)")
	fs.IntVar(&f.etcdConns, "etcd-conns", 8, "etcd client connections the clients share, round-robin")
}

func (f *runFlags) validate() ([]workload, error) {
	ws, err := parseWorkloads(f.workloads)
	if err != nil {
		return nil, err
	}
	c := f.cfg
	switch {
	case c.clients < 1:
		return nil, fmt.Errorf("--clients %d: want at least 1", c.clients)
	case c.keys < 1:
		return nil, fmt.Errorf("--keys %d: want at least 1", c.keys)
	case c.duration <= 0 && c.ops <= 0:
		return nil, fmt.Errorf("--duration and --ops are both 0: the run would not end")
	case c.scanLength < 1:
		return nil, fmt.Errorf("--scan-length %d: want at least 1", c.scanLength)
	case c.sample <= 0:
		return nil, fmt.Errorf("--sample %v: want a positive window", c.sample)
	case c.valueSize < 1:
		return nil, fmt.Errorf("--value-size %d: want at least 1 byte", c.valueSize)
	case f.ranges < 1:
		return nil, fmt.Errorf("--ranges %d: want at least 1", f.ranges)
	}
	if _, err := newKeyChooser(c.distribution, 1); err != nil {
		return nil, err
	}
	return ws, nil
}

// report is the JSON record of a run or comparison.
type report struct {
	Command  string        `json:"command"`
	Started  time.Time     `json:"started"`
	Machine  machine       `json:"machine"`
	Ranges   int           `json:"ranges,omitempty"`
	Runs     []*runResult  `json:"runs"`
	Compared []*comparison `json:"compared,omitempty"`
}

// machine describes where the figures were measured.
type machine struct {
	CPUs      int    `json:"cpus"`
	CPUModel  string `json:"cpu_model"`
	MemoryMiB int64  `json:"memory_mib"`
	Kernel    string `json:"kernel"`
	Go        string `json:"go"`
}

func describeMachine() machine {
	m := machine{CPUs: runtime.NumCPU(), Go: runtime.Version()}
	if b, err := os.ReadFile("/proc/cpuinfo"); err == nil {
		for _, line := range strings.Split(string(b), "\n") {
			if k, v, ok := strings.Cut(line, ":"); ok && strings.TrimSpace(k) == "model name" {
				m.CPUModel = strings.TrimSpace(v)
				break
			}
		}
	}
	if b, err := os.ReadFile("/proc/meminfo"); err == nil {
		var kb int64
		if _, err := fmt.Sscanf(string(b), "MemTotal: %d kB", &kb); err == nil {
			m.MemoryMiB = kb >> 10
		}
	}
	if b, err := os.ReadFile("/proc/sys/kernel/osrelease"); err == nil {
		m.Kernel = strings.TrimSpace(string(b))
	}
	return m
}

func (m machine) String() string {
	return fmt.Sprintf("%d CPUs (%s), %d MiB of memory, Linux %s, %s", m.CPUs, m.CPUModel, m.MemoryMiB, m.Kernel, m.Go)
}

func writeJSON(path string, r *report) error {
	b, err := json.MarshalIndent(r, "", "  ")
	if err != nil {
		return err
	}
	return os.WriteFile(path, append(b, '\n'), 0o644)
}

func runCmd(args []string) error {
	fs := flag.NewFlagSet("run", flag.ExitOnError)
	var f runFlags
	f.register(fs)
	sharddBinary := fs.String("shardd-binary", "", "the shardd `binary` to start (default: build ./cmd/shardd from this tree)")
	systemName := fs.String("system", "shardd", "the store to drive: shardd or etcd")
	placementAddrs := fs.String("placement", "", "drive a running shardd cluster through its placement service at these comma-separated `addresses` instead of starting one")
	etcdEndpoints := fs.String("etcd-endpoints", "", "with --system etcd, drive a running etcd cluster at these comma-separated `URLs` instead of starting one")
	fs.Usage = func() {
		fmt.Fprintln(fs.Output(), `usage: go run ./bench run [flags]

Run loads --keys records, then runs each --workload for --duration against
a three-node cluster it starts on loopback (or a running one: --placement,
--etcd-endpoints), printing a progress line every --progress and then a
table per workload: count, ops/s and latency percentiles per operation,
and the CPU per operation of the cluster's processes and of this load
generator. For example:

  go run ./bench run --workload A,B,C,E,F,write --ranges 1000 --duration 30s --json a.json --charts charts/
  go run ./bench run --system etcd --workload A   (after scripts/build-etcd)

Flags:`)
		fs.PrintDefaults()
	}
	fs.Parse(args)
	ws, err := f.validate()
	if err != nil {
		return err
	}
	ctx := context.Background()
	var sys system
	switch {
	case *systemName == "shardd" && *placementAddrs != "":
		sys, err = dialSharddSystem(ctx, *placementAddrs)
	case *systemName == "shardd":
		sys, err = startSharddSystem(ctx, "shardd", *sharddBinary, f.ranges)
	case *systemName == "etcd" && *etcdEndpoints != "":
		sys, err = dialEtcdSystem(*etcdEndpoints, f.etcdConns)
	case *systemName == "etcd":
		sys, err = startEtcdSystem(ctx, f.etcdBinary, f.etcdConns)
	default:
		return fmt.Errorf("--system %q: want shardd or etcd", *systemName)
	}
	if err != nil {
		return err
	}
	defer sys.close()
	rep := &report{Command: "run " + strings.Join(args, " "), Started: time.Now(), Machine: describeMachine()}
	if *systemName == "shardd" && *placementAddrs == "" {
		rep.Ranges = f.ranges
	}
	fmt.Printf("machine: %s\n", rep.Machine)
	if f.load {
		if err := load(ctx, sys.store(), f.cfg, os.Stderr); err != nil {
			return err
		}
	}
	for _, w := range ws {
		res, err := runOne(ctx, sys, w, f.cfg, os.Stderr)
		if err != nil {
			return err
		}
		printResult(os.Stdout, res)
		rep.Runs = append(rep.Runs, res)
		if f.chartsDir != "" {
			if err := chartRuns(f.chartsDir, sys.name()+"-"+w.name, "workload "+w.name, []*runResult{res}, []string{sys.name()}); err != nil {
				return err
			}
		}
	}
	return finishReport(&f, rep)
}

// runOne runs one workload against sys.
func runOne(ctx context.Context, sys system, w workload, cfg runConfig, progress io.Writer) (*runResult, error) {
	bound := fmt.Sprintf("for %v", cfg.duration)
	if cfg.ops > 0 {
		bound = fmt.Sprintf("for %d operations", cfg.ops)
		if cfg.duration > 0 {
			bound += fmt.Sprintf(" or %v", cfg.duration)
		}
	}
	fmt.Fprintf(progress, "%s: workload %s (%s) %s\n", sys.name(), w.name, w.what, bound)
	res, err := run(ctx, sys.store(), w, cfg, sys.pids(), progress)
	if err != nil {
		return nil, err
	}
	res.System = sys.name()
	return res, nil
}

// chartRuns draws runs into dir, one color per system in systems (the
// order of the legend), each system's rounds as separate lines.
func chartRuns(dir, prefix, title string, runs []*runResult, systems []string) error {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	var series []chartSeries
	for i, name := range systems {
		s := chartSeries{label: name, color: i, hist: newHist()}
		for _, r := range runs {
			if r.System == name {
				s.rounds = append(s.rounds, r.Samples)
				s.hist.Merge(r.hist)
			}
		}
		series = append(series, s)
	}
	files, err := writeCharts(dir, prefix, title, series)
	if err != nil {
		return err
	}
	fmt.Fprintf(os.Stderr, "charts: %s\n", strings.Join(files, " "))
	return nil
}

func finishReport(f *runFlags, rep *report) error {
	if f.jsonPath == "" {
		return nil
	}
	if err := writeJSON(f.jsonPath, rep); err != nil {
		return err
	}
	fmt.Fprintf(os.Stderr, "json: %s\n", f.jsonPath)
	return nil
}
