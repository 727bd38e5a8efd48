package node

import (
	"cmp"
	"context"
	"flag"
	"fmt"
	"maps"
	"math/rand/v2"
	"runtime"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/cockroachdb/pebble/v2/vfs"
	"github.com/shardd/shardd/engine"
	"github.com/shardd/shardd/group"
	"github.com/shardd/shardd/kvpb"
	"github.com/shardd/shardd/kvsm"
	pb "github.com/shardd/shardd/paxospb"
	"github.com/shardd/shardd/router"
	"google.golang.org/grpc"
	"google.golang.org/grpc/backoff"
	"google.golang.org/grpc/credentials/insecure"
)

// The crash tests run three nodes in this process, each on its own
// crash-clone filesystem (Pebble's vfs.NewCrashableMem), with clients
// writing through the router. At a seeded point of a seeded node's cycle a
// knob takes the crash clone of that node's filesystem (what a power cut
// at that instant would leave, with a seeded share of the unsynced
// writes) and ends the node's worker there; the node is stopped and
// started again on the clone: the real recovery path (the engine's
// Open, loadGroups, a truncation point at the applied point, membership
// from the stored range metadata, snapshots from peers), not the
// simulator's model of it. The client history must then show no
// acknowledged write lost and no result handed to another caller, and
// every range's replicas must hold the same data and session records.
//
// A failure prints its seed and the command that runs it again. The seed
// fixes the crash plan and the clients' choices; the network's timing is
// not replayed, so a failure may need a few runs (-count) to recur.
//
//	go test ./node -run 'TestCrash' -crash.seeds=50 -v      # a longer run
//	go test ./node -run 'TestCrashRestart$' -crash.seed=7 -v # one seed
var (
	crashSeed  = flag.Uint64("crash.seed", 0, "run the crash tests with this seed only")
	crashSeeds = flag.Int("crash.seeds", 0, "run the crash tests with seeds 1..N instead of the CI ones")
)

// crashTestSeeds returns the seeds a crash test runs: those the flags
// name, else ci of them (short under -short).
func crashTestSeeds(ci, short int) []uint64 {
	if *crashSeed != 0 {
		return []uint64{*crashSeed}
	}
	n := ci
	switch {
	case *crashSeeds > 0:
		n = *crashSeeds
	case testing.Short():
		n = short
	}
	seeds := make([]uint64, n)
	for i := range seeds {
		seeds[i] = uint64(i + 1)
	}
	return seeds
}

// forEachCrashSeed runs body as one subtest per seed, and tells how to
// run a failed seed again.
func forEachCrashSeed(t *testing.T, ci, short int, body func(t *testing.T, seed uint64)) {
	for _, seed := range crashTestSeeds(ci, short) {
		t.Run(fmt.Sprintf("seed=%d", seed), func(t *testing.T) {
			defer func() {
				if t.Failed() {
					t.Logf("run this seed again: go test ./node -run '%s$' -crash.seed=%d -v", testName(t), seed)
				}
			}()
			body(t, seed)
		})
	}
}

// testName is the top-level test of a subtest.
func testName(t *testing.T) string {
	name, _, _ := strings.Cut(t.Name(), "/")
	return name
}

// crashPoint is a point of a node's work where a test crashes it.
type crashPoint uint8

const (
	crashBeforeApply  crashPoint = iota // chosen entries about to be applied; nothing of the cycle committed
	crashBeforeCommit                   // leaders' accepts sent, the cycle's batch not committed
	crashAfterPersist                   // batch committed, nothing of the cycle sent or answered
	crashAfterSend                      // cycle done: messages handed over, clients answered
	crashBeforeIngest                   // a received snapshot staged, not ingested
	crashAfterIngest                    // a snapshot ingested, its group not yet told
)

func (p crashPoint) String() string {
	return [...]string{"BeforeApply", "BeforeCommit", "AfterPersist", "AfterSend", "BeforeIngest", "AfterIngest"}[p]
}

// cyclePoints are the crash points every busy node passes.
var cyclePoints = []crashPoint{crashBeforeApply, crashBeforeCommit, crashAfterPersist, crashAfterSend}

