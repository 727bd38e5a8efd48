package main

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	hdrhistogram "github.com/HdrHistogram/hdrhistogram-go"
)

// store is what a workload drives: a key-value store that answers
// linearizable reads, writes, short scans and compare-and-swaps. Every
// method may be called from many goroutines at once.
type store interface {
	Get(ctx context.Context, key []byte) (value []byte, found bool, err error)
	Put(ctx context.Context, key, value []byte) error
	// Scan reads up to limit keys from start on, in key order, and
	// returns how many it read.
	Scan(ctx context.Context, start []byte, limit int) (int, error)
	// CompareAndSwap writes value if key holds expected (or, with found
	// false, if key does not exist), and says whether it did.
	CompareAndSwap(ctx context.Context, key, expected []byte, found bool, value []byte) (bool, error)
}

// runConfig is one workload run's parameters, the same for every system
// it drives.
type runConfig struct {
	// keys is the number of records the load phase writes and the run
	// reads and updates.
	keys int
	// valueSize is the size of every value written, in bytes.
	valueSize int
	// clients is the number of goroutines issuing operations, each
	// waiting for its last operation to finish before the next.
	clients int
	// duration bounds the run's time, and ops its operations (0: no
	// bound); the run stops at the first bound reached.
	duration time.Duration
	ops      int64
	// distribution is how keys are chosen: uniform or zipfian.
	distribution string
	// scanLength bounds a scan's keys: each scan reads a number drawn
	// uniformly from 1..scanLength (YCSB's default is 100).
	scanLength int
	// sample is the window of the time series the charts draw, progress
	// how often a progress line is printed (0: never).
	sample, progress time.Duration
	// seed makes the operations of a run repeatable: client i draws from
	// a generator seeded with (seed, i).
	seed uint64
}

// runResult is a workload run: its table, time series and latency
// histograms.
type runResult struct {
	System    string    `json:"system"`
	Workload  string    `json:"workload"`
	Mix       string    `json:"mix"`
	Elapsed   float64   `json:"elapsed_s"`
	OpsPerSec float64   `json:"ops_per_sec"`
	Ops       []opStats `json:"ops"`
	All       opStats   `json:"all"`
	Conflicts int64     `json:"cas_conflicts,omitempty"`
	// FirstErrors is the first error of each kind of operation that had
	// one.
	FirstErrors map[string]string `json:"first_errors,omitempty"`
	CPU         *cpuPerOp         `json:"cpu,omitempty"`
	Samples     []sample          `json:"samples"`
	Round       int               `json:"round,omitempty"`
	Config      runConfigJSON     `json:"config"`
	// hist is every operation's latencies together, for the
	// distribution chart.
	hist *hdrhistogram.Histogram
}

// runConfigJSON is runConfig as the JSON record shows it.
type runConfigJSON struct {
	Keys         int     `json:"keys"`
	ValueSize    int     `json:"value_size"`
	Clients      int     `json:"clients"`
	Duration     float64 `json:"duration_s"`
	Ops          int64   `json:"ops,omitempty"`
	Distribution string  `json:"distribution"`
	ScanLength   int     `json:"scan_length"`
}

func (c runConfig) json() runConfigJSON {
	return runConfigJSON{Keys: c.keys, ValueSize: c.valueSize, Clients: c.clients, Duration: c.duration.Seconds(),
		Ops: c.ops, Distribution: c.distribution, ScanLength: c.scanLength}
}

// cpuPerOp is the CPU the store's processes and this load generator spent
// during a run, per operation and in cores.
type cpuPerOp struct {
	// StoreMicros and LoadMicros are CPU microseconds per operation.
	StoreMicros float64 `json:"store_us_per_op"`
	LoadMicros  float64 `json:"load_generator_us_per_op"`
	// StoreCores and LoadCores are the cores busy on average.
	StoreCores float64 `json:"store_cores"`
	LoadCores  float64 `json:"load_generator_cores"`
	// Bound is the throughput these costs allow on this machine's CPUs:
	// with every core busy at this cost per operation, no schedule does
	// better.
	Bound float64 `json:"ops_per_sec_bound"`
}

