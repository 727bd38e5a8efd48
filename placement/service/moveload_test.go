package service

import (
	"bufio"
	"context"
	"flag"
	"fmt"
	"math/rand/v2"
	"os"
	"runtime"
	"runtime/metrics"
	"runtime/pprof"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/shardd/shardd/node"
	"github.com/shardd/shardd/placement"
	"github.com/shardd/shardd/placementpb"
	"github.com/shardd/shardd/router"
)

// The figures of a replica move under load: TestMoveUnderLoadThroughPlacement
// fills one range with -move.mib MiB and moves its leader's replica to a
// fourth node through the service while writers and readers keep at it.
// For the figures of a 100 MiB range:
//
//	go test ./placement/service -run TestMoveUnderLoadThroughPlacement -move.mib=100 -v -timeout 20m
var (
	moveMiB  = flag.Int("move.mib", 4, "TestMoveUnderLoadThroughPlacement: MiB of 1 KiB values in the range it moves")
	moveRate = flag.Int("move.rate", 0, "TestMoveUnderLoadThroughPlacement: the nodes' snapshot rate limit in MiB/s (0: the nodes' default; negative: none)")
	moveProf = flag.String("move.cpuprofile", "", "TestMoveUnderLoadThroughPlacement: write a CPU profile of the move (load and nodes) to this `file`")
)

// The load of TestMoveUnderLoadThroughPlacement: writers and readers
// through one router, each pausing moveLoadPause between operations, so
// that the load is steady and leaves the two cores room for the move.
const (
	moveLoadWriters = 8
	moveLoadReaders = 4
	moveLoadPause   = 2 * time.Millisecond
	moveValueBytes  = 1 << 10
)