// crashPlan crashes node the countdown-th time it reaches point, keeping
// unsyncedPct percent of its unsynced writes (chosen by rngSeed). With
// afterWrites, the countdown starts once the node's current life has
// numbered that many of its clients' writes.
type crashPlan struct {
	node        uint64
	point       crashPoint
	countdown   int
	afterWrites uint64
	unsyncedPct int
	rngSeed     uint64
}

// randomPlan draws a crash of node at one of points, within the first
// maxCountdown times it passes there, keeping a random share of its
// unsynced writes.
func randomPlan(rng *rand.Rand, node uint64, points []crashPoint, maxCountdown int) crashPlan {
	return crashPlan{
		node:        node,
		point:       points[rng.IntN(len(points))],
		countdown:   1 + rng.IntN(maxCountdown),
		unsyncedPct: []int{0, 0, 30, 80}[rng.IntN(4)],
		rngSeed:     rng.Uint64(),
	}
}

// crash is a plan that fired: the crashed node's filesystem as the crash
// left it, and each of its replicas' status at the crash (upper bounds of
// what the clone holds).
type crash struct {
	plan   crashPlan
	clone  *vfs.MemFS
	status map[uint64]group.Status
}

// crashCluster is a three-node testCluster whose nodes run on crash-clone
// filesystems and crash where a plan says.
//
// Each node runs ONE scheduler worker. A crash must be atomic: nothing
// may leave the node after the instant its clone is taken, or peers and
// clients would learn of state the clone lacks and the test would blame
// the node for its own harness. The knob that takes the clone ends its
// worker there (runtime.Goexit), so the rest of that cycle (its commit,
// messages, answers) never happens; with one worker no other cycle runs
// meanwhile. What else runs until Stop emits nothing that depends on
// unsynced state (liveness support is timed, and the restarted process
// starts after the old one stopped).
type crashCluster struct {
	*testCluster
	logRetention uint64

	mu      sync.Mutex
	fs      map[uint64]*vfs.MemFS // each node's filesystem in its current life
	plan    *crashPlan
	ingests map[uint64]int   // snapshots ingested, by node
	running map[uint64]*Node // each node's current life, nil while starting
	// beforeApply, if set, runs in every node's BeforeApply knob.
	beforeApply func(node, group uint64, entries []pb.Entry)
	crashed     chan crash
	addrs       map[uint64]string
}

// newCrashCluster starts the cluster with ranges and waits for their
// leaders. A non-zero logRetention shortens the groups' logs so that a
// node down for a few writes needs a snapshot.
func newCrashCluster(t *testing.T, ranges []*kvpb.RangeDescriptor, logRetention uint64) *crashCluster {
	cc := &crashCluster{logRetention: logRetention, fs: map[uint64]*vfs.MemFS{}, ingests: map[uint64]int{}, running: map[uint64]*Node{},
		crashed: make(chan crash, 1), addrs: map[uint64]string{}}
	for id := uint64(1); id <= 3; id++ {
		cc.fs[id] = vfs.NewCrashableMem()
	}
	cc.testCluster = newTestCluster(t, 3, ranges, func(cfg *Config) {
		cc.mu.Lock()
		cfg.FS = cc.fs[cfg.NodeID]
		cc.mu.Unlock()
		cfg.Workers = 1
		cfg.Knobs = cc.knobs(cfg.NodeID)
	})
	for id, n := range cc.nodes {
		cc.addrs[id] = n.Addr()
		cc.running[id] = n
	}
	for _, d := range ranges {
		cc.leaderFor(d.RangeId)
	}
	return cc
}

func (cc *crashCluster) knobs(id uint64) TestingKnobs {
	at := func(p crashPoint) func() { return func() { cc.at(id, p) } }
	return TestingKnobs{
		BeforeApply: func(g uint64, entries []pb.Entry) {
			cc.mu.Lock()
			k := cc.beforeApply
			cc.mu.Unlock()
			if k != nil {
				k(id, g, entries)
			}
			cc.at(id, crashBeforeApply)
		},
		BeforeCommit: at(crashBeforeCommit),
		AfterPersist: at(crashAfterPersist),
		AfterSend:    at(crashAfterSend),
		BeforeIngest: func(uint64) { cc.at(id, crashBeforeIngest) },
		AfterIngest: func(uint64) {
			cc.mu.Lock()
			cc.ingests[id]++
			cc.mu.Unlock()
			cc.at(id, crashAfterIngest)
		},
		LogRetention: cc.logRetention,
	}
}

