package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"math"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"text/tabwriter"
	"time"
)

// spread is one figure of a system over the rounds of a comparison.
type spread struct {
	Mean float64 `json:"mean"`
	SD   float64 `json:"sd"`
	Min  float64 `json:"min"`
	Max  float64 `json:"max"`
}

func spreadOf(xs []float64) spread {
	if len(xs) == 0 {
		return spread{}
	}
	s := spread{Min: slices.Min(xs), Max: slices.Max(xs)}
	for _, x := range xs {
		s.Mean += x / float64(len(xs))
	}
	if len(xs) > 1 {
		var v float64
		for _, x := range xs {
			v += (x - s.Mean) * (x - s.Mean)
		}
		s.SD = math.Sqrt(v / float64(len(xs)-1))
	}
	return s
}

// ratio is the first system's figure over the second's, round by round
// (each round ran both, one after the other, so machine noise that lasts
// a round hits both): the median of the rounds' ratios and their range.
type ratio struct {
	Median float64   `json:"median"`
	Min    float64   `json:"min"`
	Max    float64   `json:"max"`
	Rounds []float64 `json:"rounds"`
}

func ratioOf(a, b []float64) ratio {
	var r ratio
	for i := range min(len(a), len(b)) {
		if b[i] > 0 {
			r.Rounds = append(r.Rounds, a[i]/b[i])
		}
	}
	if len(r.Rounds) == 0 {
		return r
	}
	sorted := slices.Sorted(slices.Values(r.Rounds))
	n := len(sorted)
	r.Median = (sorted[(n-1)/2] + sorted[n/2]) / 2
	r.Min, r.Max = sorted[0], sorted[n-1]
	return r
}

// comparison sums up one workload's rounds on two systems.
type comparison struct {
	Workload string    `json:"workload"`
	Systems  [2]string `json:"systems"`
	Rounds   int       `json:"rounds"`
	// OpsPerSec, P50 and P99 (ms) and CPUPerOp (µs, store and load
	// generator) of each system over the rounds.
	OpsPerSec [2]spread `json:"ops_per_sec"`
	P50       [2]spread `json:"p50_ms"`
	P99       [2]spread `json:"p99_ms"`
	CPUPerOp  [2]spread `json:"cpu_us_per_op"`
	// Ratios of the first system's figures to the second's.
	OpsRatio ratio `json:"ops_per_sec_ratio"`
	P50Ratio ratio `json:"p50_ratio"`
	P99Ratio ratio `json:"p99_ratio"`
	CPURatio ratio `json:"cpu_per_op_ratio"`
}

// compare sums up runs, which alternate between systems a and b.
func compare(workload string, a, b string, runs []*runResult) *comparison {
	c := &comparison{Workload: workload, Systems: [2]string{a, b}}
	var ops, p50, p99, cpu [2][]float64
	for _, r := range runs {
		i := 0
		if r.System == b {
			i = 1
		}
		ops[i] = append(ops[i], r.OpsPerSec)
		p50[i] = append(p50[i], r.All.P50)
		p99[i] = append(p99[i], r.All.P99)
		if r.CPU != nil {
			cpu[i] = append(cpu[i], r.CPU.StoreMicros+r.CPU.LoadMicros)
		}
	}
	c.Rounds = min(len(ops[0]), len(ops[1]))
	for i := range 2 {
		c.OpsPerSec[i], c.P50[i], c.P99[i], c.CPUPerOp[i] = spreadOf(ops[i]), spreadOf(p50[i]), spreadOf(p99[i]), spreadOf(cpu[i])
	}
	c.OpsRatio, c.P50Ratio, c.P99Ratio = ratioOf(ops[0], ops[1]), ratioOf(p50[0], p50[1]), ratioOf(p99[0], p99[1])
	c.CPURatio = ratioOf(cpu[0], cpu[1])
	return c
}

// printComparison prints each system's figures (mean ± standard
// deviation over the rounds) and their ratio (median of the rounds'
// ratios, and their range).
func printComparison(w io.Writer, c *comparison) {
	fmt.Fprintf(w, "workload %s, %d rounds, %s against %s:\n", c.Workload, c.Rounds, c.Systems[0], c.Systems[1])
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintf(tw, "\t%s\t%s\tratio (median, range)\t\n", c.Systems[0], c.Systems[1])
	row := func(name string, s [2]spread, r ratio, format string) {
		fmt.Fprintf(tw, "%s\t"+format+" ± "+format+"\t"+format+" ± "+format+"\t%.2f (%.2f–%.2f)\t\n",
			name, s[0].Mean, s[0].SD, s[1].Mean, s[1].SD, r.Median, r.Min, r.Max)
	}
	row("ops/s", c.OpsPerSec, c.OpsRatio, "%.0f")
	row("p50 ms", c.P50, c.P50Ratio, "%.2f")
	row("p99 ms", c.P99, c.P99Ratio, "%.2f")
	if c.CPUPerOp[0].Mean > 0 && c.CPUPerOp[1].Mean > 0 {
		row("CPU µs/op", c.CPUPerOp, c.CPURatio, "%.0f")
	}
	tw.Flush()
}

