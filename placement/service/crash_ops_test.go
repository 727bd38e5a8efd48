package service

import (
	"context"
	"flag"
	"fmt"
	"math/rand/v2"
	"runtime"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/shardd/shardd/internal/linz"
	"github.com/shardd/shardd/kvpb"
	"github.com/shardd/shardd/kvsm"
	"github.com/shardd/shardd/node"
	pb "github.com/shardd/shardd/paxospb"
	"github.com/shardd/shardd/placement"
	"github.com/shardd/shardd/placementpb"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// TestKillAtEachStep kills a process at a step of a split or of a replica
// move (see killSteps), restarts it, and checks that the operation
// completes or rolls back (placement's list of operations empties) and
// that the map converges; at the end, the workload's history and the
// replicas are checked as in TestChaos. The victims: of a split, the
// range's leader, a follower, or the placement leader; of a move, the
// source (the range's leader, so that the move hands its leadership
// away), the target, the range's leader (the move's source being a
// follower then), or the placement leader. A node is stopped abruptly:
// at a step its own worker reaches, the worker ends there, before the
// cycle commits or sends anything, and the node stops (what kill -9 does
// to a process whose disk keeps what it wrote); at a step placement
// reaches, the driver waits while the victim stops.
//
// CI runs killRegressions and a sample of the table drawn by the seed (six
// cases, two under -short); every case, or one:
//
//	go test ./placement/service -run 'TestKillAtEachStep$' -chaos.all -v
//	go test ./placement/service -run 'TestKillAtEachStep/move/promoted/target$' -chaos.all -v
func TestKillAtEachStep(t *testing.T) {
	seed := chaosTestSeed(t)
	rng := rand.New(rand.NewPCG(seed, 2))
	cases := killCases()
	if !*chaosAll {
		n := 6
		if testing.Short() {
			n = 2
		}
		var sample []killCase
		for i, kc := range cases {
			if slices.Contains(killRegressions, kc.String()) {
				sample = append(sample, cases[i])
			}
		}
		for _, i := range rng.Perm(len(cases))[:n] {
			name := cases[i].String()
			if !slices.Contains(killRegressions, name) {
				sample = append(sample, cases[i])
			}
		}
		cases = sample
	}
	k := &killer{}
	cc := startChaosCluster(t, k.knobs)
	k.cc = cc
	h := k.atDriver
	testHook.Store(&h)
	t.Cleanup(func() { testHook.Store(nil) })
	cc.startLoad(seed)
	for _, kc := range cases {
		t.Run(kc.String(), func(t *testing.T) { k.run(t, kc, rng) })
	}
	cc.awaitNoOps(30 * time.Second)
	cc.checkEnd()
}

// killRegressions are cases that found a bug, run every time:
//   - split/applied-on-leader/placement, move/removed/placement: a split
//     and a move whose placement leader fails midway, which the next
//     leader finishes; the client's retry reported them refused.
//   - split/applied-on-leader/leader: a follower restarted under load
//     never came to host the right half, nor another range's new
//     generation ("node 3 has no replica of range 6", 3 of 3 samples of
//     seed 1796633345987218723). The range's busy leader sent no
//     heartbeats, and only their answers started a catch-up, so the
//     follower, with a gap below the chosen point, stayed stuck before
//     the split (group's TestLaggingFollowerCatchesUpUnderLoad).
var killRegressions = []string{"split/applied-on-leader/placement", "move/removed/placement", "split/applied-on-leader/leader"}

var chaosAll = flag.Bool("chaos.all", false, "TestKillAtEachStep: run every case of the table, not a sample")

// killStep is a step of an operation at which a process is killed: one
// the driver reaches (hook), or one a node's worker reaches (at). With
// wait, the driver's hook first waits for the nodes to get further.
type killStep struct {
	name string
	hook opStep
	at   nodeStep
	wait stepWait
}

// nodeStep is a step a node's worker reaches.
type nodeStep uint8

const (
	noNodeStep nodeStep = iota
	// splitChosen: a replica of the range is about to apply the split
	// entry, chosen; nothing of the cycle that applies it is committed
	// or sent.
	splitChosen
	// snapshotIngested: the target ingested the range's snapshot, and its
	// group has not heard of it yet.
	snapshotIngested
)

// stepWait is what the driver's hook waits for before the kill.
type stepWait uint8

const (
	noWait stepWait = iota
	// everyReplicaSplit: every replica applied the split.
	everyReplicaSplit
	// sourceDropped: the source deleted its replica's data and log.
	sourceDropped
)

var killSteps = map[string][]killStep{
	"split": {
		{name: "recorded", hook: stepRecorded},
		{name: "chosen", at: splitChosen},
		{name: "applied-on-leader", hook: stepSplitApplied},
		{name: "applied-everywhere", hook: stepSplitApplied, wait: everyReplicaSplit},
	},
	"move": {
		{name: "recorded", hook: stepRecorded},
		{name: "learner-added", hook: stepLearnerAdded},
		{name: "snapshot-ingested", at: snapshotIngested},
		{name: "promoted", hook: stepPromoted},
		{name: "leader-moved", hook: stepLeaderMoved},
		{name: "removed", hook: stepRemoved},
		{name: "data-deleted", hook: stepRemoved, wait: sourceDropped},
	},
}

var killVictims = map[string][]string{
	"split": {"leader", "follower", "placement"},
	"move":  {"source", "target", "leader", "placement"},
}

type killCase struct {
	op     string
	step   killStep
	victim string
}

func (kc killCase) String() string { return kc.op + "/" + kc.step.name + "/" + kc.victim }

// killCases is the table: every operation's steps with every victim,
// but the leader of a move at the step where the source hands its
// leadership away (the leader is the source then).
func killCases() []killCase {
	var out []killCase
	for _, op := range []string{"split", "move"} {
		for _, st := range killSteps[op] {
			for _, v := range killVictims[op] {
				if op == "move" && st.hook == stepLeaderMoved && v == "leader" {
					continue
				}
				out = append(out, killCase{op, st, v})
			}
		}
	}
	return out
}

// killer arms one kill at a time, fired from the node knobs or the
// drivers' hook, and carried out on the test's goroutine.
type killer struct {
	cc   *chaosCluster
	mu   sync.Mutex
	plan *killPlan // armed, nil once fired
}

// killPlan is an armed kill.
type killPlan struct {
	kc       killCase
	rangeID  uint64
	replicas []uint64 // the range's nodes when the operation started
	from, to uint64   // a move's
	splitKey []byte   // a split's
	victim   uint64   // the node to kill; 0: the placement leader
	// witness is the node whose worker fires a node step.
	witness uint64
	// self is set when the witness is the victim: its worker ended.
	self bool
	// fired is closed when the plan fires, resume once the victim is
	// down (or the case gave up): whoever fired waits for it, so that the
	// operation goes no further meanwhile.
	fired, resume chan struct{}
}

// disarm takes p back, unless it fired; it reports whether it fired. A
// driver's hook that took p and fires later finds resume closed and does
// not wait.
func (k *killer) disarm(p *killPlan) (fired bool) {
	k.mu.Lock()
	defer k.mu.Unlock()
	if k.plan == p {
		k.plan = nil
	}
	select {
	case <-p.fired:
		return true
	default:
		close(p.resume)
		return false
	}
}

// knobs hooks every node's workers to the killer.
func (k *killer) knobs(cfg *node.Config) {
	id := cfg.NodeID
	cfg.Knobs.BeforeApply = func(g uint64, entries []pb.Entry) {
		k.atNode(id, g, splitChosen, func() bool { return hasSplit(entries) })
	}
	cfg.Knobs.AfterIngest = func(g uint64) { k.atNode(id, g, snapshotIngested, func() bool { return true }) }
}

// hasSplit reports whether entries hold a split command.
func hasSplit(entries []pb.Entry) bool {
	for _, e := range entries {
		if v, err := kvsm.Decode(e.Data); e.Type == pb.EntryNormal && err == nil {
			for _, c := range v.Commands {
				if c.Op == kvsm.OpSplit {
					return true
				}
			}
		}
	}
	return false
}

// atNode runs on node id's worker at step st of range g: if the armed
// plan is for it, it fires, and either ends the worker (the victim is
// this node: nothing more of the cycle happens) or waits for the victim
// to be down.
func (k *killer) atNode(id, g uint64, st nodeStep, match func() bool) {
	k.mu.Lock()
	p := k.plan
	if p == nil || p.kc.step.at != st || p.rangeID != g || p.witness != id || !match() {
		k.mu.Unlock()
		return
	}
	// Fired under mu, so that the case does not give up on a plan
	// whose victim's worker ends here.
	k.plan = nil
	p.self = p.victim == id
	close(p.fired)
	k.mu.Unlock()
	if p.self {
		runtime.Goexit()
	}
	select {
	case <-p.resume:
	case <-time.After(20 * time.Second):
	}
}

// atDriver is the drivers' hook: at the armed plan's step of its
// operation, it waits for what the plan waits for, fires, and waits for
// the victim to be down (or for the driver's end, when the victim is the
// placement process driving).
func (k *killer) atDriver(ctx context.Context, op *placementpb.RangeOperation, step opStep) {
	k.mu.Lock()
	p := k.plan
	mv := op.GetMove()
	if p == nil || p.kc.step.hook != step || p.rangeID != op.RangeId ||
		(p.kc.op == "move") != (mv != nil) || (mv != nil && (mv.From != p.from || mv.To != p.to)) {
		k.mu.Unlock()
		return
	}
	k.plan = nil
	k.mu.Unlock()
	switch p.kc.step.wait {
	case everyReplicaSplit:
		k.await(fmt.Sprintf("every replica of range %d to apply the split", p.rangeID), func() bool {
			for _, id := range p.replicas {
				if !k.hosts(id, op.GetSplit().NewRangeId) {
					return false
				}
			}
			return true
		})
	case sourceDropped:
		k.await(fmt.Sprintf("node %d to drop range %d", p.from, p.rangeID), func() bool { return !k.hosts(p.from, p.rangeID) })
	}
	k.mu.Lock()
	close(p.fired)
	k.mu.Unlock()
	select {
	case <-p.resume:
	case <-ctx.Done():
	}
}

// await polls cond, for at most 10s: past that the kill goes ahead
// anyway, and the case says so.
func (k *killer) await(what string, cond func() bool) {
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			k.cc.t.Logf("gave up waiting for %s; killing now", what)
			return
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// hosts reports whether node id says it holds a replica of range rid.
func (k *killer) hosts(id, rid uint64) bool {
	resp, err := k.cc.dc.admin(id).Ranges(tctx(k.cc.t), &kvpb.RangesRequest{})
	if err != nil {
		return true // can't tell: not yet
	}
	return slices.ContainsFunc(resp.Ranges, func(d *kvpb.RangeDescriptor) bool { return d.RangeId == rid })
}

// run runs one case: it picks a range and the nodes the case needs,
// arms the kill, starts the operation through placement's API, kills and
// restarts the victim when the step is reached, and checks that the
// operation ends and the map converges.
func (k *killer) run(t *testing.T, kc killCase, rng *rand.Rand) {
	for attempt := 1; !k.try(t, kc, rng, attempt == 3); attempt++ {
	}
}

// try is one attempt at run; it reports false if the operation was refused
// because another (a balancer's) was under way on the range, and last is
// not set: the caller tries again.
func (k *killer) try(t *testing.T, kc killCase, rng *rand.Rand, last bool) bool {
	cc := k.cc
	cc.awaitNoOps(30 * time.Second)
	cc.awaitNodesReady(15 * time.Second)
	p := k.pick(t, kc, rng)
	d := holdingID(cc.ranges(), p.rangeID)
	keys := keysIn(d)
	start := cc.now()
	key := p.splitKey
	k.mu.Lock()
	k.plan = p
	k.mu.Unlock()
	opDone := make(chan error, 1)
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		var err error
		if kc.op == "split" {
			_, err = cc.c.SplitRange(ctx, key)
		} else {
			_, err = cc.c.MoveReplica(ctx, p.rangeID, p.from, p.to)
		}
		opDone <- err
	}()
	what := fmt.Sprintf("range %d (%s)", p.rangeID, replicaList(d))
	if kc.op == "split" {
		what = fmt.Sprintf("the split of %s at %q", what, key)
	} else {
		what = fmt.Sprintf("the move of %s from node %d to node %d", what, p.from, p.to)
	}
	select {
	case <-p.fired:
	case err := <-opDone:
		// A follower applies a split, and a learner ingests its
		// snapshot, a moment after the leader answered.
		select {
		case <-p.fired:
		case <-time.After(2 * time.Second):
			if !k.disarm(p) {
				if !last && status.Code(err) == codes.FailedPrecondition && strings.Contains(err.Error(), "is busy with") {
					t.Logf("%s was refused: %v; again", what, err)
					return false
				}
				t.Skipf("%s ended (%v) before it reached the step", what, err)
			}
		}
		opDone <- err
	case <-time.After(30 * time.Second):
		if !k.disarm(p) {
			t.Fatalf("%s did not reach the step within 30s", what)
		}
	}
	victim, restart := k.kill(p)
	close(p.resume)
	t.Logf("%s: killed %s at %v on the history's clock", what, victim, cc.now().Round(time.Millisecond))
	time.Sleep(time.Duration(rng.IntN(300)) * time.Millisecond)
	restart()
	var callErr error
	select {
	case callErr = <-opDone:
		t.Logf("the call that started it answered: %v", callErr)
	case <-time.After(40 * time.Second):
		t.Fatalf("the call that started %s did not return", what)
	}
	cc.awaitNoOps(30 * time.Second)
	// The balancer may move a replica back meanwhile: the call's answer
	// says first whether the operation completed.
	after := holdingID(cc.ranges(), p.rangeID)
	switch {
	case callErr == nil:
		t.Logf("the operation completed")
	case kc.op == "split" && after != nil && slices.Equal(after.EndKey, key),
		kc.op == "move" && after != nil && placement.Holds(after, p.to) && !placement.Holds(after, p.from):
		t.Logf("the operation completed")
		// Its caller may be told it is still under way, never that it
		// was refused.
		if c := status.Code(callErr); c != codes.Unavailable && c != codes.DeadlineExceeded {
			t.Errorf("%s completed, yet the call that started it answered %v", what, callErr)
		}
	default:
		t.Logf("the operation was rolled back: range %d is now %v", p.rangeID, after)
	}
	cc.awaitConverged(20 * time.Second)
	if len(keys) > 0 {
		gap, at := linz.LongestGap(cc.w.History.Operations(), keys, start, cc.now())
		t.Logf("longest stretch without a successful operation on the range's keys %v: %v, from %v", keys, gap.Round(time.Millisecond), at.Round(time.Millisecond))
	}
	return true
}

// pick picks the range of a case and its nodes, and names the victim.
func (k *killer) pick(t *testing.T, kc killCase, rng *rand.Rand) *killPlan {
	cc := k.cc
	var d *kvpb.RangeDescriptor
	var key []byte
	all := cc.ranges()
	for _, i := range rng.Perm(len(all)) {
		cand := all[i]
		if len(placement.VoterNodes(cand)) != 3 || len(cand.Replicas) != 3 {
			continue
		}
		if kc.op == "split" {
			if key = splitKeyIn(cand, rng); key == nil {
				continue
			}
		}
		d = cand
		break
	}
	if d == nil {
		t.Fatalf("no range to %s", kc.op)
	}
	leader := cc.leaderOf(d.RangeId)
	p := &killPlan{kc: kc, rangeID: d.RangeId, replicas: placement.VoterNodes(d), splitKey: key,
		fired: make(chan struct{}), resume: make(chan struct{})}
	var others []uint64 // the voters but the leader
	for _, v := range p.replicas {
		if v != leader {
			others = append(others, v)
		}
	}
	if kc.op == "move" {
		p.from, p.to = leader, lacking(d)
		if kc.victim == "leader" {
			p.from = others[rng.IntN(len(others))]
		}
	}
	switch kc.victim {
	case "leader":
		p.victim = leader
	case "follower":
		p.victim = others[rng.IntN(len(others))]
	case "source":
		p.victim = p.from
	case "target":
		p.victim = p.to
	}
	switch kc.step.at {
	case splitChosen:
		p.witness = p.victim
		if p.victim == 0 {
			p.witness = leader
		}
	case snapshotIngested:
		p.witness = p.to
	}
	return p
}

// splitKeyIn returns a random key strictly inside d, of the shape the
// workload's keys have, or nil if d is too narrow.
func splitKeyIn(d *kvpb.RangeDescriptor, rng *rand.Rand) []byte {
	for range 100 {
		key := []byte(fmt.Sprintf("k%04d", rng.IntN(10000)))
		if containsKey(d, key) {
			return key
		}
	}
	return nil
}

// kill stops p's victim, and returns what it stopped and how to start it
// again.
func (k *killer) kill(p *killPlan) (string, func()) {
	cc := k.cc
	if p.victim != 0 {
		cc.dc.stop(p.victim)
		what := fmt.Sprintf("node %d", p.victim)
		if p.self {
			what += " (its worker ended at the step)"
		}
		return what, func() { cc.dc.start(p.victim) }
	}
	id := cc.pc.leader()
	cc.pc.stop(id)
	return fmt.Sprintf("placement leader %d", id), func() { cc.pc.restart(id) }
}