// arm sets the plan the nodes' knobs follow.
func (cc *crashCluster) arm(p crashPlan) {
	cc.t.Logf("crash plan: node %d at %v, countdown %d after %d writes, keeping %d%% of unsynced writes", p.node, p.point, p.countdown, p.afterWrites, p.unsyncedPct)
	cc.mu.Lock()
	cc.plan = &p
	cc.mu.Unlock()
}

// at runs on node id's worker at point p: if the plan says so, it takes
// the crash clone and ends the worker.
func (cc *crashCluster) at(id uint64, p crashPoint) {
	cc.mu.Lock()
	plan := cc.plan
	if plan == nil || plan.node != id || plan.point != p {
		cc.mu.Unlock()
		return
	}
	if n := cc.running[id]; plan.afterWrites > 0 && (n == nil || n.seq.Load() < plan.afterWrites) {
		cc.mu.Unlock()
		return
	}
	if plan.countdown--; plan.countdown > 0 {
		cc.mu.Unlock()
		return
	}
	cc.plan = nil
	fs := cc.fs[id]
	cc.mu.Unlock()
	clone := fs.CrashClone(vfs.CrashCloneCfg{UnsyncedDataPercent: plan.unsyncedPct, RNG: rand.New(rand.NewPCG(plan.rngSeed, 0))})
	cc.crashed <- crash{plan: *plan, clone: clone}
	runtime.Goexit()
}

// awaitCrash waits for the armed plan to fire and stops the crashed life
// of its node.
func (cc *crashCluster) awaitCrash(timeout time.Duration) crash {
	cc.t.Helper()
	var cr crash
	select {
	case cr = <-cc.crashed:
	case <-time.After(timeout):
		cc.mu.Lock()
		p := cc.plan
		cc.mu.Unlock()
		cc.t.Fatalf("the crash plan did not fire within %v (left: %+v)\n%s", timeout, p, cc.statuses())
	}
	n := cc.nodes[cr.plan.node]
	// The node's only worker is gone, so its replicas are ours to read.
	cr.status = make(map[uint64]group.Status)
	var points []string
	n.mu.RLock()
	for id, r := range n.replicas {
		st := r.rn.Status()
		cr.status[id] = st
		points = append(points, fmt.Sprintf("range %d applied %d chosen %d last %d", id, st.Applied, st.Chosen, st.LastIndex))
	}
	n.mu.RUnlock()
	n.Stop()
	delete(cc.nodes, cr.plan.node)
	slices.Sort(points)
	cc.t.Logf("node %d crashed at %v: %s", cr.plan.node, cr.plan.point, strings.Join(points, "; "))
	return cr
}

// statuses describes every replica of every running node, for a failure
// message. Each status is read on the replica's worker.
func (cc *crashCluster) statuses() string {
	var b strings.Builder
	ids := slices.Sorted(maps.Keys(cc.nodes))
	for _, id := range ids {
		n := cc.nodes[id]
		n.mu.RLock()
		reps := slices.SortedFunc(maps.Values(n.replicas), func(a, b *replica) int { return cmp.Compare(a.id, b.id) })
		n.mu.RUnlock()
		for _, r := range reps {
			ch := make(chan group.Status, 1)
			n.onWorker(r, func() { ch <- r.rn.Status() })
			select {
			case st := <-ch:
				fmt.Fprintf(&b, "node %d range %d: %+v\n", id, r.id, st)
			case <-time.After(time.Second):
				fmt.Fprintf(&b, "node %d range %d: its worker does not answer\n", id, r.id)
			}
		}
	}
	return b.String()
}

