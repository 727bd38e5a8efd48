package service

import (
	"bytes"
	"context"
	"flag"
	"fmt"
	"maps"
	"math/rand/v2"
	"os"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/anishathalye/porcupine"
	"github.com/shardd/shardd/internal/linz"
	"github.com/shardd/shardd/internal/testutil"
	"github.com/shardd/shardd/kvpb"
	"github.com/shardd/shardd/node"
	"github.com/shardd/shardd/placement"
	"github.com/shardd/shardd/placementpb"
	"github.com/shardd/shardd/router"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
)

// The chaos tests run a replicated placement service (three processes)
// and four shardd nodes in this process, every range on three of them,
// under a recorded get/put/CAS workload through the router, while range
// operations run (TestChaos: at random; TestKillAtEachStep: one at a time,
// with a process killed at a chosen step). At the end the history must be
// linearizable per key (porcupine), every acknowledged write readable,
// placement's operations done, the map tiling the key space with three
// voters per range that the nodes agree with, and every range's replicas
// holding the same data.
//
// A failure prints its seed. The seed fixes the tests' choices; the
// processes' timing is not replayed, so a failure may need a few runs to
// recur:
//
//	go test ./placement/service -run 'TestChaos$' -chaos.seed=N -v
//	go test ./placement/service -run 'TestChaos$' -chaos.duration=60s -v -timeout 20m
var (
	chaosSeed     = flag.Uint64("chaos.seed", 0, "TestChaos, TestKillAtEachStep: run with this seed (0: a new one, printed)")
	chaosDuration = flag.Duration("chaos.duration", 0, "TestChaos: how long the nemesis runs (0: 4s, 1.5s under -short)")
)

// chaosTestSeed returns the seed a chaos test runs with, logged, and tells
// how to run it again if the test fails.
func chaosTestSeed(t *testing.T) uint64 {
	seed := *chaosSeed
	if seed == 0 {
		seed = uint64(time.Now().UnixNano())
	}
	t.Logf("seed %d", seed)
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("run this seed again: go test ./placement/service -run '^%s$' -chaos.seed=%d -v", t.Name(), seed)
		}
	})
	return seed
}

const (
	chaosNodes    = 4
	chaosWorkers  = 8
	chaosRouters  = 2
	chaosRanges   = 4
	chaosOpTimout = 5 * time.Second
)

// chaosKeys are the workload's keys: a few, so that many operations race
// on each, spread over the first ranges (cut at k2500, k5000, k7500) and
// over those the splits make.
var chaosKeys = []string{"k0500", "k1500", "k2500", "k3500", "k4500", "k5500", "k6500", "k7500", "k8500", "k9500"}

// chaosCluster is the placement processes, the nodes, the client of the
// placement service and the workload.
type chaosCluster struct {
	t  *testing.T
	pc *placementCluster
	dc *dataCluster
	c  *Client
	w  *linz.Workload
}

// startChaosCluster starts the cluster with chaosRanges ranges, tweak
// applied to every node's config, and the workload's routers; the
// workload does not run yet.
func startChaosCluster(t *testing.T, tweak func(*node.Config)) *chaosCluster {
	t.Helper()
	pc := startPlacement(t, 3, func(c *Config) {
		c.InitialRanges, c.ExpectedNodes = chaosRanges, chaosNodes
		// A node restarted by the nemesis may receive replicas soon.
		c.SettleTime = 300 * time.Millisecond
		// Only the tests split.
		c.SplitSize, c.SplitQPS = -1, -1
	})
	dc := newDataCluster(t, chaosNodes, pc)
	dc.tweak = tweak
	for id := uint64(1); id <= chaosNodes; id++ {
		dc.start(id)
	}
	cc := &chaosCluster{t: t, pc: pc, dc: dc, c: pc.client()}
	testutil.WaitFor(t, 20*time.Second, "the first ranges on the nodes", func() bool {
		hosted := 0
		for id := range dc.nodes {
			resp, err := dc.admin(id).Ranges(tctx(t), &kvpb.RangesRequest{})
			if err != nil {
				return false
			}
			hosted += len(resp.Ranges)
		}
		return hosted == 3*chaosRanges
	})
	cc.w = &linz.Workload{History: linz.NewHistory(), Keys: chaosKeys, OpTimeout: chaosOpTimout}
	for range chaosRouters {
		// Retries within milliseconds, so that writes reach a range's new
		// leader as soon as it leads.
		rc, err := router.New(tctx(t), router.Config{Source: RouterSource{Client: pc.client()},
			InitialBackoff: time.Millisecond, MaxBackoff: 20 * time.Millisecond, MaxAttempts: 1000})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { rc.Close() })
		cc.w.Routers = append(cc.w.Routers, rc)
	}
	testutil.WaitFor(t, 20*time.Second, "every key to be readable", func() bool {
		for _, k := range chaosKeys {
			if _, _, err := cc.w.Routers[0].Get(tctx(t), []byte(k)); err != nil {
				return false
			}
		}
		return true
	})
	return cc
}