// cpuMeter measures the CPU of a set of processes across a run.
type cpuMeter struct {
	pids     []int
	store0   time.Duration
	self0    time.Duration
	numCPU   int
	disabled bool
}

func startCPUMeter(pids []int, numCPU int) *cpuMeter {
	m := &cpuMeter{pids: pids, numCPU: numCPU, disabled: len(pids) == 0}
	m.store0, m.self0 = m.read()
	return m
}

func (m *cpuMeter) read() (store, self time.Duration) {
	for _, pid := range m.pids {
		t, _ := cpuTime(pid)
		store += t
	}
	self, _ = cpuTime(os.Getpid())
	return store, self
}

// stop returns the CPU per operation of ops operations over elapsed, or
// nil when the store's processes are not ours to measure.
func (m *cpuMeter) stop(ops int64, elapsed time.Duration) *cpuPerOp {
	if m.disabled || ops == 0 {
		return nil
	}
	store1, self1 := m.read()
	s, l := store1-m.store0, self1-m.self0
	perOp := func(d time.Duration) float64 { return float64(d.Microseconds()) / float64(ops) }
	c := &cpuPerOp{StoreMicros: perOp(s), LoadMicros: perOp(l),
		StoreCores: float64(s) / float64(elapsed), LoadCores: float64(l) / float64(elapsed)}
	if total := c.StoreMicros + c.LoadMicros; total > 0 {
		c.Bound = float64(m.numCPU) * 1e6 / total
	}
	return c
}

// load writes records 0..keys-1 with clients goroutines, showing a
// progress bar on progress.
func load(ctx context.Context, st store, cfg runConfig, progress io.Writer) error {
	var next, done, failed atomic.Int64
	value := make([]byte, cfg.valueSize)
	start := time.Now()
	stop := make(chan struct{})
	var bar sync.WaitGroup
	bar.Add(1)
	go func() {
		defer bar.Done()
		t := time.NewTicker(time.Second)
		defer t.Stop()
		for {
			select {
			case <-stop:
				drawBar(progress, "load", done.Load(), int64(cfg.keys), time.Since(start), true)
				return
			case <-t.C:
				drawBar(progress, "load", done.Load(), int64(cfg.keys), time.Since(start), false)
			}
		}
	}()
	var wg sync.WaitGroup
	var errMu sync.Mutex
	var firstErr error
	for range cfg.clients {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				i := next.Add(1) - 1
				if i >= int64(cfg.keys) || ctx.Err() != nil {
					return
				}
				// A load that fails leaves a hole the run would read
				// as a miss; try again a few times before giving up.
				var err error
				for range 5 {
					if err = st.Put(ctx, keyName(uint64(i)), value); err == nil {
						break
					}
				}
				if err != nil {
					failed.Add(1)
					errMu.Lock()
					if firstErr == nil {
						firstErr = err
					}
					errMu.Unlock()
					continue
				}
				done.Add(1)
			}
		}()
	}
	wg.Wait()
	close(stop)
	bar.Wait()
	if n := failed.Load(); n > 0 {
		return fmt.Errorf("load: %d of %d records failed, the first with: %v", n, cfg.keys, firstErr)
	}
	return ctx.Err()
}

