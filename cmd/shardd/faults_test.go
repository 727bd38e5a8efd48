package main

import (
	"encoding/json"
	"flag"
	"fmt"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/anishathalye/porcupine"

	"github.com/shardd/shardd/internal/linz"
	"github.com/shardd/shardd/placement/client"
	"github.com/shardd/shardd/router"
)

// The fault suite's knobs. CI runs TestFaultSuite once with the defaults;
// longer runs, several of them, with their reports kept:
//
//	go test ./cmd/shardd -run 'TestFaultSuite$' -v -timeout 0 -faults.duration=2m -faults.runs=15 -faults.dir=DIR -faults.json=DIR/report.json
//	go test ./cmd/shardd -run 'TestFaultSuite$' -v -faults.seed=N
//
// (scripts/faults runs the first). -faults.seed replays a run's choices of
// operations and faults, as far as the processes' timing (and so the
// leaders the nemesis targets) repeats.
var (
	faultsDuration = flag.Duration("faults.duration", 75*time.Second, "how long each run of TestFaultSuite injects faults")
	faultsRuns     = flag.Int("faults.runs", 1, "how many runs TestFaultSuite makes, each on a new cluster, the seed one more each time")
	faultsSeed     = flag.Uint64("faults.seed", 0, "the seed of TestFaultSuite's first run; 0 takes one from the clock")
	faultsJSON     = flag.String("faults.json", "", "write TestFaultSuite's report (the totals and every run) to this JSON `file`")
	faultsDir      = flag.String("faults.dir", "", "keep every run's report and fault log in a directory of its own under this `directory` (a violation's history, visualization and the processes' logs too); by default only a violation's are kept, under $TMPDIR")
)

// The workload: faultWorkers goroutines over faultRouters router Clients,
// each operation bounded by faultOpTimeout; a tenth of the operations
// put write-once keys, read back at the end.
const (
	faultWorkers        = 12
	faultRouters        = 2
	faultOpTimeout      = 2 * time.Second
	faultWriteOnce      = 10
	faultCheckTimeout   = time.Minute
	faultBrokenDuration = 5 * time.Second
	// faultMaxRun bounds a run's faults. Porcupine caches, for every
	// prefix of a key's linearization, a bitset of that key's operations:
	// memory grows with the square of their number, and the keys are
	// checked in parallel. A run of 2 minutes (170,000 operations, 34,000
	// a key) peaked at 770 MB resident; one of 10 minutes was killed, out
	// of memory, while it was being checked.
	faultMaxRun = 3 * time.Minute
)

