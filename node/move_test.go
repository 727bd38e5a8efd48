package node

import (
	"context"
	"fmt"
	"maps"
	"math/rand/v2"
	"slices"
	"testing"
	"time"

	"github.com/cockroachdb/pebble/v2/vfs"
	"github.com/shardd/shardd/engine"
	"github.com/shardd/shardd/kvpb"
	pb "github.com/shardd/shardd/paxospb"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"
)

// mover drives replica moves as placement would: one ChangeReplicas step
// at a time through the range's leader, re-sending a step until it is
// done (the steps are idempotent). It dials every node up front and
// reads only its own map of nodes, so that a copy can drive a move on
// another goroutine while the test crashes and restarts nodes (which
// keep their addresses).
type mover struct {
	t      testing.TB
	nodes  map[uint64]*Node
	admins map[uint64]kvpb.AdminClient
	// timeout bounds one step, retries included.
	timeout time.Duration
}

func newMover(c *testCluster) *mover {
	m := &mover{t: c.t, nodes: c.nodes, admins: map[uint64]kvpb.AdminClient{}, timeout: 30 * time.Second}
	for id, n := range c.nodes {
		conn, err := grpc.NewClient(n.Addr(), grpc.WithTransportCredentials(insecure.NewCredentials()))
		if err != nil {
			c.t.Fatal(err)
		}
		c.conns = append(c.conns, conn)
		m.admins[id] = kvpb.NewAdminClient(conn)
	}
	return m
}

// detached returns a mover with its own copy of the map of nodes.
func (m *mover) detached() *mover {
	d := *m
	d.nodes = maps.Clone(m.nodes)
	return &d
}

// leader returns the node leading range rangeID, waiting for one.
func (m *mover) leader(ctx context.Context, rangeID uint64) (uint64, error) {
	for {
		for id, n := range m.nodes {
			if r := n.replica(rangeID); r != nil && r.leader.Load() == id {
				return id, nil
			}
		}
		select {
		case <-ctx.Done():
			return 0, fmt.Errorf("no leader of range %d: %w", rangeID, ctx.Err())
		case <-time.After(5 * time.Millisecond):
		}
	}
}

// tryStep makes one change of range rangeID through its leader and
// returns the descriptor once it is applied there. It re-sends the step
// after any error but InvalidArgument (the leader moved, the learner is
// behind, a change is in flight, a crash lost the answer), and moves the
// leadership off a node it is asked to remove.
func (m *mover) tryStep(ctx context.Context, rangeID uint64, change kvpb.ReplicaChange, node uint64) (*kvpb.RangeDescriptor, error) {
	for {
		lead, err := m.leader(ctx, rangeID)
		if err != nil {
			return nil, err
		}
		if change == kvpb.ReplicaChange_REMOVE_REPLICA && lead == node {
			err = m.transferFrom(ctx, rangeID, lead)
		} else {
			cctx, cancel := context.WithTimeout(ctx, 3*time.Second)
			var resp *kvpb.ChangeReplicasResponse
			resp, err = m.admins[lead].ChangeReplicas(cctx, &kvpb.ChangeReplicasRequest{RangeId: rangeID, Change: change, NodeId: node})
			cancel()
			if err == nil {
				return resp.Descriptor_, nil
			}
			if status.Code(err) == codes.InvalidArgument {
				return nil, err
			}
		}
		select {
		case <-ctx.Done():
			return nil, fmt.Errorf("%v of node %d in range %d: %w (last: %v)", change, node, rangeID, ctx.Err(), err)
		case <-time.After(20 * time.Millisecond):
		}
	}
}

// step is tryStep bounded by the mover's timeout; it fails the test if
// the step is not done by then.
func (m *mover) step(rangeID uint64, change kvpb.ReplicaChange, node uint64) *kvpb.RangeDescriptor {
	m.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), m.timeout)
	defer cancel()
	d, err := m.tryStep(ctx, rangeID, change, node)
	if err != nil {
		m.t.Fatal(err)
	}
	return d
}