// startLoad starts the workload; the test's end stops it, if the test
// does not.
func (cc *chaosCluster) startLoad(seed uint64) {
	// Times are logged on the history's clock; this places them among
	// the processes' logs (PLACEMENT_TEST_LOG=1).
	cc.t.Logf("the history's clock starts at %s", time.Now().Add(-cc.now()).Format("15:04:05.000"))
	cc.w.Start(chaosWorkers, seed)
	cc.t.Cleanup(cc.w.Stop)
}

// now is the time on the history's clock.
func (cc *chaosCluster) now() time.Duration { return cc.w.History.Since() }

// ranges returns placement's map.
func (cc *chaosCluster) ranges() []*kvpb.RangeDescriptor {
	cc.t.Helper()
	all, err := cc.c.AllRanges(tctx(cc.t), 0)
	if err != nil {
		cc.t.Fatalf("placement's map: %v", err)
	}
	return all
}

// keysIn returns the workload's keys that d holds.
func keysIn(d *kvpb.RangeDescriptor) []string {
	var out []string
	for _, k := range chaosKeys {
		if bytes.Compare([]byte(k), d.StartKey) >= 0 && (len(d.EndKey) == 0 || bytes.Compare([]byte(k), d.EndKey) < 0) {
			out = append(out, k)
		}
	}
	return out
}

// holding returns the range of descs holding key.
func holding(descs []*kvpb.RangeDescriptor, key []byte) *kvpb.RangeDescriptor {
	for _, d := range descs {
		if bytes.Compare(key, d.StartKey) >= 0 && (len(d.EndKey) == 0 || bytes.Compare(key, d.EndKey) < 0) {
			return d
		}
	}
	return nil
}

// lacking returns the node, of 1..chaosNodes, that holds no replica of d
// (0 if there is none or several).
func lacking(d *kvpb.RangeDescriptor) uint64 {
	var out uint64
	for id := uint64(1); id <= chaosNodes; id++ {
		if !placement.Holds(d, id) {
			if out != 0 {
				return 0
			}
			out = id
		}
	}
	return out
}

// leaderOf asks the nodes which of them leads range id, waiting (bounded)
// until one says it does.
func (cc *chaosCluster) leaderOf(id uint64) uint64 {
	cc.t.Helper()
	var lead uint64
	testutil.WaitFor(cc.t, 10*time.Second, fmt.Sprintf("a leader of range %d", id), func() bool {
		for nid := range cc.dc.nodes {
			resp, err := cc.dc.admin(nid).Ranges(tctx(cc.t), &kvpb.RangesRequest{})
			if err != nil {
				continue
			}
			for _, d := range resp.Ranges {
				if d.RangeId == id && d.LeaderNodeId == nid {
					lead = nid
					return true
				}
			}
		}
		return false
	})
	return lead
}

