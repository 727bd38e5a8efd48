package group

import (
	"fmt"
	"testing"

	pb "github.com/shardd/shardd/paxospb"
)

// TestLeaderChosenShowsLag checks what an operator's status relies on: a
// replica cut off from its leader learns, from the leader's first
// heartbeat after the cut heals, how far the group has chosen (before it
// has the values), and reports chosen and applied behind that point until
// it catches up.
func TestLeaderChosenShowsLag(t *testing.T) {
	n := newNetwork(t, voters(1, 2, 3), nil)
	n.elect(1)
	n.tickAll(2)
	l, f := n.node(1), n.node(3)
	n.isolate(3)
	for i := range 5 {
		n.propose(1, fmt.Sprintf("v%d", i))
		n.stabilize()
	}
	if st := f.Status(); st.LeaderChosen >= l.Chosen() || st.LeaderChosen != st.Chosen {
		t.Fatalf("cut-off replica reports %+v; the leader chose up to %d", st, l.Chosen())
	}
	if got := l.Status().LeaderChosen; got != l.Chosen() {
		t.Errorf("leader reports LeaderChosen %d, its chosen point is %d", got, l.Chosen())
	}

	n.heal()
	n.queue = nil
	for range 2 * n.node(1).cfg.HeartbeatTicks {
		n.tick(1)
	}
	for n.processReady(1) {
	}
	if n.deliverMatching(func(m pb.Message) bool { return m.To == 3 && m.Type == pb.MsgHeartbeat }) == 0 {
		t.Fatalf("the leader sent replica 3 no heartbeat; queue: %v", describeMsgs(n.queue))
	}
	st := f.Status()
	if st.LeaderChosen != l.Chosen() || st.Chosen >= st.LeaderChosen || st.Applied >= st.LeaderChosen {
		t.Fatalf("after the leader's heartbeat replica 3 reports %+v; want LeaderChosen %d above its chosen and applied points", st, l.Chosen())
	}

	n.stabilize()
	n.waitFor("replica 3 catches up", 20, func() bool { return f.Applied() == l.Chosen() })
	if st := f.Status(); st.LeaderChosen != st.Chosen || st.Applied != st.Chosen {
		t.Errorf("caught-up replica reports %+v", st)
	}
}

// TestLaggingFollowerCatchesUpUnderLoad: a follower that fell behind must
// be caught up while the leader stays busy. A busy leader sends no
// heartbeat round, since its accepts renew the lease, and only heartbeat
// answers used to trigger a catch-up: a follower with a gap below the
// chosen point accepted every new slot but stayed stuck at its chosen
// point as long as writes flowed (found by TestKillAtEachStep: a node
// restarted under load kept a range at an old generation for 20 s).
func TestLaggingFollowerCatchesUpUnderLoad(t *testing.T) {
	n := newNetwork(t, voters(1, 2, 3), nil)
	n.elect(1)
	l, f := n.node(1), n.node(3)
	n.isolate(3)
	for i := range 20 {
		n.propose(1, fmt.Sprintf("a%d", i))
		n.stabilize()
	}
	n.heal()
	behind := l.Chosen()
	if f.Chosen() >= behind {
		t.Fatalf("3 is at %d, the leader at %d: the test proves nothing", f.Chosen(), behind)
	}
	// A proposal every tick, for five heartbeat intervals.
	for i := range 5 * l.cfg.HeartbeatTicks {
		n.propose(1, fmt.Sprintf("b%d", i))
		n.tickAll(1)
	}
	if f.Chosen() < behind {
		t.Fatalf("3 is still at chosen %d under load, below the leader's %d of five heartbeats ago\n%s", f.Chosen(), behind, n.status())
	}
}

// TestTellChosen: a leader's followers learn a value chosen only with its
// next accept or heartbeat; TellChosen tells them at once (a split's
// right half waits on them), and on a follower it sends nothing.
func TestTellChosen(t *testing.T) {
	n := newNetwork(t, voters(1, 2, 3), nil)
	n.elect(1)
	n.tickAll(2)
	l := n.node(1)
	n.propose(1, "split")
	n.stabilize()
	for _, id := range []uint64{2, 3} {
		if f := n.node(id); f.Chosen() >= l.Chosen() {
			t.Fatalf("replica %d knows chosen %d before being told, the leader %d: the test proves nothing", id, f.Chosen(), l.Chosen())
		}
	}
	n.node(2).TellChosen()
	if n.node(2).HasReady() {
		t.Fatal("a follower's TellChosen made it send something")
	}
	l.TellChosen()
	n.stabilize()
	for _, id := range []uint64{2, 3} {
		if f := n.node(id); f.Chosen() != l.Chosen() {
			t.Errorf("replica %d knows chosen %d after TellChosen, the leader %d", id, f.Chosen(), l.Chosen())
		}
	}
}