// transferFrom asks node from to hand the leadership of range rangeID to
// another voter, and waits (briefly) until another node leads.
func (m *mover) transferFrom(ctx context.Context, rangeID, from uint64) error {
	r := m.nodes[from].replica(rangeID)
	if r == nil {
		return nil
	}
	var to uint64
	for _, id := range votersOf(r.desc.Load()).Voters {
		if id != from && m.nodes[id] != nil {
			to = id
			break
		}
	}
	cctx, cancel := context.WithTimeout(ctx, 3*time.Second)
	defer cancel()
	if _, err := m.admins[from].TransferLeader(cctx, &kvpb.TransferLeaderRequest{RangeId: rangeID, TargetNodeId: to}); err != nil {
		return err
	}
	for {
		if lead, err := m.leader(cctx, rangeID); err != nil || lead != from {
			return err
		}
		select {
		case <-cctx.Done():
			return cctx.Err()
		case <-time.After(10 * time.Millisecond):
		}
	}
}

// tryMove moves range rangeID's replica from node from to node to, step
// by step: add a learner, promote it once caught up, move the leadership
// off from if it leads, remove from. Like placement resuming a move it
// recorded, it starts at the first step whose effect does not hold in the
// leader's descriptor. It returns the final descriptor.
func (m *mover) tryMove(ctx context.Context, rangeID, from, to uint64) (*kvpb.RangeDescriptor, error) {
	lead, err := m.leader(ctx, rangeID)
	if err != nil {
		return nil, err
	}
	conf := votersOf(m.nodes[lead].replica(rangeID).desc.Load())
	type step struct {
		change kvpb.ReplicaChange
		node   uint64
	}
	steps := []step{{kvpb.ReplicaChange_ADD_LEARNER, to}, {kvpb.ReplicaChange_PROMOTE_LEARNER, to}, {kvpb.ReplicaChange_REMOVE_REPLICA, from}}
	switch {
	case slices.Contains(conf.Voters, to):
		steps = steps[2:]
	case slices.Contains(conf.Learners, to):
		steps = steps[1:]
	}
	var d *kvpb.RangeDescriptor
	for _, s := range steps {
		sctx, cancel := context.WithTimeout(ctx, m.timeout)
		d, err = m.tryStep(sctx, rangeID, s.change, s.node)
		cancel()
		if err != nil {
			return nil, err
		}
	}
	if !slices.Contains(votersOf(d).Voters, to) || slices.ContainsFunc(d.Replicas, func(r *kvpb.ReplicaDescriptor) bool { return r.NodeId == from }) {
		return nil, fmt.Errorf("range %d after moving %d to %d: %v", rangeID, from, to, d)
	}
	return d, nil
}

// move is tryMove that fails the test on error.
func (m *mover) move(rangeID, from, to uint64) *kvpb.RangeDescriptor {
	m.t.Helper()
	d, err := m.tryMove(context.Background(), rangeID, from, to)
	if err != nil {
		m.t.Fatal(err)
	}
	return d
}