// TestFaultSuite is the fault suite, in the spirit of Jepsen. It starts
// three placement processes and four shardd processes on loopback, drives
// concurrent gets, puts and compare-and-swaps on five keys through the
// router while a nemesis injects faults at random, one at a time, and
// checks the history for linearizability with porcupine, one register
// per key. The faults (allFaults): kill -9 and restart of a node, or of a
// placement process (the leader three times in four); SIGSTOP and, after
// longer than a lease, SIGCONT of a node (a range's leader three times in
// four) or of a placement process; a node's clock jumping forward within
// the drift bound its leases allow for; a node cut off from its peers
// both ways, with or without its clients; a one-way link between two
// nodes; a node's KV service cut off from its clients. The links and the
// clocks move through the Fault service of nodes started with
// --enable-fault-injection. Operations run among them, through the
// placement service: a split of the range holding a random key; a node
// drained and restarted (SIGTERM); a leader moved to another voter
// (`shardd transfer`); and a replica moved to the node that lacks the
// range (`shardd move`), the leader's half the time, so that the move
// includes a leader move. A move runs in the background while the next
// faults strike, so that kills, pauses and partitions hit it at any step;
// the placement balancer moves replicas and leaders too.
//
// Every operation is recorded (linz.History): one whose outcome is
// unknown (a timeout, a lost connection, router.ErrAmbiguous) is
// indeterminate, checked as possibly applied, never dropped nor counted
// as failed. At the end, once the nemesis healed everything and the
// placement service finished its operations, the test checks that the map
// tiles the key space with three voters per range on live nodes that host
// it, that every acknowledged write-once key reads back, and that every
// register reads its last acknowledged write or a later one. It logs the
// report: operations checked, indeterminate and failed, faults injected
// by kind, the verdict. On a violation it prints the seed and a directory
// holding the whole history, the illegal keys' operations, porcupine's
// HTML visualization with the faults on its time axis, the fault log and
// the processes' logs.
func TestFaultSuite(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the binaries and runs seven processes under faults for a minute and a quarter")
	}
	switch {
	case *faultsDuration <= 0 || *faultsRuns <= 0:
		t.Fatalf("-faults.duration=%v -faults.runs=%d: want both positive", *faultsDuration, *faultsRuns)
	case *faultsDuration > faultMaxRun:
		t.Fatalf("-faults.duration=%v: at most %v a run (porcupine's memory grows with the square of a key's operations); make more runs with -faults.runs", *faultsDuration, faultMaxRun)
	}
	seed := *faultsSeed
	if seed == 0 {
		seed = uint64(time.Now().UnixNano())
	}
	var totals faultReport
	var runs []faultReport
	for i := range *faultsRuns {
		cfg := suiteConfig{seed: seed + uint64(i), duration: *faultsDuration, kinds: allFaults}
		if *faultsDir != "" {
			cfg.dir = filepath.Join(*faultsDir, fmt.Sprintf("run%d-seed%d", i+1, cfg.seed))
		}
		t.Run(fmt.Sprintf("run%d", i+1), func(t *testing.T) {
			rep := runFaultSuite(t, cfg)
			runs = append(runs, rep)
			totals.add(rep)
			switch {
			case rep.Verdicts[verdictIllegal] > 0:
				t.Errorf("NOT LINEARIZABLE on keys %v (seed %d; -faults.seed=%d replays the choices); the history, its visualization, the fault log and the processes' logs: %s",
					rep.IllegalKeys, cfg.seed, cfg.seed, strings.Join(rep.Dirs, " "))
			case rep.Verdicts[verdictUnknown] > 0 && len(rep.TimedOutKeys) >= len(faultKeys):
				// Nothing was checked: that is no pass.
				t.Errorf("the check ran out of time on every key %v; shorten -faults.duration", rep.TimedOutKeys)
			}
			for _, p := range rep.Problems {
				t.Errorf("%s (seed %d)", p, cfg.seed)
			}
			injected := 0
			for _, n := range rep.Faults {
				injected += n
			}
			if injected == 0 {
				// A run without faults checks nothing the suite is for.
				t.Errorf("the nemesis injected no fault in %v (seed %d)", cfg.duration, cfg.seed)
			}
		})
	}
	t.Logf("%s", totals.format("fault suite totals"))
	if *faultsDir != "" {
		if err := os.WriteFile(filepath.Join(*faultsDir, "summary.txt"), []byte(totals.format("fault suite totals")+"\n"), 0o644); err != nil {
			t.Error(err)
		}
	}
	if *faultsJSON != "" {
		b, err := json.MarshalIndent(struct {
			Totals faultReport   `json:"totals"`
			Runs   []faultReport `json:"runs"`
		}{totals, runs}, "", "  ")
		if err == nil {
			err = os.WriteFile(*faultsJSON, append(b, '\n'), 0o644)
		}
		if err != nil {
			t.Error(err)
		}
	}
}