// buildSharddRef builds cmd/shardd as of git ref into dir, from a copy
// of that commit's tree (git archive), so the working tree is left alone.
func buildSharddRef(ref, dir string) (string, error) {
	src := filepath.Join(dir, "src")
	if err := os.MkdirAll(src, 0o755); err != nil {
		return "", err
	}
	archive := exec.Command("git", "archive", "--format=tar", ref)
	untar := exec.Command("tar", "-x", "-C", src)
	pipe, err := archive.StdoutPipe()
	if err != nil {
		return "", err
	}
	untar.Stdin = pipe
	archive.Stderr, untar.Stderr = os.Stderr, os.Stderr
	if err := untar.Start(); err != nil {
		return "", err
	}
	if err := archive.Run(); err != nil {
		untar.Wait()
		return "", fmt.Errorf("git archive %s: %w", ref, err)
	}
	if err := untar.Wait(); err != nil {
		return "", err
	}
	bin := filepath.Join(dir, "shardd-"+strings.NewReplacer("/", "-", "~", "-", "^", "-").Replace(ref))
	build := exec.Command("go", "build", "-o", bin, "./cmd/shardd")
	build.Dir = src
	build.Stdout, build.Stderr = os.Stderr, os.Stderr
	if err := build.Run(); err != nil {
		return "", fmt.Errorf("build cmd/shardd at %s: %w", ref, err)
	}
	return bin, nil
}

func compareCmd(args []string) error {
	fs := flag.NewFlagSet("compare", flag.ExitOnError)
	var f runFlags
	f.register(fs)
	rounds := fs.Int("rounds", 3, "runs of each workload on each system, alternating between the systems (A B A B ...)")
	otherBinary := fs.String("shardd-binary", "", "compare this tree's shardd with this other shardd `binary` instead of etcd")
	otherRef := fs.String("shardd-ref", "", "compare this tree's shardd with shardd built at this git `ref` (e.g. HEAD~1) instead of etcd")
	fs.Usage = func() {
		fmt.Fprintln(fs.Output(), `usage: go run ./bench compare [flags]

Compare starts a three-node shardd cluster built from this tree and, beside
it, a three-member etcd cluster (or, with --shardd-binary or --shardd-ref,
a second shardd cluster from another build), loads both, and runs each
--workload --rounds times on each, alternating, so that machine noise hits
both. It prints every run's table, then each system's figures over the
rounds and their ratios. For example:

  scripts/build-etcd && go run ./bench compare --workload A,B,write --rounds 3 --duration 20s
  go run ./bench compare --shardd-ref main --workload write --rounds 5

Flags:`)
		fs.PrintDefaults()
	}
	fs.Parse(args)
	ws, err := f.validate()
	if err != nil {
		return err
	}
	if *rounds < 1 {
		return fmt.Errorf("--rounds %d: want at least 1", *rounds)
	}
	if *otherBinary != "" && *otherRef != "" {
		return fmt.Errorf("--shardd-binary and --shardd-ref both name the other build; give one")
	}
	ctx := context.Background()
	ours, err := startSharddSystem(ctx, "shardd", "", f.ranges)
	if err != nil {
		return err
	}
	defer ours.close()
	var other system
	switch {
	case *otherBinary != "":
		other, err = startSharddSystem(ctx, "shardd ("+filepath.Base(*otherBinary)+")", *otherBinary, f.ranges)
	case *otherRef != "":
		var dir string
		if dir, err = os.MkdirTemp("", "shardd-ref-"); err != nil {
			return err
		}
		defer os.RemoveAll(dir)
		var bin string
		if bin, err = buildSharddRef(*otherRef, dir); err != nil {
			return err
		}
		other, err = startSharddSystem(ctx, "shardd@"+*otherRef, bin, f.ranges)
	default:
		other, err = startEtcdSystem(ctx, f.etcdBinary, f.etcdConns)
	}
	if err != nil {
		return err
	}
	defer other.close()
	systems := []system{ours, other}
	names := []string{ours.name(), other.name()}
	rep := &report{Command: "compare " + strings.Join(args, " "), Started: time.Now(), Machine: describeMachine(), Ranges: f.ranges}
	fmt.Printf("machine: %s\n", rep.Machine)
	if f.load {
		for _, s := range systems {
			fmt.Fprintf(os.Stderr, "%s: ", s.name())
			if err := load(ctx, s.store(), f.cfg, os.Stderr); err != nil {
				return fmt.Errorf("%s: %w", s.name(), err)
			}
		}
	}
	for _, w := range ws {
		var runs []*runResult
		for round := 1; round <= *rounds; round++ {
			for _, s := range systems {
				res, err := runOne(ctx, s, w, f.cfg, os.Stderr)
				if err != nil {
					return err
				}
				res.Round = round
				printResult(os.Stdout, res)
				runs = append(runs, res)
			}
		}
		c := compare(w.name, names[0], names[1], runs)
		fmt.Println()
		printComparison(os.Stdout, c)
		fmt.Println()
		rep.Runs = append(rep.Runs, runs...)
		rep.Compared = append(rep.Compared, c)
		if f.chartsDir != "" {
			if err := chartRuns(f.chartsDir, "compare-"+w.name, "workload "+w.name, runs, names); err != nil {
				return err
			}
		}
	}
	return finishReport(&f, rep)
}