// awaitGone waits until node id no longer hosts range rangeID.
func (c *testCluster) awaitGone(id, rangeID uint64) {
	c.t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for c.nodes[id].replica(rangeID) != nil {
		if time.Now().After(deadline) {
			c.t.Fatalf("node %d still hosts range %d", id, rangeID)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// checkRemoved checks that node id's store holds nothing of range d that
// left it: no record of its group (log, hard state, applied point, meta,
// range-local records), no user data in its span, and a tombstone at
// d's generation or later.
func (c *testCluster) checkRemoved(id uint64, d *kvpb.RangeDescriptor) {
	c.t.Helper()
	e := c.nodes[id].eng
	g := engine.GroupID(d.RangeId)
	st, err := e.LoadGroup(g)
	if err != nil || st.Exists() {
		c.t.Errorf("node %d still holds range %d's group records: %+v (%v)", id, d.RangeId, st, err)
	}
	if err := e.ScanRangeLocal(g, nil, func(k, _ []byte) bool {
		c.t.Errorf("node %d still holds range %d's range-local record %x", id, d.RangeId, k)
		return false
	}); err != nil {
		c.t.Fatal(err)
	}
	if err := e.Scan(d.StartKey, nilIfEmpty(d.EndKey), 1, func(k, _ []byte) bool {
		c.t.Errorf("node %d still holds range %d's key %q", id, d.RangeId, k)
		return false
	}); err != nil {
		c.t.Fatal(err)
	}
	ts, err := e.ReplicaTombstones()
	if err != nil || ts[g] < d.Generation {
		c.t.Errorf("node %d: range %d's tombstone at %d (%v), want at least %d", id, d.RangeId, ts[g], err, d.Generation)
	}
}

// addNode starts node id on a fresh crash-clone filesystem and introduces
// it to the others.
func (cc *crashCluster) addNode(id uint64) {
	cc.t.Helper()
	cc.mu.Lock()
	cc.fs[id] = vfs.NewCrashableMem()
	cc.mu.Unlock()
	cc.dirs[id] = cc.t.TempDir()
	cc.start(id, "127.0.0.1:0")
	n := cc.nodes[id]
	cc.mu.Lock()
	cc.addrs[id] = n.Addr()
	cc.running[id] = n
	cc.mu.Unlock()
	for other, m := range cc.nodes {
		m.SetPeer(id, n.Addr())
		n.SetPeer(other, m.Addr())
	}
}

// TestMoveReplicaUnderLoad moves two ranges' replicas from node 1 to a
// fourth node while clients get, put and compare-and-swap through the
// router: one range that node 1 leads (its leadership moves first), one
// that it does not. The history must check out, every replica of every
// range must hold the same data and sessions, and node 1 must hold
// nothing of the moved ranges, while it keeps the range it still hosts.
func TestMoveReplicaUnderLoad(t *testing.T) {
	forEachCrashSeed(t, 2, 1, func(t *testing.T, seed uint64) {
		cc := newCrashCluster(t, crashRanges(false), 0)
		cc.addNode(4)
		w := cc.startLoad(seed, 8)
		m := newMover(cc.testCluster)
		time.Sleep(100 * time.Millisecond)
		moved := map[uint64]*kvpb.RangeDescriptor{}
		for _, id := range []uint64{1, 2} { // led by node 1 and node 2
			start := time.Now()
			moved[id] = m.move(id, 1, 4)
			t.Logf("moved range %d in %v", id, time.Since(start))
			t.Logf("range %d moved: %v", id, moved[id])
			time.Sleep(100 * time.Millisecond)
		}
		for id, d := range moved {
			cc.awaitGone(1, id)
			cc.checkRemoved(1, d)
		}
		time.Sleep(200 * time.Millisecond)
		cc.ranges = cc.currentRanges()
		cc.finish(w)
		for id := range moved {
			cc.checkRemoved(1, moved[id])
		}
		if r := cc.nodes[1].replica(3); r == nil || cc.nodes[1].replicaFor([]byte("c0")) != r {
			t.Fatal("node 1 lost range 3, which it still hosts")
		}
	})
}

// TestMovedReplicaComesBack removes a replica and adds it back: in
// between, the leader's messages reach the node (its removal notices, a
// heartbeat of a leader that missed nothing) and must not create an empty
// replica that would sit there for ever; the re-added learner gets the
// data, which is all there again once it is a voter.
func TestMovedReplicaComesBack(t *testing.T) {
	c := newTestCluster(t, 3, splitRanges(1, 3), nil)
	m := newMover(c)
	for _, k := range []string{"a", "m", "z"} {
		put(t, c, 1, k, "v-"+k)
	}
	victim := c.leaderFor(1)%3 + 1
	d := m.step(1, kvpb.ReplicaChange_REMOVE_REPLICA, victim)
	c.awaitGone(victim, 1)
	c.checkRemoved(victim, d)
	put(t, c, 1, "b", "while away")
	// A leader that still thinks the node a member would send it this.
	lead := c.leaderFor(1)
	c.nodes[victim].HandleMessages(lead, []pb.Message{{Type: pb.MsgHeartbeat, Group: 1, From: lead, To: victim,
		Ballot: pb.Ballot{Round: 1 << 20, Node: lead}}})
	time.Sleep(200 * time.Millisecond) // the departed notices too
	if c.nodes[victim].replica(1) != nil {
		t.Fatalf("a message recreated range 1 on node %d, which it left", victim)
	}
	m.step(1, kvpb.ReplicaChange_ADD_LEARNER, victim)
	back := m.step(1, kvpb.ReplicaChange_PROMOTE_LEARNER, victim)
	if !slices.Contains(votersOf(back).Voters, victim) || back.Generation <= d.Generation {
		t.Fatalf("range 1 after adding node %d back: %v", victim, back)
	}
	for _, k := range []string{"a", "b", "m", "z"} {
		deadline := time.Now().Add(10 * time.Second)
		for {
			v, ok, err := c.nodes[victim].eng.Get([]byte(k))
			if err != nil {
				t.Fatal(err)
			}
			if ok {
				if want := map[string]string{"b": "while away"}[k]; (want != "" && string(v) != want) || (want == "" && string(v) != "v-"+k) {
					t.Fatalf("node %d: %s = %q after coming back", victim, k, v)
				}
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("node %d never got %s back", victim, k)
			}
			time.Sleep(10 * time.Millisecond)
		}
	}
}

// TestChangeReplicasRefusesBadRequests: each bad request gets its error
// and changes nothing; a retried step that already applied answers with
// the descriptor.
func TestChangeReplicasRefusesBadRequests(t *testing.T) {
	ranges := splitRanges(1, 3)
	ranges[0].LeaderNodeId = 1
	c := newTestCluster(t, 4, ranges, nil)
	m := newMover(c)
	lead := c.leaderFor(1)
	follower := lead%3 + 1
	gen := c.nodes[lead].replica(1).desc.Load().Generation
	req := func(rangeID uint64, change kvpb.ReplicaChange, node uint64) *kvpb.ChangeReplicasRequest {
		return &kvpb.ChangeReplicasRequest{RangeId: rangeID, Change: change, NodeId: node}
	}
	stale := req(1, kvpb.ReplicaChange_ADD_LEARNER, 4)
	stale.ExpectedGeneration = gen + 5
	cases := []struct {
		name   string
		node   uint64
		req    *kvpb.ChangeReplicasRequest
		code   codes.Code
		detail string // the type of the error's detail, if any
	}{
		{"no range", lead, req(0, kvpb.ReplicaChange_ADD_LEARNER, 4), codes.InvalidArgument, ""},
		{"no node", lead, req(1, kvpb.ReplicaChange_ADD_LEARNER, 0), codes.InvalidArgument, ""},
		{"no change", lead, req(1, kvpb.ReplicaChange_REPLICA_CHANGE_UNSPECIFIED, 4), codes.InvalidArgument, ""},
		{"unknown range", lead, req(7, kvpb.ReplicaChange_ADD_LEARNER, 4), codes.FailedPrecondition, "RangeMismatch"},
		{"stale generation", lead, stale, codes.FailedPrecondition, "RangeMismatch"},
		{"not leader", follower, req(1, kvpb.ReplicaChange_ADD_LEARNER, 4), codes.FailedPrecondition, "NotLeader"},
		{"add a voter", lead, req(1, kvpb.ReplicaChange_ADD_LEARNER, follower), codes.FailedPrecondition, ""},
		{"promote a non-learner", lead, req(1, kvpb.ReplicaChange_PROMOTE_LEARNER, 4), codes.FailedPrecondition, ""},
		{"remove the leader", lead, req(1, kvpb.ReplicaChange_REMOVE_REPLICA, lead), codes.FailedPrecondition, ""},
	}
	for _, tc := range cases {
		_, err := m.admins[tc.node].ChangeReplicas(ctx(t), tc.req)
		if status.Code(err) != tc.code || detailType(err) != tc.detail {
			t.Errorf("%s: got %v (detail %q), want %v with detail %q", tc.name, err, detailType(err), tc.code, tc.detail)
		}
	}
	if d := c.nodes[lead].replica(1).desc.Load(); d.Generation != gen || c.nodes[4].replica(1) != nil {
		t.Fatalf("refused changes changed range 1: %v", d)
	}

	// Node 4 as a learner with its snapshot held back: not caught up.
	c.nodes[lead].trans.Faults().Cut(4)
	added := m.step(1, kvpb.ReplicaChange_ADD_LEARNER, 4)
	if added.Generation != gen+1 || !slices.Contains(votersOf(added).Learners, 4) {
		t.Fatalf("after adding learner 4: %v", added)
	}
	_, err := m.admins[lead].ChangeReplicas(ctx(t), req(1, kvpb.ReplicaChange_PROMOTE_LEARNER, 4))
	if status.Code(err) != codes.Unavailable {
		t.Errorf("promoting a learner that has nothing: %v, want Unavailable", err)
	}
	// A retry of the applied step, even with the generation it was sent
	// with, reports it done and changes nothing.
	again := req(1, kvpb.ReplicaChange_ADD_LEARNER, 4)
	again.ExpectedGeneration = gen
	resp, err := m.admins[lead].ChangeReplicas(ctx(t), again)
	if err != nil || resp.Descriptor_.Generation != gen+1 {
		t.Errorf("retried add of learner 4: %v, %v", resp, err)
	}
	c.nodes[lead].trans.Faults().Heal(4)
	m.step(1, kvpb.ReplicaChange_PROMOTE_LEARNER, 4)
	put(t, c, 1, "k", "after")

	// One change at a time: with the leader cut off from two of the four
	// voters, its removal of one cannot be chosen, and a second change is
	// refused while the first is in flight.
	lead = c.leaderFor(1)
	others := slices.DeleteFunc([]uint64{1, 2, 3, 4}, func(id uint64) bool { return id == lead })
	for _, id := range others[:2] {
		c.nodes[lead].trans.Faults().Cut(id)
	}
	first := make(chan error, 1)
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		_, err := m.admins[lead].ChangeReplicas(ctx, req(1, kvpb.ReplicaChange_REMOVE_REPLICA, others[0]))
		first <- err
	}()
	ln, lr := c.nodes[lead], c.nodes[lead].replica(1)
	deadline := time.Now().Add(2 * time.Second)
	for waiting := 0; waiting == 0; {
		if time.Now().After(deadline) {
			t.Fatal("the first change was never proposed")
		}
		ch := make(chan int, 1)
		ln.onWorker(lr, func() { ch <- len(lr.confWaiters) })
		waiting = <-ch
	}
	_, err = m.admins[lead].ChangeReplicas(ctx(t), req(1, kvpb.ReplicaChange_REMOVE_REPLICA, others[2]))
	if status.Code(err) != codes.FailedPrecondition || detailType(err) != "" {
		t.Errorf("a second change while one is in flight: %v, want FailedPrecondition", err)
	}
	c.nodes[lead].trans.Faults().HealAll()
	t.Logf("the change in flight: %v", <-first)
	if d := m.step(1, kvpb.ReplicaChange_REMOVE_REPLICA, others[0]); len(d.Replicas) != 3 {
		t.Fatalf("after removing node %d: %v", others[0], d)
	}
}

// detailType names the type of a status error's first detail.
func detailType(err error) string {
	st, _ := status.FromError(err)
	for _, d := range st.Details() {
		switch d.(type) {
		case *kvpb.RangeMismatch:
			return "RangeMismatch"
		case *kvpb.NotLeader:
			return "NotLeader"
		default:
			return fmt.Sprintf("%T", d)
		}
	}
	return ""
}

// moveCrashes are the crashes TestCrashDuringMove tries, by seed: which
// node crashes (the source, node 1, which leads the range at first; the
// target, node 4; or whichever node leads when it applies the step) while
// it applies which step. The first ones are the riskiest: the batch that
// deletes the removed replica, the snapshot ingest of the new one.
var moveCrashes = []struct {
	victim string
	step   pb.ConfChangeType
}{
	{"source", pb.ConfRemove}, {"target", pb.ConfAddLearner}, {"leader", pb.ConfPromote}, {"leader", pb.ConfRemove},
	{"target", pb.ConfPromote}, {"source", pb.ConfAddLearner}, {"target", pb.ConfRemove}, {"source", pb.ConfPromote},
}

// TestCrashDuringMove crashes the source, the target or the leader at a
// random point of the cycle that applies a step of a move of range 1 from
// node 1 to node 4 (the target's first step: while it ingests its
// snapshot), keeping a random share of its unsynced writes, while clients
// write; restarts it on the crash clone; and drives the move on from the
// first step whose effect does not hold, as placement resumes a move it
// recorded. A step re-sent after its effect holds is reported done. The
// history, the replicas and node 1's store must check out as in
// TestMoveReplicaUnderLoad.
func TestCrashDuringMove(t *testing.T) {
	forEachCrashSeed(t, 4, 2, func(t *testing.T, seed uint64) {
		rng := rand.New(rand.NewPCG(seed, 3))
		crash := moveCrashes[(seed-1)%uint64(len(moveCrashes))]
		cc := newCrashCluster(t, crashRanges(false), 0)
		cc.addNode(4)
		w := cc.startLoad(seed, 8)
		m := newMover(cc.testCluster)
		const rangeID = 1 // led by node 1, the source
		time.Sleep(100 * time.Millisecond)
		if crash.victim == "target" && crash.step == pb.ConfAddLearner {
			cc.arm(randomPlan(rng, 4, []crashPoint{crashBeforeIngest, crashAfterIngest}, 1))
		} else {
			plan := randomPlan(rng, 0, cyclePoints, 1)
			cc.mu.Lock()
			cc.beforeApply = func(id, g uint64, entries []pb.Entry) {
				if g != rangeID || !hasConfChange(entries, crash.step) {
					return
				}
				cc.mu.Lock()
				defer cc.mu.Unlock()
				switch crash.victim {
				case "source":
					plan.node = 1
				case "target":
					plan.node = 4
				default:
					if r := cc.running[id].replica(g); r != nil && r.leader.Load() == id {
						plan.node = id
					}
				}
				if plan.node != id {
					return
				}
				cc.beforeApply = nil
				cc.plan = &plan // fires at its point of this very cycle
				t.Logf("crash plan: node %d at %v, keeping %d%% of unsynced writes", plan.node, plan.point, plan.unsyncedPct)
			}
			cc.mu.Unlock()
		}
		t.Logf("crashing the %s while it applies %v", crash.victim, crash.step)
		// The first attempt, on its own goroutine with its own map of
		// nodes, is cut short by the crash or answered.
		ctx, cancel := context.WithCancel(context.Background())
		attempt := make(chan error, 1)
		go func() {
			_, err := m.detached().tryMove(ctx, rangeID, 1, 4)
			attempt <- err
		}()
		cr := cc.awaitCrash(30 * time.Second)
		cancel()
		t.Logf("first attempt: %v", <-attempt)
		time.Sleep(time.Duration(rng.IntN(200)) * time.Millisecond)
		cc.restart(cr.plan.node, cr.clone)
		d := m.move(rangeID, 1, 4)
		cc.awaitGone(1, rangeID)
		time.Sleep(300 * time.Millisecond)
		cc.ranges = cc.currentRanges()
		cc.finish(w)
		cc.checkRemoved(1, d)
	})
}

// hasConfChange reports whether entries hold a configuration change of
// type t.
func hasConfChange(entries []pb.Entry, t pb.ConfChangeType) bool {
	for _, e := range entries {
		var cc pb.ConfChange
		if e.Type == pb.EntryConfChange && cc.Unmarshal(e.Data) == nil && cc.Type == t {
			return true
		}
	}
	return false
}