// drawBar draws a progress bar: redrawn in place on a terminal, a line
// every ten seconds (and the last) elsewhere.
func drawBar(w io.Writer, what string, done, total int64, elapsed time.Duration, last bool) {
	const width = 30
	frac := float64(done) / float64(max(total, 1))
	filled := int(frac * width)
	rate := float64(done) / max(elapsed.Seconds(), 1e-9)
	line := fmt.Sprintf("%s [%s%s] %3.0f%% %d/%d, %.0f/s, %v", what, strings.Repeat("#", filled),
		strings.Repeat(".", width-filled), 100*frac, done, total, rate, elapsed.Round(time.Second))
	switch {
	case isTerminal(w):
		fmt.Fprintf(w, "\r%s", line)
		if last {
			fmt.Fprintln(w)
		}
	case last || int(elapsed.Seconds())%10 == 0:
		fmt.Fprintln(w, line)
	}
}

func isTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	if !ok {
		return false
	}
	fi, err := f.Stat()
	return err == nil && fi.Mode()&os.ModeCharDevice != 0
}

// run drives st with w's mix for cfg's duration or operations, printing
// a progress line every cfg.progress to progress. pids are the store's
// processes, whose CPU it measures (none: not measured).
func run(ctx context.Context, st store, w workload, cfg runConfig, pids []int, progress io.Writer) (*runResult, error) {
	chooser, err := newKeyChooser(cfg.distribution, uint64(cfg.keys))
	if err != nil {
		return nil, err
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	if cfg.duration > 0 {
		ctx, cancel = context.WithTimeout(ctx, cfg.duration)
		defer cancel()
	}
	meter := startCPUMeter(pids, numCPU())
	start := time.Now()
	rec := newRecorder(start)
	var samples []sample
	var sampling sync.WaitGroup
	sampling.Add(1)
	go func() {
		defer sampling.Done()
		tick := time.NewTicker(cfg.sample)
		defer tick.Stop()
		lastPrint, lastOps := start, int64(0)
		for {
			select {
			case <-ctx.Done():
				return
			case now := <-tick.C:
				samples = append(samples, rec.sample(now))
				if cfg.progress > 0 && now.Sub(lastPrint) >= cfg.progress {
					n, p50, p99, errs := rec.soFar()
					fmt.Fprintf(progress, "  [%4.0fs] %s: %.0f ops/s, p50 %v, p99 %v so far, %d errors\n", now.Sub(start).Seconds(),
						w.name, float64(n-lastOps)/now.Sub(lastPrint).Seconds(), p50.Round(10*time.Microsecond), p99.Round(10*time.Microsecond), errs)
					lastPrint, lastOps = now, n
				}
			}
		}
	}()
	var budget atomic.Int64
	budget.Store(cfg.ops)
	var inserted atomic.Uint64
	var wg sync.WaitGroup
	for c := range cfg.clients {
		wg.Add(1)
		go func() {
			defer wg.Done()
			r := rand.New(rand.NewPCG(cfg.seed, uint64(c)))
			value := make([]byte, cfg.valueSize)
			for ctx.Err() == nil {
				if cfg.ops > 0 && budget.Add(-1) < 0 {
					return
				}
				op := w.pick(r.Float64())
				// Each write carries new bytes, so no store can
				// skip it as unchanged.
				var stamp [8]byte
				binary.LittleEndian.PutUint64(stamp[:], r.Uint64())
				copy(value, stamp[:])
				t0 := time.Now()
				err := doOp(ctx, st, op, r, chooser, cfg, value, &inserted, rec)
				if ctx.Err() != nil && err != nil {
					// Cut short by the end of the run: neither a
					// latency nor an error of the store.
					return
				}
				rec.record(op, time.Since(t0), err)
			}
		}()
	}
	wg.Wait()
	end := time.Now()
	elapsed := end.Sub(start)
	cancel()
	sampling.Wait()
	// The last window, cut short by the end of the run, counts if it is
	// long enough to tell a rate.
	if last := start.Add(time.Duration(len(samples)) * cfg.sample); end.Sub(last) >= cfg.sample/2 {
		samples = append(samples, rec.sample(end))
	}
	hists, errs, conflicts := rec.totals()
	res := &runResult{Workload: w.name, Mix: w.what, Elapsed: elapsed.Seconds(), Conflicts: conflicts,
		Samples: samples, Config: cfg.json(), hist: newHist(), FirstErrors: rec.firstErrors()}
	var totalErrs int64
	for op := range numOps {
		if w.mix[op] == 0 {
			continue
		}
		res.Ops = append(res.Ops, statsOf(op.String(), hists[op], errs[op], elapsed))
		res.hist.Merge(hists[op])
		totalErrs += errs[op]
	}
	res.All = statsOf("all", res.hist, totalErrs, elapsed)
	res.OpsPerSec = res.All.OpsPerSec
	res.CPU = meter.stop(res.All.Count, elapsed)
	return res, nil
}

// doOp issues one operation of kind op.
func doOp(ctx context.Context, st store, op opKind, r *rand.Rand, keys keyChooser, cfg runConfig,
	value []byte, inserted *atomic.Uint64, rec *recorder) error {
	switch op {
	case opRead:
		_, _, err := st.Get(ctx, keyName(keys.next(r)))
		return err
	case opUpdate:
		return st.Put(ctx, keyName(keys.next(r)), value)
	case opInsert:
		// New records are numbered after the loaded ones; the
		// chooser keeps drawing from the loaded ones.
		return st.Put(ctx, keyName(uint64(cfg.keys)+inserted.Add(1)-1), value)
	case opScan:
		_, err := st.Scan(ctx, keyName(keys.next(r)), 1+r.IntN(cfg.scanLength))
		return err
	case opRMW:
		return readModifyWrite(ctx, st, keyName(keys.next(r)), value, rec)
	}
	return fmt.Errorf("unknown operation %d", op)
}

// maxRMWAttempts bounds the compare-and-swaps of one read-modify-write
// that keep losing to other writers of its key.
const maxRMWAttempts = 20

// errRMWContended is a read-modify-write that lost every attempt.
var errRMWContended = errors.New("read-modify-write: every compare-and-swap lost to another write")

// readModifyWrite reads key and swaps in a new value if no other write
// came between, reading again and retrying when one did: YCSB's
// read-modify-write, made atomic with compare-and-swap as an application
// would.
func readModifyWrite(ctx context.Context, st store, key, value []byte, rec *recorder) error {
	for range maxRMWAttempts {
		old, found, err := st.Get(ctx, key)
		if err != nil {
			return err
		}
		ok, err := st.CompareAndSwap(ctx, key, old, found, value)
		if err != nil || ok {
			return err
		}
		rec.conflict()
	}
	return errRMWContended
}

// printResult prints a run's table and CPU per operation.
func printResult(w io.Writer, res *runResult) {
	fmt.Fprintf(w, "%s, workload %s (%s), %d clients, %d keys (%s), %d-byte values, %.1fs:\n", res.System, res.Workload,
		res.Mix, res.Config.Clients, res.Config.Keys, res.Config.Distribution, res.Config.ValueSize, res.Elapsed)
	rows := res.Ops
	if len(rows) > 1 {
		rows = append(rows[:len(rows):len(rows)], res.All)
	}
	writeTable(w, rows)
	for _, op := range res.Ops {
		if e, ok := res.FirstErrors[op.Op]; ok {
			fmt.Fprintf(w, "  first %s error: %s\n", op.Op, e)
		}
	}
	if res.Conflicts > 0 {
		fmt.Fprintf(w, "  %d compare-and-swaps lost to another write and were retried\n", res.Conflicts)
	}
	if c := res.CPU; c != nil {
		fmt.Fprintf(w, "  CPU per operation: %.0f µs (store %.0f, load generator %.0f); busy cores: store %.2f, load generator %.2f; at that cost %d CPUs allow at most %.0f ops/s\n",
			c.StoreMicros+c.LoadMicros, c.StoreMicros, c.LoadMicros, c.StoreCores, c.LoadCores, numCPU(), c.Bound)
	}
}