// TestMoveUnderLoadThroughPlacement fills the one range of three nodes with
// -move.mib MiB of 1 KiB values, starts a steady write and read load on it
// through a router, and asks the service to move the leader's replica to a
// fourth node: a learner there receives the range in a snapshot, catches
// up and is promoted, the leadership moves to it, and the old leader's
// replica is removed. It logs the longest gap between successful writes
// during the move and before it (the target: no gap beyond one leader
// move, tens of milliseconds), the move's time and bytes per second, each
// step's time as the map recorded it, and how much the live Go heap and
// the process's resident memory grew while the move ran (the four nodes,
// the sender and the receiver of the snapshot among them, run in this
// process). It checks that no write failed and that every value reads back
// from the new replica set.
func TestMoveUnderLoadThroughPlacement(t *testing.T) {
	pc := startPlacement(t, 1, func(c *Config) {
		// One range, never split: the move is of all the data.
		c.InitialRanges, c.ExpectedNodes, c.SplitSize, c.SplitQPS, c.SettleTime = 1, 3, -1, -1, 200*time.Millisecond
	})
	dc := newDataCluster(t, 4, pc)
	steps := &moveSteps{}
	dc.tweak = func(cfg *node.Config) {
		if *moveRate != 0 {
			cfg.SnapshotBytesPerSecond = int64(*moveRate) << 20
		}
		if cfg.NodeID == 4 {
			cfg.Knobs.BeforeIngest = func(uint64) { steps.add("node 4: snapshot received, ingesting") }
			cfg.Knobs.AfterIngest = func(uint64) { steps.add("node 4: snapshot ingested") }
		}
	}
	for id := uint64(1); id <= 3; id++ {
		dc.start(id)
	}
	waitCreated(t, pc, dc, 1)
	c := pc.client()
	rc, err := router.New(tctx(t), router.Config{Source: RouterSource{Client: c}})
	if err != nil {
		t.Fatal(err)
	}
	defer rc.Close()

	loadStart := time.Now()
	mib := *moveMiB
	if testing.Short() && !flagPassed("move.mib") {
		mib = 1 // the race detector's run: the steps, not the figures
	}
	keys, dataBytes := fillOneRange(t, rc, mib<<20)
	t.Logf("filled the range with %d keys, %.1f MiB, in %v", keys, float64(dataBytes)/(1<<20), time.Since(loadStart).Round(time.Millisecond))
	dc.start(4)
	waitNode(t, c, 4, 10*time.Second, "live and settled", func(n *placementpb.NodeInfo) bool { return n.Live && !n.Settling })
	all, err := c.AllRanges(tctx(t), 0)
	if err != nil {
		t.Fatal(err)
	}
	d := all[0]
	from := dc.leaders(t)[d.RangeId]
	if from == 0 {
		t.Fatalf("range %d has no leader", d.RangeId)
	}

	watchSteps(t, c, d.RangeId, steps)
	pollLeaders(t, dc, d.RangeId, from, 4, steps)
	ld := startMoveLoad(rc, keys)
	defer ld.stop()
	time.Sleep(2 * time.Second) // the load before the move, to compare with
	mem := sampleMemory()
	if *moveProf != "" {
		f, err := os.Create(*moveProf)
		if err != nil {
			t.Fatal(err)
		}
		defer f.Close()
		if err := pprof.StartCPUProfile(f); err != nil {
			t.Fatal(err)
		}
		defer pprof.StopCPUProfile() // early, on a failure
	}
	start := time.Now()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	var resp *placementpb.MoveReplicaResponse
	for {
		// A move outlasts one call (moveDeadline): the call answers
		// Unavailable while it goes on, and the same call again waits.
		if resp, err = c.MoveReplica(ctx, d.RangeId, from, 4); err == nil || ctx.Err() != nil {
			break
		}
	}
	took := time.Since(start)
	pprof.StopCPUProfile()
	heapGrowth, rssGrowth := mem.stop()
	time.Sleep(time.Second) // the load after the move
	ld.stop()
	if err != nil {
		t.Fatalf("the move: %v", err)
	}
	if placement.Holds(resp.Descriptor_, from) || !placement.Holds(resp.Descriptor_, 4) || len(placement.VoterNodes(resp.Descriptor_)) != 3 {
		t.Fatalf("after the move: %v", resp.Descriptor_)
	}

	before := ld.longestGaps(loadStart, start, 1)
	during := ld.longestGaps(start, start.Add(took), 3)
	t.Logf("moved range %d (%.1f MiB) from node %d, its leader, to node 4 through placement in %v: %.1f MiB/s",
		d.RangeId, float64(dataBytes)/(1<<20), from, took.Round(time.Millisecond), float64(dataBytes)/(1<<20)/took.Seconds())
	list := steps.list()
	slices.SortFunc(list, func(a, b moveStep) int { return a.at.Compare(b.at) })
	for _, s := range list {
		t.Logf("  %8.3fs  %s", s.at.Sub(start).Seconds(), s.what)
	}
	t.Logf("load: %d writes (%.0f/s), %d reads, %d failed; the longest write took %v",
		ld.writes.Load(), float64(ld.writes.Load())/time.Since(ld.started).Seconds(), ld.reads.Load(), ld.failed.Load(), ld.slowest())
	var gaps []string
	for _, g := range during {
		gaps = append(gaps, fmt.Sprintf("%v from %.3fs", g.gap.Round(100*time.Microsecond), g.at.Sub(start).Seconds()))
	}
	t.Logf("longest gaps between successful writes during the move: %s; in the 2s before it: %v",
		strings.Join(gaps, ", "), before[0].gap.Round(100*time.Microsecond))
	steps.mu.Lock()
	handoff := steps.handoff
	steps.mu.Unlock()
	if !handoff[0].IsZero() && !handoff[1].IsZero() {
		g := ld.gapAround(handoff[0], handoff[1])
		t.Logf("the leader move took %v (%.3fs to %.3fs, polled every 2ms); the gap between successful writes around it: %v",
			handoff[1].Sub(handoff[0]).Round(100*time.Microsecond), handoff[0].Sub(start).Seconds(), handoff[1].Sub(start).Seconds(),
			g.Round(100*time.Microsecond))
	}
	t.Logf("while the move ran, the live Go heap grew by at most %.1f MiB and the resident memory by at most %.1f MiB (four nodes, the snapshot's sender and receiver among them, and the load, in one process)",
		float64(heapGrowth)/(1<<20), float64(rssGrowth)/(1<<20))
	if n := ld.failed.Load(); n > 0 {
		t.Errorf("%d operations failed during the move; the first: %v", n, ld.firstErr())
	}
	checkAllRead(t, rc, keys)
}

// flagPassed reports whether the flag name was set on the command line.
func flagPassed(name string) bool {
	passed := false
	flag.Visit(func(f *flag.Flag) { passed = passed || f.Name == name })
	return passed
}