// TestFaultSuiteCanFail shows that the fault suite finds what a broken
// client lets through: the same suite, whose workers read with stale
// reads (no lease check) from whichever node answers (faultCluster.
// staleRead), while the nemesis cuts nodes off from their peers, must
// find a violation, and keep the history, the visualization and the fault
// log. A follower applies a write after the leader acknowledged it, and
// an isolated one not at all, so such reads return overwritten values
// within seconds.
func TestFaultSuiteCanFail(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the binaries and runs seven processes under faults")
	}
	seed := uint64(time.Now().UnixNano())
	dir := t.TempDir()
	rep := runFaultSuite(t, suiteConfig{seed: seed, duration: faultBrokenDuration, kinds: []faultKind{faultIsolate}, brokenReads: true, dir: dir})
	if rep.Verdicts[verdictIllegal] != 1 {
		t.Fatalf("the check found no violation in %d operations of a client that reads stale values (seed %d): verdicts %v", rep.Checked, seed, rep.Verdicts)
	}
	for _, name := range []string{"linearizability.html", "history.txt", "history-full.txt", "faults.txt", "report.json"} {
		if fi, err := os.Stat(filepath.Join(dir, name)); err != nil || fi.Size() == 0 {
			t.Errorf("the violation's %s was not kept: %v", name, err)
		}
	}
}

// suiteConfig configures one run of the fault suite.
type suiteConfig struct {
	seed     uint64
	duration time.Duration
	// kinds are the faults the nemesis draws from.
	kinds []faultKind
	// brokenReads makes the workers' gets stale reads from any node
	// (faultCluster.staleRead): the broken client. The end-of-run checks
	// of the cluster and of the reads are then skipped.
	brokenReads bool
	// dir, if set, is where the run keeps its report and fault log, and a
	// violation's history, visualization and the processes' logs; without
	// it, a violation's go to a new directory under $TMPDIR.
	dir string
}

// Verdicts, as the reports count them.
const (
	verdictOK      = "linearizable"
	verdictIllegal = "not linearizable"
	verdictUnknown = "unknown (the check ran out of time)"
)

// faultReport is what runs of the fault suite did: one run's, or the sum
// of several (add).
type faultReport struct {
	Runs         int      `json:"runs"`
	Seeds        []uint64 `json:"seeds"`
	FaultSeconds float64  `json:"fault_seconds"`
	// Checked counts the operations the checker was given: those that
	// returned, and the writes whose outcome is unknown.
	Checked int `json:"operations_checked"`
	// By kind of operation (get, put, cas): those that returned, those
	// whose outcome is unknown (indeterminate) and those that failed for
	// certain.
	Returned      map[string]int `json:"returned"`
	Indeterminate map[string]int `json:"indeterminate"`
	Failed        map[string]int `json:"failed"`
	// WriteOnce counts the acknowledged write-once keys read back.
	WriteOnce int `json:"write_once_keys_read_back"`
	// Faults counts the faults injected, by kind.
	Faults map[string]int `json:"faults"`
	// Verdicts counts the runs by verdict.
	Verdicts     map[string]int `json:"verdicts"`
	IllegalKeys  []string       `json:"illegal_keys,omitempty"`
	TimedOutKeys []string       `json:"timed_out_keys,omitempty"`
	// Problems are the end-of-run checks that failed: lost writes, a
	// final read that failed.
	Problems []string `json:"problems,omitempty"`
	// Dirs are where the histories of runs that did not pass were kept.
	Dirs []string `json:"dirs,omitempty"`
}

func byKind(counts [3]int) map[string]int {
	return map[string]int{linz.Get.String(): counts[linz.Get], linz.Put.String(): counts[linz.Put], linz.CAS.String(): counts[linz.CAS]}
}

func addCounts(into *map[string]int, from map[string]int) {
	if *into == nil {
		*into = map[string]int{}
	}
	for k, v := range from {
		(*into)[k] += v
	}
}

// add adds o's counts to r's.
func (r *faultReport) add(o faultReport) {
	r.Runs += o.Runs
	r.Seeds = append(r.Seeds, o.Seeds...)
	r.FaultSeconds += o.FaultSeconds
	r.Checked += o.Checked
	addCounts(&r.Returned, o.Returned)
	addCounts(&r.Indeterminate, o.Indeterminate)
	addCounts(&r.Failed, o.Failed)
	r.WriteOnce += o.WriteOnce
	addCounts(&r.Faults, o.Faults)
	addCounts(&r.Verdicts, o.Verdicts)
	r.IllegalKeys = append(r.IllegalKeys, o.IllegalKeys...)
	r.TimedOutKeys = append(r.TimedOutKeys, o.TimedOutKeys...)
	r.Problems = append(r.Problems, o.Problems...)
	r.Dirs = append(r.Dirs, o.Dirs...)
}