// restart starts node id again, on fs, at its old address.
func (cc *crashCluster) restart(id uint64, fs *vfs.MemFS) {
	cc.t.Helper()
	cc.mu.Lock()
	cc.fs[id] = fs
	cc.running[id] = nil
	cc.mu.Unlock()
	cc.start(id, cc.addrs[id])
	n := cc.nodes[id]
	cc.mu.Lock()
	cc.running[id] = n
	cc.mu.Unlock()
	for other, m := range cc.nodes {
		n.SetPeer(other, m.Addr())
	}
}

// crashRanges is three ranges replicated on nodes 1-3, leaders spread
// over them, and with singles one range more per node that only it
// holds: a range whose every replica crashes at once.
func crashRanges(singles bool) []*kvpb.RangeDescriptor {
	bounds := []string{"", "b", "c", "d", "e", "f", ""}
	n := 3
	if singles {
		n = 6
	}
	descs := make([]*kvpb.RangeDescriptor, n)
	for i := range descs {
		d := &kvpb.RangeDescriptor{RangeId: uint64(i + 1), StartKey: []byte(bounds[i]), EndKey: []byte(bounds[i+1]),
			Generation: 1, LeaderNodeId: uint64(i%3 + 1)}
		if i < 3 {
			for id := uint64(1); id <= 3; id++ {
				d.Replicas = append(d.Replicas, &kvpb.ReplicaDescriptor{NodeId: id})
			}
		} else {
			d.Replicas = []*kvpb.ReplicaDescriptor{{NodeId: d.LeaderNodeId}}
		}
		descs[i] = d
	}
	if !singles {
		descs[2].EndKey = nil
	}
	return descs
}

// startLoad starts workers clients' goroutines on three keys per range,
// through two router sessions seeded with every node.
func (cc *crashCluster) startLoad(seed uint64, workers int) *workload {
	cc.t.Helper()
	var seeds []string
	for _, a := range cc.addrs {
		seeds = append(seeds, a)
	}
	slices.Sort(seeds)
	w := &workload{h: newHistory(), opTimeout: 3 * time.Second}
	// The clients retry and reconnect within milliseconds (gRPC's default
	// waits a second before redialing), so writes reach a restarted node
	// while it recovers.
	for range 2 {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		c, err := router.New(ctx, router.Config{Seeds: seeds,
			InitialBackoff: time.Millisecond, MaxBackoff: 20 * time.Millisecond, MaxAttempts: 500,
			DialOptions: []grpc.DialOption{grpc.WithTransportCredentials(insecure.NewCredentials()),
				grpc.WithConnectParams(grpc.ConnectParams{MinConnectTimeout: 5 * time.Second, Backoff: backoff.Config{
					BaseDelay: 5 * time.Millisecond, Multiplier: 1.6, Jitter: 0.2, MaxDelay: 50 * time.Millisecond}})}})
		cancel()
		if err != nil {
			cc.t.Fatal(err)
		}
		cc.t.Cleanup(func() { c.Close() })
		w.clients = append(w.clients, c)
	}
	for _, d := range cc.ranges {
		prefix := string(d.StartKey)
		if prefix == "" {
			prefix = "a"
		}
		for j := range 3 {
			w.keys = append(w.keys, fmt.Sprintf("%s%d", prefix, j))
		}
	}
	w.start(workers, seed)
	// A test that fails before finish must not leave its workers running
	// (recording failures for ever) into the next test.
	cc.t.Cleanup(w.halt)
	return w
}

// finish stops the load, reads every key once more, and checks the
// history and that every range's replicas agree.
func (cc *crashCluster) finish(w *workload) {
	cc.t.Helper()
	w.halt()
	w.finalReads(cc.t)
	cc.t.Logf("history: %s", w.h.stats())
	if v := w.h.check(); len(v) > 0 {
		cc.t.Errorf("the client history has %d violations:\n%s", len(v), summarize(v, 8))
	}
	cc.checkReplicasAgree()
}