// fillOneRange writes n bytes of 1 KiB values to keys "m%07d" through rc,
// in batches from a few goroutines, and returns the number of keys and the
// bytes of keys and values written.
func fillOneRange(t *testing.T, rc *router.Client, n int) (keys, bytes int) {
	t.Helper()
	const perBatch, loaders = 128, 4
	keys = max(1, n/moveValueBytes)
	var next atomic.Int64
	var wg sync.WaitGroup
	errs := make(chan error, loaders)
	for l := range loaders {
		wg.Go(func() {
			rng := rand.New(rand.NewPCG(uint64(l), 7))
			for {
				first := int(next.Add(perBatch)) - perBatch
				if first >= keys {
					return
				}
				var ops []router.Op
				for k := first; k < min(first+perBatch, keys); k++ {
					ops = append(ops, router.Op{Key: moveKey(k), Value: randomValue(rng)})
				}
				ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
				err := rc.Batch(ctx, ops)
				cancel()
				if err != nil {
					errs <- err
					return
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatalf("filling the range: %v", err)
	}
	return keys, keys * (len(moveKey(0)) + moveValueBytes)
}

func moveKey(k int) []byte { return []byte(fmt.Sprintf("m%07d", k)) }

// randomValue returns an incompressible value of moveValueBytes, so that
// the range's size on disk is what the test says.
func randomValue(rng *rand.Rand) []byte {
	v := make([]byte, moveValueBytes)
	for i := range v {
		v[i] = byte(rng.Uint32())
	}
	return v
}

// checkAllRead reads the keys back through rc, in pages.
func checkAllRead(t *testing.T, rc *router.Client, keys int) {
	t.Helper()
	var start []byte
	got := 0
	for {
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		kvs, resume, err := rc.Scan(ctx, start, []byte("n"), 4096)
		cancel()
		if err != nil {
			t.Fatalf("scanning after the move: %v", err)
		}
		for _, kv := range kvs {
			if len(kv.Value) != moveValueBytes {
				t.Fatalf("key %s holds %d bytes after the move, want %d", kv.Key, len(kv.Value), moveValueBytes)
			}
		}
		got += len(kvs)
		if resume == nil {
			break
		}
		start = resume
	}
	if got != keys {
		t.Fatalf("%d keys read back after the move, want %d", got, keys)
	}
}

// moveLoad is the writers and readers of TestMoveUnderLoadThroughPlacement:
// the writers overwrite random keys of the range with values of the same
// size, the readers read random keys.
type moveLoad struct {
	started               time.Time
	done                  chan struct{}
	wg                    sync.WaitGroup
	writes, reads, failed atomic.Int64

	mu      sync.Mutex
	acked   []time.Time // when each successful write returned
	longest time.Duration
	err     error
}

func startMoveLoad(rc *router.Client, keys int) *moveLoad {
	ld := &moveLoad{started: time.Now(), done: make(chan struct{})}
	for w := range moveLoadWriters + moveLoadReaders {
		ld.wg.Go(func() {
			rng := rand.New(rand.NewPCG(uint64(w), 11))
			for {
				select {
				case <-ld.done:
					return
				case <-time.After(moveLoadPause):
				}
				key := moveKey(rng.IntN(keys))
				ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
				began := time.Now()
				var err error
				if w < moveLoadWriters {
					err = rc.Put(ctx, key, randomValue(rng))
				} else {
					_, _, err = rc.Get(ctx, key)
				}
				cancel()
				ld.record(w < moveLoadWriters, began, err)
			}
		})
	}
	return ld
}

func (ld *moveLoad) record(write bool, began time.Time, err error) {
	now := time.Now()
	ld.mu.Lock()
	defer ld.mu.Unlock()
	switch {
	case err != nil:
		ld.failed.Add(1)
		if ld.err == nil {
			ld.err = err
		}
	case write:
		ld.writes.Add(1)
		ld.acked = append(ld.acked, now)
		ld.longest = max(ld.longest, now.Sub(began))
	default:
		ld.reads.Add(1)
	}
}

// stop stops the load and waits for it; it may be called again.
func (ld *moveLoad) stop() {
	select {
	case <-ld.done:
	default:
		close(ld.done)
	}
	ld.wg.Wait()
}

func (ld *moveLoad) firstErr() error {
	ld.mu.Lock()
	defer ld.mu.Unlock()
	return ld.err
}

func (ld *moveLoad) slowest() time.Duration {
	ld.mu.Lock()
	defer ld.mu.Unlock()
	return ld.longest
}

// writeGap is a time without a successful write, and when it began.
type writeGap struct {
	gap time.Duration
	at  time.Time
}

// longestGaps returns the n longest times between successive successful
// writes (or the window's ends) within [from, to], longest first.
func (ld *moveLoad) longestGaps(from, to time.Time, n int) []writeGap {
	ld.mu.Lock()
	acked := slices.Clone(ld.acked)
	ld.mu.Unlock()
	slices.SortFunc(acked, func(a, b time.Time) int { return a.Compare(b) })
	if from.Before(ld.started) {
		from = ld.started
	}
	var gaps []writeGap
	prev := from
	for _, at := range append(acked, to) {
		if at.Before(from) || at.After(to) {
			continue
		}
		gaps = append(gaps, writeGap{gap: at.Sub(prev), at: prev})
		prev = at
	}
	slices.SortFunc(gaps, func(a, b writeGap) int { return int(b.gap - a.gap) })
	return gaps[:min(n, len(gaps))]
}

// gapAround returns the time from the last successful write before from
// to the first one after to.
func (ld *moveLoad) gapAround(from, to time.Time) time.Duration {
	ld.mu.Lock()
	defer ld.mu.Unlock()
	var last, next time.Time
	for _, at := range ld.acked {
		if at.Before(from) && at.After(last) {
			last = at
		}
		if at.After(to) && (next.IsZero() || at.Before(next)) {
			next = at
		}
	}
	if last.IsZero() || next.IsZero() {
		return 0
	}
	return next.Sub(last)
}

// moveStep is a change to the range that the map recorded, and when the
// watch delivered it.
type moveStep struct {
	at   time.Time
	what string
}

type moveSteps struct {
	mu    sync.Mutex
	steps []moveStep
	// handoff is when the leader move began and ended; see pollLeaders.
	handoff [2]time.Time
}

func (s *moveSteps) add(what string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.steps = append(s.steps, moveStep{at: time.Now(), what: what})
}

func (s *moveSteps) list() []moveStep {
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.Clone(s.steps)
}

// watchSteps follows the map and notes in s every change to range id's
// replicas or leader until the test ends.
func watchSteps(t *testing.T, c *Client, id uint64, s *moveSteps) {
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	t.Cleanup(func() { cancel(); <-done })
	var last string
	go func() {
		defer close(done)
		_ = c.Watch(ctx, 0, func(ev *placementpb.WatchEvent) error {
			for _, d := range ev.Updated {
				if d.RangeId != id {
					continue
				}
				what := fmt.Sprintf("generation %d, %s, leader %d", d.Generation, replicaList(d), d.LeaderNodeId)
				if what != last {
					last = what
					s.add(what)
				}
			}
			return nil
		})
	}()
}

// pollLeaders notes, every few milliseconds until the test ends, each
// change in the leader that a node hosting range id knows of, and the
// leader move from node from to node to: from when from first names
// another leader to when to first names itself.
func pollLeaders(t *testing.T, dc *dataCluster, id, from, to uint64, s *moveSteps) {
	done, stopped := make(chan struct{}), make(chan struct{})
	t.Cleanup(func() { close(done); <-stopped })
	nodes := map[uint64]*node.Node{}
	for nid, nd := range dc.nodes {
		nodes[nid] = nd
	}
	go func() {
		defer close(stopped)
		seen := map[uint64]string{}
		for {
			select {
			case <-done:
				return
			case <-time.After(2 * time.Millisecond):
			}
			for nid, nd := range nodes {
				lead, ok := nd.RangeLeader(id)
				what := fmt.Sprintf("node %d: leader %d", nid, lead)
				if !ok {
					what = fmt.Sprintf("node %d: no replica", nid)
				}
				if seen[nid] != what {
					seen[nid] = what
					s.add(what)
					s.mu.Lock()
					switch {
					case nid == from && ok && lead != from && s.handoff[0].IsZero():
						s.handoff[0] = time.Now()
					case nid == to && lead == to && s.handoff[1].IsZero():
						s.handoff[1] = time.Now()
					}
					s.mu.Unlock()
				}
			}
		}
	}()
}

// memorySampler notes the peak of the live Go heap (as each GC found it;
// the sampler forces none, which would stall the load) and of the
// process's resident memory from when it starts.
type memorySampler struct {
	done, stopped     chan struct{}
	baseHeap, baseRSS uint64
	peakHeap, peakRSS uint64
}

func sampleMemory() *memorySampler {
	runtime.GC() // a baseline that holds no garbage
	m := &memorySampler{done: make(chan struct{}), stopped: make(chan struct{}), baseHeap: liveHeap(), baseRSS: residentBytes()}
	m.peakHeap, m.peakRSS = m.baseHeap, m.baseRSS
	go func() {
		defer close(m.stopped)
		for {
			select {
			case <-m.done:
				return
			case <-time.After(20 * time.Millisecond):
			}
			m.peakHeap, m.peakRSS = max(m.peakHeap, liveHeap()), max(m.peakRSS, residentBytes())
		}
	}()
	return m
}

// stop returns how much the live heap and the resident memory grew at
// most.
func (m *memorySampler) stop() (heap, rss int64) {
	close(m.done)
	<-m.stopped
	return int64(m.peakHeap) - int64(m.baseHeap), int64(m.peakRSS) - int64(m.baseRSS)
}

// liveHeap is the Go heap that the last GC found live.
func liveHeap() uint64 {
	s := []metrics.Sample{{Name: "/gc/heap/live:bytes"}}
	metrics.Read(s)
	return s[0].Value.Uint64()
}

// residentBytes is the process's resident memory (VmRSS), or 0 where
// /proc does not say.
func residentBytes() uint64 {
	f, err := os.Open("/proc/self/status")
	if err != nil {
		return 0
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if rest, ok := strings.CutPrefix(sc.Text(), "VmRSS:"); ok {
			kb, _ := strconv.ParseUint(strings.TrimSuffix(strings.TrimSpace(rest), " kB"), 10, 64)
			return kb << 10
		}
	}
	return 0
}