// format is the report as a block of lines for the test's log.
func (r faultReport) format(title string) string {
	sum := func(m map[string]int) int { return m["get"] + m["put"] + m["cas"] }
	kinds := func(m map[string]int) string {
		return fmt.Sprintf("get %d, put %d, cas %d", m["get"], m["put"], m["cas"])
	}
	counted := func(m map[string]int) string {
		var parts []string
		for _, k := range slices.Sorted(maps.Keys(m)) {
			parts = append(parts, fmt.Sprintf("%s %d", k, m[k]))
		}
		return strings.Join(parts, ", ")
	}
	nFaults := 0
	for _, n := range r.Faults {
		nFaults += n
	}
	var b strings.Builder
	fmt.Fprintf(&b, "%s: %d run(s), %.0fs of faults, seeds %v\n", title, r.Runs, r.FaultSeconds, r.Seeds)
	fmt.Fprintf(&b, "  operations checked         %d\n", r.Checked)
	fmt.Fprintf(&b, "  returned                   %d (%s)\n", sum(r.Returned), kinds(r.Returned))
	fmt.Fprintf(&b, "  indeterminate              %d (%s): writes checked as possibly applied, reads constrain nothing\n", sum(r.Indeterminate), kinds(r.Indeterminate))
	fmt.Fprintf(&b, "  failed for certain         %d (%s)\n", sum(r.Failed), kinds(r.Failed))
	fmt.Fprintf(&b, "  write-once keys read back  %d\n", r.WriteOnce)
	fmt.Fprintf(&b, "  faults injected            %d (%s)\n", nFaults, counted(r.Faults))
	fmt.Fprintf(&b, "  verdicts                   %s", counted(r.Verdicts))
	if len(r.IllegalKeys) > 0 {
		fmt.Fprintf(&b, "; illegal keys %v", r.IllegalKeys)
	}
	if len(r.TimedOutKeys) > 0 {
		fmt.Fprintf(&b, "; the check ran out of time on keys %v", r.TimedOutKeys)
	}
	if len(r.Dirs) > 0 {
		fmt.Fprintf(&b, "; histories kept in %v", r.Dirs)
	}
	if len(r.Problems) > 0 {
		fmt.Fprintf(&b, "\n  problems                   %d: %s", len(r.Problems), strings.Join(r.Problems, "; "))
	}
	return b.String()
}