// checkReplicasAgree waits until the replicas of each replicated range
// have applied the same point, then compares what their engines hold for
// the range: the user data in its span and its range-local records (the
// client sessions), which snapshot or log replay must have rebuilt
// exactly.
func (cc *crashCluster) checkReplicasAgree() {
	cc.t.Helper()
	for _, d := range cc.ranges {
		if len(d.Replicas) < 2 {
			continue
		}
		deadline := time.Now().Add(20 * time.Second)
		for {
			dumps, applied, ok := cc.rangeDumps(d)
			if ok {
				for i := 1; i < len(dumps); i++ {
					if diff := firstDifference(dumps[0], dumps[i]); diff != "" {
						cc.t.Errorf("range %d at applied %d: node %d and node %d differ: %s",
							d.RangeId, applied, d.Replicas[0].NodeId, d.Replicas[i].NodeId, diff)
					}
				}
				break
			}
			if time.Now().After(deadline) {
				cc.t.Errorf("range %d: replicas never reached the same applied point\n%s", d.RangeId, cc.statuses())
				break
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
}

// rangeDumps reads every replica's records of range d, if they all stand
// at one applied point that did not move while they were read.
func (cc *crashCluster) rangeDumps(d *kvpb.RangeDescriptor) (dumps [][]string, applied uint64, ok bool) {
	for i, rd := range d.Replicas {
		n := cc.nodes[rd.NodeId]
		r := n.replica(d.RangeId)
		if r == nil {
			return nil, 0, false
		}
		a := r.applied.Load()
		if i > 0 && a != applied {
			return nil, 0, false
		}
		applied = a
		var dump []string
		err := n.eng.Scan(d.StartKey, nilIfEmpty(d.EndKey), 0, func(k, v []byte) bool {
			dump = append(dump, fmt.Sprintf("data %q = %q", k, v))
			return true
		})
		if err == nil {
			err = n.eng.ScanRangeLocal(engine.GroupID(d.RangeId), nil, func(k, v []byte) bool {
				dump = append(dump, fmt.Sprintf("local %x = %x", k, v))
				return true
			})
		}
		if err != nil {
			cc.t.Fatalf("node %d: reading range %d: %v", rd.NodeId, d.RangeId, err)
		}
		if r.applied.Load() != a {
			return nil, 0, false
		}
		dumps = append(dumps, dump)
	}
	return dumps, applied, true
}

func firstDifference(a, b []string) string {
	for i := range max(len(a), len(b)) {
		switch {
		case i >= len(a):
			return "only the second has " + b[i]
		case i >= len(b):
			return "only the first has " + a[i]
		case a[i] != b[i]:
			return fmt.Sprintf("%s vs %s", a[i], b[i])
		}
	}
	return ""
}

// TestCrashRestart crashes a random node at a random point of its cycle
// (before apply, between the leaders' early accepts and the commit, after
// the commit, after the sends) while clients write, keeping a random share
// of its unsynced writes, restarts it on the crash clone, and keeps
// writing. Some ranges have their only replica on the crashed node.
func TestCrashRestart(t *testing.T) {
	forEachCrashSeed(t, 4, 2, func(t *testing.T, seed uint64) {
		rng := rand.New(rand.NewPCG(seed, 0))
		cc := newCrashCluster(t, crashRanges(true), 0)
		// The first crash comes once the node has numbered up to a few
		// hundred of its clients' writes: early or well into its life.
		plan := randomPlan(rng, uint64(1+rng.IntN(3)), cyclePoints, 50)
		plan.afterWrites = 1 + rng.Uint64N(300)
		cc.arm(plan)
		w := cc.startLoad(seed, 8)
		cr := cc.awaitCrash(15 * time.Second)
		time.Sleep(time.Duration(rng.IntN(300)) * time.Millisecond)
		// The restarted node crashes again early in its new life, a crash
		// loop: its next life gives out the same command numbers again
		// while it replays them.
		loop := randomPlan(rng, plan.node, cyclePoints, 3)
		loop.afterWrites = 1 + rng.Uint64N(20)
		cc.arm(loop)
		cc.restart(plan.node, cr.clone)
		cr = cc.awaitCrash(15 * time.Second)
		cc.restart(plan.node, cr.clone)
		time.Sleep(700 * time.Millisecond) // writes through the recovery
		cc.finish(w)
	})
}

// TestCrashDuringSnapshotIngest crashes a node at a random point of its
// cycle and keeps it down until its peers have truncated their logs past
// it, so that on restart it needs a snapshot of every range; it crashes
// again while ingesting one (before or after the ingest, with a random
// share of the unsynced writes), and starts once more: it must then catch
// up, and agree with its peers.
func TestCrashDuringSnapshotIngest(t *testing.T) {
	const retention = 8
	forEachCrashSeed(t, 2, 1, func(t *testing.T, seed uint64) {
		rng := rand.New(rand.NewPCG(seed, 0))
		cc := newCrashCluster(t, crashRanges(false), retention)
		w := cc.startLoad(seed, 8)
		time.Sleep(200 * time.Millisecond)
		victim := uint64(1 + rng.IntN(3))
		cc.arm(randomPlan(rng, victim, cyclePoints, 200))
		cr := cc.awaitCrash(15 * time.Second)
		// Its peers drop what they send it while it is down, as a long
		// outage would, rather than queue it for its next life.
		for _, n := range cc.nodes {
			n.trans.Faults().Cut(victim)
		}
		// The log is truncated LogRetention entries below the applied
		// point once twice as many accumulate, so this far ahead of the
		// crashed node's last entry its peers' logs start above all it
		// has.
		for _, d := range cc.ranges {
			need := cr.status[d.RangeId].LastIndex + 3*retention
			for _, rd := range d.Replicas {
				if rd.NodeId == victim {
					continue
				}
				r := cc.nodes[rd.NodeId].replica(d.RangeId)
				deadline := time.Now().Add(20 * time.Second)
				for r.applied.Load() <= need {
					if time.Now().After(deadline) {
						t.Fatalf("range %d: node %d at %d, not past %d", d.RangeId, rd.NodeId, r.applied.Load(), need)
					}
					time.Sleep(10 * time.Millisecond)
				}
			}
		}
		for _, n := range cc.nodes {
			n.trans.Faults().Heal(victim)
		}
		cc.arm(randomPlan(rng, victim, []crashPoint{crashBeforeIngest, crashAfterIngest}, 2))
		cc.restart(victim, cr.clone)
		mid := cc.awaitCrash(20 * time.Second)
		cc.restart(victim, mid.clone)
		time.Sleep(700 * time.Millisecond)
		cc.finish(w)
		cc.mu.Lock()
		t.Logf("node %d ingested %d snapshots in all", victim, cc.ingests[victim])
		cc.mu.Unlock()
	})
}

// TestCrashReplayOnFollowerAnswersNoNewCaller is issue 9's three-node case
// of command ids that repeat across process lives. The leader of a range
// crashes with a write in flight (its accept sent, the write not yet
// applied: before or after its own copy is committed); the next leader
// chooses the write, and the restarted node, now a follower, applies it
// in its new life. Just before that apply, the new life numbers clients'
// writes up to the numbers the replayed commands carry, with a CAS from
// "absent" on a fresh key each: every one must be refused (the node does
// not lead) or really applied, never answered with the earlier life's
// result, which would be a CAS on an absent key that did not swap.
//
// The write's accepts leave before the leader's own copy is committed,
// but whether they reach a peer before the crash is up to timing: when
// none did, the next leader fills the slot with a no-op and there is no
// replay to check. That run is retried on a fresh cluster (a few times at
// most).
func TestCrashReplayOnFollowerAnswersNoNewCaller(t *testing.T) {
	for _, point := range []crashPoint{crashBeforeCommit, crashAfterPersist} {
		t.Run(point.String(), func(t *testing.T) {
			for attempt := 1; attempt <= 3; attempt++ {
				if replayOnFollower(t, point) {
					return
				}
				t.Logf("attempt %d: the restarted node applied no command of its earlier life (its write reached no peer before the crash); again", attempt)
			}
			t.Fatal("in 3 attempts the restarted node never applied a command of its earlier life")
		})
	}
}

// replayOnFollower runs one attempt of
// TestCrashReplayOnFollowerAnswersNoNewCaller, and reports whether the
// restarted node replayed a command of its earlier life.
func replayOnFollower(t *testing.T, point crashPoint) (replays bool) {
	cc := newCrashCluster(t, crashRanges(false)[:1], 0)
	victim := cc.leaderFor(1)
	cc.arm(crashPlan{node: victim, point: point, countdown: 1, afterWrites: 5})
	n := cc.nodes[victim]
	go func() {
		for i := 0; ; i++ {
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			_, err := await(ctx, n, func(done func(*kvpb.PutResponse, error)) {
				n.doPut(&kvpb.PutRequest{Key: []byte(fmt.Sprintf("a/put%d", i)), Value: []byte("old life")}, done)
			})
			cancel()
			if err != nil {
				return // the node crashed
			}
		}
	}()
	cr := cc.awaitCrash(10 * time.Second)

	type casResult struct {
		key, value string
		resp       *kvpb.CompareAndSwapResponse
		err        error
	}
	var (
		mu       sync.Mutex
		results  []casResult
		pending  sync.WaitGroup
		replayed []uint64
	)
	cc.mu.Lock()
	cc.beforeApply = func(id, _ uint64, entries []pb.Entry) {
		cc.mu.Lock()
		life, done := cc.running[id], replayed != nil
		cc.mu.Unlock()
		if id != victim || life == nil || done {
			return // life is nil while the node starts: it serves nobody yet
		}
		var seqs []uint64
		for _, e := range entries {
			if v, err := kvsm.Decode(e.Data); e.Type == pb.EntryNormal && err == nil {
				for _, c := range v.Commands {
					if c.Proposer.Node == id && c.Proposer.Incarnation < life.incarnation {
						seqs = append(seqs, c.Proposer.Seq)
					}
				}
			}
		}
		if len(seqs) == 0 {
			return
		}
		cc.mu.Lock()
		replayed = seqs
		cc.mu.Unlock()
		// A write refused before it is numbered (no route) would
		// never get there: bounded, and said so.
		for i := 0; life.seq.Load() < slices.Max(seqs) && i < 10_000; i++ {
			key, value := fmt.Sprintf("a/fresh%d", i), fmt.Sprintf("new life %d", i)
			pending.Add(1)
			life.doCAS(&kvpb.CompareAndSwapRequest{Key: []byte(key), ExpectAbsent: true, NewValue: []byte(value)},
				func(resp *kvpb.CompareAndSwapResponse, err error) {
					mu.Lock()
					results = append(results, casResult{key: key, value: value, resp: resp, err: err})
					mu.Unlock()
					pending.Done()
				})
		}
		if life.seq.Load() < slices.Max(seqs) {
			t.Errorf("the new life's writes never reached the replayed sequence numbers %v", seqs)
		}
	}
	cc.mu.Unlock()
	cc.restart(victim, cr.clone)

	deadline := time.Now().Add(8 * time.Second)
	for {
		cc.mu.Lock()
		done := replayed != nil
		cc.mu.Unlock()
		if done {
			break
		}
		if time.Now().After(deadline) {
			return false
		}
		time.Sleep(10 * time.Millisecond)
	}
	finished := make(chan struct{})
	go func() { pending.Wait(); close(finished) }()
	select {
	case <-finished:
	case <-time.After(15 * time.Second):
		t.Fatal("the new life's writes were never answered")
	}
	cc.mu.Lock()
	t.Logf("replayed commands %v of the earlier life; %d writes of the new life were waiting", replayed, len(results))
	cc.mu.Unlock()
	// pending.Wait ordered every callback's append before this.
	if len(results) == 0 {
		t.Fatal("no write of the new life was waiting when the earlier life's commands were replayed")
	}
	for _, r := range results {
		switch {
		case r.err != nil:
			// Refused: a follower proposes nothing.
		case !r.resp.Succeeded:
			t.Errorf("CAS %s from absent reported not swapped (found=%v %q): it got another command's result",
				r.key, r.resp.Found, r.resp.Value)
		default:
			if v, ok := get(t, cc.testCluster, 1, r.key); !ok || v != r.value {
				t.Errorf("CAS %s from absent to %q reported swapped, but the key holds %q (found=%v)", r.key, r.value, v, ok)
			}
		}
	}
	return true
}