// awaitNoOps waits (bounded) until placement has no operation under way:
// each completed or was rolled back.
func (cc *chaosCluster) awaitNoOps(within time.Duration) {
	cc.t.Helper()
	var last *placementpb.ListOperationsResponse
	deadline := time.Now().Add(within)
	for {
		ops, err := cc.c.ListOperations(tctx(cc.t))
		if err == nil && len(ops.Operations) == 0 {
			return
		}
		if err == nil {
			last = ops
		}
		if time.Now().After(deadline) {
			cc.t.Fatalf("operations still under way after %v: %v (last error %v)", within, last.GetDescriptions(), err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// awaitNodesReady waits (bounded) until placement sees every node live,
// neither draining nor settling: one that may receive replicas.
func (cc *chaosCluster) awaitNodesReady(within time.Duration) {
	cc.t.Helper()
	testutil.WaitFor(cc.t, within, "every node live and settled", func() bool {
		nodes, err := cc.c.ListNodes(tctx(cc.t))
		if err != nil || len(nodes.Nodes) != chaosNodes {
			return false
		}
		for _, n := range nodes.Nodes {
			if !n.Live || n.Settling || n.Draining {
				return false
			}
		}
		return true
	})
}

// checkEnd stops the workload, reads every key once more, and checks the
// history, the map and the replicas.
func (cc *chaosCluster) checkEnd() {
	t := cc.t
	t.Helper()
	cc.w.Stop()
	final, err := cc.w.ReadAll()
	if err != nil {
		t.Error(err)
	}
	ops := cc.w.History.Operations()
	tally := cc.w.History.Tally()
	known, unknown := tally.Returned, tally.Indeterminate
	t.Logf("history: %d operations with a known outcome (get/put/cas %v), %d unknown (%v)",
		linz.Sum(known), known, linz.Sum(unknown), unknown)
	if known[linz.Put]+known[linz.CAS] < 20 || known[linz.Get] < 20 {
		t.Errorf("too few operations completed to say anything: %v", known)
	}
	for _, l := range linz.LostWrites(ops, final) {
		t.Error(l)
	}
	cc.checkLinearizable(ops)
	cc.awaitConverged(20 * time.Second)
	cc.checkReplicasAgree(20 * time.Second)
}

// checkLinearizable checks the history with porcupine, key by key; a
// violation keeps porcupine's visualization in a directory that outlives
// the test.
func (cc *chaosCluster) checkLinearizable(ops []porcupine.Operation) {
	t := cc.t
	t.Helper()
	out, err := os.MkdirTemp("", "shardd-chaos-")
	if err != nil {
		t.Fatal(err)
	}
	res, err := linz.Check(ops, 30*time.Second, out)
	if err != nil {
		t.Fatal(err)
	}
	switch res.Verdict {
	case porcupine.Ok:
		os.RemoveAll(out)
		t.Logf("linearizable")
	case porcupine.Unknown:
		os.RemoveAll(out)
		if len(res.TimedOut) == len(chaosKeys) {
			t.Errorf("the check ran out of time on every key %v: nothing was checked", res.TimedOut)
		} else {
			t.Logf("the check ran out of time on keys %v without finding a violation on the others", res.TimedOut)
		}
	default:
		t.Errorf("NOT LINEARIZABLE on keys %v\n%s\nporcupine's visualization: %s", res.Illegal, res.Explanation, res.Visualization)
	}
}

// awaitConverged waits (bounded) until placement's map tiles the key
// space, every range has three voters, and every node holds exactly the
// ranges the map gives it, at the map's generation.
func (cc *chaosCluster) awaitConverged(within time.Duration) {
	cc.t.Helper()
	deadline := time.Now().Add(within)
	for {
		why, rangeID := cc.divergence()
		if why == "" {
			return
		}
		if time.Now().After(deadline) {
			cc.t.Fatalf("the map did not converge within %v: %s\n%s", within, why, cc.replicaStates(rangeID))
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// divergence says how the map and the nodes differ from a converged
// state, or returns "".
func (cc *chaosCluster) divergence() (why string, rangeID uint64) {
	all, err := cc.c.AllRanges(tctx(cc.t), 0)
	if err != nil {
		return fmt.Sprintf("placement's map: %v", err), 0
	}
	if why := tilingFault(all); why != "" {
		return why, 0
	}
	for _, d := range all {
		if voters := placement.VoterNodes(d); len(voters) != 3 || len(d.Replicas) != 3 {
			return fmt.Sprintf("range %d: %s, want three voters", d.RangeId, replicaList(d)), d.RangeId
		}
	}
	hosted := map[uint64]map[uint64]*kvpb.RangeDescriptor{} // node -> range -> its descriptor
	for id := range cc.dc.nodes {
		resp, err := cc.dc.admin(id).Ranges(tctx(cc.t), &kvpb.RangesRequest{})
		if err != nil {
			return fmt.Sprintf("node %d: %v", id, err), 0
		}
		hosted[id] = map[uint64]*kvpb.RangeDescriptor{}
		for _, d := range resp.Ranges {
			hosted[id][d.RangeId] = d
		}
	}
	inMap := map[uint64]bool{}
	for _, d := range all {
		inMap[d.RangeId] = true
		for _, r := range d.Replicas {
			nd := hosted[r.NodeId][d.RangeId]
			if nd == nil {
				return fmt.Sprintf("node %d has no replica of range %d (%s)", r.NodeId, d.RangeId, replicaList(d)), d.RangeId
			}
			if !sameRange(nd, d) {
				return fmt.Sprintf("node %d holds range %d as %v, the map as %v", r.NodeId, d.RangeId, nd, d), d.RangeId
			}
		}
	}
	for id, rs := range hosted {
		for rid := range rs {
			if d := holdingID(all, rid); d == nil || !placement.Holds(d, id) {
				return fmt.Sprintf("node %d still holds range %d, which the map gives it not (in the map: %v)", id, rid, inMap[rid]), rid
			}
		}
	}
	return "", 0
}

// replicaStates lists every node's replica of range id as the node's
// status reports it (role, leader, chosen and applied points, asleep or
// not): what a failure to converge needs to be read.
func (cc *chaosCluster) replicaStates(id uint64) string {
	if id == 0 {
		return ""
	}
	var b strings.Builder
	for nid := range cc.dc.nodes {
		resp, err := cc.dc.admin(nid).RangeStatus(tctx(cc.t), &kvpb.RangeStatusRequest{RangeId: id})
		if err != nil {
			fmt.Fprintf(&b, "node %d, range %d: %v\n", nid, id, err)
			continue
		}
		fmt.Fprintf(&b, "node %d, range %d: %v\n", nid, id, resp.Replica)
	}
	return b.String()
}

func holdingID(descs []*kvpb.RangeDescriptor, id uint64) *kvpb.RangeDescriptor {
	for _, d := range descs {
		if d.RangeId == id {
			return d
		}
	}
	return nil
}

// sameRange reports whether a and b describe the same range at the same
// generation, leader hints aside.
func sameRange(a, b *kvpb.RangeDescriptor) bool {
	a, b = proto.Clone(a).(*kvpb.RangeDescriptor), proto.Clone(b).(*kvpb.RangeDescriptor)
	a.LeaderNodeId, b.LeaderNodeId = 0, 0
	return proto.Equal(a, b)
}

// checkReplicasAgree waits (bounded) until every replica of every range
// serves the same data in a stale scan of the range, read from each node
// directly: once the load has stopped, replicas that applied the same
// log hold the same keys and values.
func (cc *chaosCluster) checkReplicasAgree(within time.Duration) {
	cc.t.Helper()
	deadline := time.Now().Add(within)
	for _, d := range cc.ranges() {
		for {
			why := cc.replicaDifference(d)
			if why == "" {
				break
			}
			if time.Now().After(deadline) {
				cc.t.Errorf("range %d: %s", d.RangeId, why)
				break
			}
			time.Sleep(50 * time.Millisecond)
		}
	}
}

// replicaDifference says how d's replicas' data differ, or returns "".
func (cc *chaosCluster) replicaDifference(d *kvpb.RangeDescriptor) string {
	var first string
	var firstNode uint64
	for _, r := range d.Replicas {
		resp, err := cc.dc.kv(r.NodeId).Scan(tctx(cc.t), &kvpb.ScanRequest{
			Header:   &kvpb.RequestHeader{RangeId: d.RangeId, Consistency: kvpb.ReadConsistency_STALE},
			StartKey: d.StartKey, EndKey: d.EndKey, Limit: 1000})
		if err != nil {
			return fmt.Sprintf("node %d: stale scan: %v", r.NodeId, err)
		}
		var b strings.Builder
		for _, kv := range resp.Kvs {
			fmt.Fprintf(&b, "%s=%s ", kv.Key, kv.Value)
		}
		if firstNode == 0 {
			first, firstNode = b.String(), r.NodeId
		} else if b.String() != first {
			return fmt.Sprintf("node %d holds %s; node %d holds %s", firstNode, first, r.NodeId, b.String())
		}
	}
	return ""
}

// chaosEvent is one operation of a nemesis.
type chaosEvent struct {
	kind     string
	what     string
	from, to time.Duration // on the history's clock
	keys     []string      // the workload's keys in the range it changed
	err      error
}

// TestChaos runs random range operations through placement's API, two at
// a time, for -chaos.duration under the workload: splits at random keys,
// moves of a random replica to the node lacking it, leader transfers, and
// drains of a node, which then restarts (a rolling restart). It logs how
// many of each ran, how many placement refused, and the longest stretch
// without a successful operation on the keys of the range each changed.
//
//	go test ./placement/service -run 'TestChaos$' -chaos.duration=60s -v -timeout 20m
func TestChaos(t *testing.T) {
	duration := 4 * time.Second
	if testing.Short() {
		duration = 1500 * time.Millisecond
	}
	if *chaosDuration > 0 {
		duration = *chaosDuration
	}
	seed := chaosTestSeed(t)
	cc := startChaosCluster(t, nil)
	cc.startLoad(seed)
	nem := &nemesis{cc: cc}
	var wg sync.WaitGroup
	deadline := time.Now().Add(duration)
	for i := range 2 {
		wg.Go(func() { nem.run(rand.New(rand.NewPCG(seed, uint64(100+i))), deadline) })
	}
	wg.Wait()
	nem.report(t)
	// A drained node is back; let the operations under way end and the
	// load run a moment on the settled cluster.
	cc.awaitNoOps(30 * time.Second)
	time.Sleep(500 * time.Millisecond)
	cc.checkEnd()
}

// nemesis runs random range operations.
type nemesis struct {
	cc *chaosCluster
	mu sync.Mutex
	// draining is the node a drain stopped, until it restarts: one at a
	// time, so that every range keeps a quorum.
	draining uint64
	events   []chaosEvent
}

// run does random operations, one after another with random pauses,
// until deadline.
func (n *nemesis) run(rng *rand.Rand, deadline time.Time) {
	for time.Now().Before(deadline) {
		time.Sleep(time.Duration(20+rng.IntN(200)) * time.Millisecond)
		var ev chaosEvent
		switch p := rng.IntN(100); {
		case p < 30:
			ev = n.split(rng)
		case p < 60:
			ev = n.move(rng)
		case p < 85:
			ev = n.transfer(rng)
		default:
			ev = n.drain(rng)
		}
		if ev.kind == "" {
			continue // nothing to do
		}
		if c := status.Code(ev.err); c == codes.Internal || c == codes.Unknown || c == codes.DataLoss {
			n.cc.t.Errorf("%s: %v", ev.what, ev.err)
		}
		n.mu.Lock()
		n.events = append(n.events, ev)
		n.mu.Unlock()
	}
}

func (n *nemesis) ranges() ([]*kvpb.RangeDescriptor, bool) {
	all, err := n.cc.c.AllRanges(tctx(n.cc.t), 0)
	return all, err == nil && len(all) > 0
}

// split splits the range holding a random key at it.
func (n *nemesis) split(rng *rand.Rand) chaosEvent {
	all, ok := n.ranges()
	if !ok {
		return chaosEvent{}
	}
	key := []byte(fmt.Sprintf("k%04d", rng.IntN(10000)))
	d := holding(all, key)
	ev := chaosEvent{kind: "split", what: fmt.Sprintf("split range %d at %q", d.RangeId, key), keys: keysIn(d), from: n.cc.now()}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	_, ev.err = n.cc.c.SplitRange(ctx, key)
	ev.to = n.cc.now()
	return ev
}

// move moves a random voter of a random range (its leader half the time)
// to the node that lacks the range.
func (n *nemesis) move(rng *rand.Rand) chaosEvent {
	all, ok := n.ranges()
	if !ok {
		return chaosEvent{}
	}
	d := all[rng.IntN(len(all))]
	voters := placement.VoterNodes(d)
	to := lacking(d)
	if len(voters) != 3 || to == 0 {
		return chaosEvent{} // a move is under way
	}
	from := voters[rng.IntN(len(voters))]
	if rng.IntN(2) == 0 && d.LeaderNodeId != 0 {
		from = d.LeaderNodeId
	}
	ev := chaosEvent{kind: "move", what: fmt.Sprintf("move range %d's replica from node %d to node %d", d.RangeId, from, to),
		keys: keysIn(d), from: n.cc.now()}
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	_, ev.err = n.cc.c.MoveReplica(ctx, d.RangeId, from, to)
	ev.to = n.cc.now()
	return ev
}

// transfer moves a random range's leadership to another of its voters.
func (n *nemesis) transfer(rng *rand.Rand) chaosEvent {
	all, ok := n.ranges()
	if !ok {
		return chaosEvent{}
	}
	d := all[rng.IntN(len(all))]
	var others []uint64
	for _, v := range placement.VoterNodes(d) {
		if v != d.LeaderNodeId {
			others = append(others, v)
		}
	}
	if len(others) == 0 {
		return chaosEvent{}
	}
	to := others[rng.IntN(len(others))]
	ev := chaosEvent{kind: "transfer", what: fmt.Sprintf("transfer range %d's leadership to node %d", d.RangeId, to),
		keys: keysIn(d), from: n.cc.now()}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	_, ev.err = n.cc.c.TransferLeader(ctx, d.RangeId, to)
	ev.to = n.cc.now()
	return ev
}

// drain drains a random node, stops it, and starts it again: a rolling
// restart's step. The event covers the drain, and its keys are those of
// the ranges the node held; the restart is another event.
func (n *nemesis) drain(rng *rand.Rand) chaosEvent {
	n.mu.Lock()
	if n.draining != 0 {
		n.mu.Unlock()
		return chaosEvent{}
	}
	id := uint64(1 + rng.IntN(chaosNodes))
	n.draining = id
	n.mu.Unlock()
	defer func() {
		n.mu.Lock()
		n.draining = 0
		n.mu.Unlock()
	}()
	dc := n.cc.dc // only the one drain at a time touches its maps
	ev := chaosEvent{kind: "drain", what: fmt.Sprintf("drain node %d", id), from: n.cc.now()}
	if all, ok := n.ranges(); ok {
		for _, d := range all {
			if placement.Holds(d, id) {
				ev.keys = append(ev.keys, keysIn(d)...)
			}
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	var resp *kvpb.DrainResponse
	resp, ev.err = dc.admin(id).Drain(ctx, &kvpb.DrainRequest{TimeoutMillis: 3000})
	ev.to = n.cc.now()
	if ev.err == nil && resp.LeadersLeft > 0 {
		ev.err = fmt.Errorf("the drain left node %d leading %d ranges", id, resp.LeadersLeft)
	}
	dc.stop(id)
	restart := chaosEvent{kind: "restart", what: fmt.Sprintf("restart node %d", id), keys: ev.keys, from: n.cc.now()}
	time.Sleep(time.Duration(50+rng.IntN(300)) * time.Millisecond)
	dc.start(id)
	restart.to = n.cc.now()
	n.mu.Lock()
	n.events = append(n.events, restart)
	n.mu.Unlock()
	return ev
}

// report logs, by kind of operation, how many ran, how many placement
// refused or did not finish in time (by code), and the longest stretch
// without a successful operation on the changed range's keys during
// those that succeeded.
func (n *nemesis) report(t *testing.T) {
	ops := n.cc.w.History.Operations()
	type tally struct {
		ok      int
		refused map[codes.Code]int
		gap     time.Duration
		worst   string
	}
	byKind := map[string]*tally{}
	for _, ev := range n.events {
		tl := byKind[ev.kind]
		if tl == nil {
			tl = &tally{refused: map[codes.Code]int{}}
			byKind[ev.kind] = tl
		}
		if ev.err != nil {
			tl.refused[status.Code(ev.err)]++
			t.Logf("%s: %v", ev.what, ev.err)
			continue
		}
		tl.ok++
		if len(ev.keys) == 0 {
			continue
		}
		if gap, at := linz.LongestGap(ops, ev.keys, ev.from, ev.to); gap > tl.gap {
			tl.gap, tl.worst = gap, fmt.Sprintf("%s, from %v on the history's clock", ev.what, at.Round(time.Millisecond))
		}
	}
	for _, kind := range slices.Sorted(maps.Keys(byKind)) {
		tl := byKind[kind]
		t.Logf("%-8s %3d done, not done %v; longest stretch without a successful operation on the range's keys: %v (%s)",
			kind, tl.ok, tl.refused, tl.gap.Round(time.Millisecond), tl.worst)
	}
}