// runFaultSuite runs the fault suite once on a new cluster and returns
// its report; it fails t only if the cluster could not run. The caller
// judges the verdict.
func runFaultSuite(t *testing.T, cfg suiteConfig) faultReport {
	t.Logf("seed %d (-faults.seed=%d replays the choices), %v of faults: %d kinds", cfg.seed, cfg.seed, cfg.duration, len(cfg.kinds))
	c := startFaultCluster(t)
	routers := make([]*router.Client, faultRouters)
	for i := range routers {
		var err error
		if routers[i], err = router.New(t.Context(), router.Config{Source: client.RouterSource{Client: c.placementClient(t)}}); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { routers[i].Close() })
	}
	c.waitServing(t, routers[0])

	h := linz.NewHistory()
	t.Logf("the history's clock starts at %s", time.Now().Format(time.RFC3339Nano))
	w := &linz.Workload{History: h, Routers: routers, Keys: faultKeys, OpTimeout: faultOpTimeout, WriteOncePercent: faultWriteOnce}
	if cfg.brokenReads {
		w.Read = c.staleRead
	}
	w.Start(faultWorkers, cfg.seed)
	t.Cleanup(w.Stop) // if the test fails before the end
	nem := newNemesis(c, c.placementClient(t), h, cfg.kinds, cfg.seed)
	nem.run(t, cfg.duration)
	// Let the cluster settle, healed, under load, so that the history
	// ends with operations that see the writes of the faulty period.
	time.Sleep(2 * time.Second)
	w.Stop()

	rep := faultReport{Runs: 1, Seeds: []uint64{cfg.seed}, FaultSeconds: cfg.duration.Seconds(), Faults: nem.counts()}
	if !cfg.brokenReads {
		descs := c.waitConverged(t, nem.pc)
		t.Logf("the map: %d ranges, each with three voters on live nodes that host it", len(descs))
		lost := w.CheckWritten(30 * time.Second)
		rep.Problems = append(rep.Problems, lost...)
		rep.WriteOnce = len(w.Written()) - len(lost)
		final, err := w.ReadAll()
		if err != nil {
			rep.Problems = append(rep.Problems, fmt.Sprintf("with every process up and healed: %v", err))
		}
		rep.Problems = append(rep.Problems, linz.LostWrites(h.Operations(), final)...)
	}
	ops := h.Operations()
	tally := h.Tally()
	rep.Checked = tally.Checked
	rep.Returned, rep.Indeterminate, rep.Failed = byKind(tally.Returned), byKind(tally.Indeterminate), byKind(tally.Failed)
	if !cfg.brokenReads && (tally.Returned[linz.Put]+tally.Returned[linz.CAS] < 50 || tally.Returned[linz.Get] < 50) {
		t.Errorf("too few operations returned to say anything: %v", tally.Returned)
	}

	dir := cfg.dir
	if dir == "" {
		var err error
		if dir, err = os.MkdirTemp("", "shardd-faults-"); err != nil {
			t.Fatal(err)
		}
	}
	checkStart := time.Now()
	// A longer run's keys take longer to check.
	res, err := linz.CheckAnnotated(ops, max(faultCheckTimeout, cfg.duration), dir, nem.annotations())
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("porcupine checked %d operations in %v", len(ops), time.Since(checkStart).Round(time.Millisecond))
	switch res.Verdict {
	case porcupine.Ok:
		rep.Verdicts = map[string]int{verdictOK: 1}
	case porcupine.Unknown:
		rep.Verdicts = map[string]int{verdictUnknown: 1}
		t.Logf("the check ran out of time on keys %v without finding a violation on the others", res.TimedOut)
	default:
		rep.Verdicts = map[string]int{verdictIllegal: 1}
		t.Logf("NOT LINEARIZABLE on keys %v (seed %d)\n%s", res.Illegal, cfg.seed, res.Explanation)
	}
	rep.IllegalKeys, rep.TimedOutKeys = res.Illegal, res.TimedOut
	// A violation, a failed check or a check that ran out of time keeps
	// everything; a run with a dir of its own keeps its report and fault
	// log.
	failed := res.Verdict != porcupine.Ok || len(rep.Problems) > 0
	if failed {
		rep.Dirs = []string{dir}
	}
	switch {
	case failed:
		keepRun(t, h, nem, rep, dir)
		c.keepLogs(t, dir)
		t.Logf("seed %d: the whole history (history-full.txt), the illegal keys' operations (history.txt) and porcupine's visualization with the faults (linearizability.html), the fault log (faults.txt), the report and the processes' logs: %s", cfg.seed, dir)
	case cfg.dir != "":
		keepRun(t, nil, nem, rep, dir)
	default:
		os.RemoveAll(dir)
	}
	t.Logf("%s", rep.format("fault suite"))
	return rep
}

// keepRun writes a run's fault log and report into dir, and its whole
// history if h is not nil.
func keepRun(t *testing.T, h *linz.History, nem *nemesis, rep faultReport, dir string) {
	t.Helper()
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	b, err := json.MarshalIndent(rep, "", "  ")
	if err != nil {
		t.Fatal(err)
	}
	for name, content := range map[string][]byte{"faults.txt": []byte(nem.describe()), "report.json": append(b, '\n')} {
		if err := os.WriteFile(filepath.Join(dir, name), content, 0o644); err != nil {
			t.Error(err)
		}
	}
	if h != nil {
		if err := linz.WriteRecords(filepath.Join(dir, "history-full.txt"), h.Records()); err != nil {
			t.Error(err)
		}
	}
}
