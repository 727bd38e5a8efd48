package group

import (
	"errors"
	"fmt"
	"slices"
	"testing"

	pb "github.com/shardd/shardd/paxospb"
)

// dropQueued removes the queued messages for which pred holds, as if the
// network lost them, and returns them.
func (n *network) dropQueued(pred func(pb.Message) bool) []pb.Message {
	var out []pb.Message
	n.queue = slices.DeleteFunc(n.queue, func(m pb.Message) bool {
		if pred(m) {
			out = append(out, m)
			return true
		}
		return false
	})
	return out
}

func isMsg(t pb.MessageType, from, to uint64) func(pb.Message) bool {
	return func(m pb.Message) bool { return m.Type == t && m.From == from && m.To == to }
}

// TestLateCommitDoesNotWedgeLeader is issue #9's defect 2. Leader 1 gets a
// membership change chosen with 2 alone; its catch-up MsgCommit to 3 is
// delayed; 3 wins the next election and recovers the change as pending;
// then the delayed commit arrives. A leader that let the commit move its
// chosen point past its pending change without the bookkeeping of
// maybeCommit would stop sending (the send limit is the pending slot) and
// drop every proposal, while its heartbeats kept its lease, and so the
// group, alive for good. testdata/late_commit.txt is the same scenario.
func TestLateCommitDoesNotWedgeLeader(t *testing.T) {
	n := newNetwork(t, voters(1, 2, 3), nil)
	n.elect(1)
	n.tickAll(2)
	l := n.node(1)
	n.dropTo(3)
	if err := l.ProposeConfChange(pb.ConfChange{Type: pb.ConfAddLearner, Replica: 4}); err != nil {
		t.Fatal(err)
	}
	n.stabilize()
	s := l.chosen
	if !isLearner(l.conf, 4) || n.node(3).chosen >= s {
		t.Fatalf("the change is not chosen at 1 (chosen %d, %+v) or 3 knows it (chosen %d)", s, l.conf, n.node(3).chosen)
	}
	n.heal()

	// A heartbeat round: 3's answer shows it lacks slot s, so 1 sends it a
	// MsgCommit, which the network holds.
	for range l.cfg.HeartbeatTicks {
		n.tick(1)
	}
	n.processReady(1)
	n.deliverMatching(isMsg(pb.MsgHeartbeat, 1, 3))
	n.processReady(3)
	n.deliverMatching(isMsg(pb.MsgHeartbeatResp, 3, 1))
	n.processReady(1)
	late := n.dropQueued(isMsg(pb.MsgCommit, 1, 3))
	if len(late) != 1 || late[0].LastIndex < s {
		t.Fatalf("want one MsgCommit of slot %d from 1 to 3, got %v", s, describeMsgs(late))
	}
	// 2 does not learn that the change was chosen either: a candidate
	// learns chosen values from its promisers, and would then not recover
	// the change as pending.
	n.dropQueued(isMsg(pb.MsgHeartbeat, 1, 2))
	n.stabilize()
	if n.node(2).chosen >= s {
		t.Fatalf("2 knows slot %d is chosen (chosen %d)", s, n.node(2).chosen)
	}

	// 1 hears nothing more and every lease runs out; 3 wins with 2's promise,
	// which carries the change: 3 recovers it as pending.
	n.dropTo(1)
	n.advanceClocks(testLease)
	c := n.node(3)
	c.campaign(pb.Ballot{})
	n.processReady(3)
	n.deliverMatching(isMsg(pb.MsgPrepare, 3, 2))
	n.processReady(2)
	n.deliverMatching(isMsg(pb.MsgPromise, 2, 3))
	if c.role != Leader || c.lead.pendingConf != s {
		t.Fatalf("3 is %v with pending change %d, want leader with pending change %d", c.role, c.lead.pendingConf, s)
	}
	// The delayed commit arrives before 2's acceptance of the change.
	n.deliver(late[0])
	n.stabilize()

	if err := c.Propose([]byte("after")); err != nil {
		t.Fatalf("Propose on the new leader after the late commit: %v", err)
	}
	n.waitFor("2 and 3 apply after", 20, func() bool {
		return slices.Contains(n.node(2).disk.app, "after") && slices.Contains(c.disk.app, "after")
	})
	if c.lead.pendingConf != 0 {
		t.Errorf("pending change %d still set at chosen %d", c.lead.pendingConf, c.chosen)
	}
	if err := c.ProposeConfChange(pb.ConfChange{Type: pb.ConfRemove, Replica: 4}); err != nil {
		t.Errorf("a further membership change: %v", err)
	}
}

// TestPromoteNeedsConfiguredLearner is issue #9's defect 5: a learner that
// never received its first snapshot reports chosen 0, which is within the
// pipeline window of a young group's chosen point. Promoted, it is a voter
// that knows no configuration, so it can never campaign; once the old
// voters are removed nobody can. A learner is promoted only once it holds
// the configuration that made it one and is caught up. The stall itself is
// in testdata/promote_empty_learner.txt.
func TestPromoteNeedsConfiguredLearner(t *testing.T) {
	n := newNetwork(t, voters(1, 2, 3), nil)
	n.elect(1)
	l := n.node(1)
	if err := l.ProposeConfChange(pb.ConfChange{Type: pb.ConfAddLearner, Replica: 4}); err != nil {
		t.Fatal(err)
	}
	n.addReplica(4, State{}).clock.now = l.clock.now
	n.dropTo(4)
	n.tickAll(4)
	if !isLearner(l.conf, 4) || l.chosen >= uint64(l.cfg.MaxInflight) {
		t.Fatalf("want 4 a learner and chosen %d below the window %d: %+v", l.chosen, l.cfg.MaxInflight, l.conf)
	}
	if err := l.ProposeConfChange(pb.ConfChange{Type: pb.ConfPromote, Replica: 4}); !errors.Is(err, ErrLearnerBehind) {
		t.Fatalf("promoting a learner that has nothing: %v, want ErrLearnerBehind", err)
	}
	// Its first snapshot teaches it the configuration.
	n.heal()
	f := n.node(4)
	n.waitFor("4 learns its configuration", 40, func() bool { return isLearner(f.conf, 4) && f.chosen == l.chosen })
	if err := l.ProposeConfChange(pb.ConfChange{Type: pb.ConfPromote, Replica: 4}); err != nil {
		t.Fatalf("promoting a learner that holds the configuration: %v", err)
	}
	n.waitFor("4 votes", 40, func() bool { return isVoter(f.conf, 4) })
}

// TestCandidateLearnsChosenFromPromises: voters 2 and 3 promote learner 1
// (chosen with both); 1 and 3 learn it, 2 does not; then 3 is lost. 2,
// whose chosen point still says voters {2, 3}, must win with 1's promise:
// 1 reports the promotion chosen, so only {1, 2, 3} decides the next
// slots. A candidate that required a majority of {2, 3} as well would wait
// for 3 forever (the simulator's wipes profile found that, seed 2417).
func TestCandidateLearnsChosenFromPromises(t *testing.T) {
	n := newNetwork(t, pb.Config{Voters: []uint64{2, 3}, Learners: []uint64{1}}, nil)
	n.elect(3)
	n.tickAll(2)
	n.propose(3, "x")
	n.stabilize()
	l := n.node(3)
	if err := l.ProposeConfChange(pb.ConfChange{Type: pb.ConfPromote, Replica: 1}); err != nil {
		t.Fatal(err)
	}
	// 2 accepts the promotion, but hears nothing after that.
	n.processReady(3)
	n.deliverMatching(isMsg(pb.MsgAccept, 3, 2))
	n.processReady(2)
	n.dropTo(2)
	n.stabilize()
	for range l.cfg.HeartbeatTicks { // 1 learns the chosen point
		n.tick(3)
	}
	n.stabilize()
	s := l.chosen
	if !isVoter(l.conf, 1) || !isVoter(n.node(1).conf, 1) || n.node(2).chosen >= s {
		t.Fatalf("promotion at %d: 3 %+v, 1 %+v, 2 chosen %d", s, l.conf, n.node(1).conf, n.node(2).chosen)
	}
	n.heal()
	n.isolate(3)
	n.advanceClocks(testLease)
	c := n.node(2)
	c.campaign(pb.Ballot{})
	n.waitFor("2 leads", 50, func() bool { return c.role == Leader })
	if !isVoter(c.conf, 1) {
		t.Fatalf("2 leads with configuration %+v", c.conf)
	}
}

// TestNoAcceptBeyondPendingChange: a leader sends nothing above a pending
// membership change until it is chosen (sendLimit), so that every slot in
// flight is decided by the configuration in force. Here 1 recovers an
// unchosen change at slot 1 in its election and appends its no-op at slot
// 2: the no-op waits.
func TestNoAcceptBeyondPendingChange(t *testing.T) {
	n := newNetwork(t, voters(1, 2, 3), nil)
	cc := pb.ConfChange{Type: pb.ConfAddLearner, Replica: 4}
	// 1 accepted a change from leader 1.2 that nobody else heard of.
	n.handle(acceptMsg(2, 1, bal(1, 2), 0, pb.Entry{Slot: 1, Type: pb.EntryConfChange, Data: cc.Marshal()}))
	l := n.node(1)
	l.campaign(pb.Ballot{})
	n.processReady(1)
	n.deliverMatching(func(m pb.Message) bool { return m.Type == pb.MsgPrepare })
	n.processReady(2)
	n.processReady(3)
	n.deliverMatching(func(m pb.Message) bool { return m.Type == pb.MsgPromise })
	if l.role != Leader || l.lead.pendingConf != 1 || l.log.last() != 2 {
		t.Fatalf("1 is %v with pending change %d and last slot %d, want leader with the change at 1 and its no-op at 2",
			l.role, l.lead.pendingConf, l.log.last())
	}
	n.processReady(1)
	for _, m := range n.queue {
		if m.Type == pb.MsgAccept && m.LastIndex > 1 {
			t.Errorf("sent past the pending change at slot 1: %s", describeMsg(m))
		}
	}
	n.stabilize()
	if l.chosen != 2 || !isLearner(l.conf, 4) {
		t.Fatalf("chosen %d with %+v, want the change and the no-op chosen", l.chosen, l.conf)
	}
}

// TestRemovedVoterPrepareIsRefused: 3 never heard that it was removed and
// campaigns as a voter; 2, which knows the removal is chosen, refuses it,
// and teaches it the chosen slots it lacks, the removal among them.
func TestRemovedVoterPrepareIsRefused(t *testing.T) {
	n := newNetwork(t, voters(1, 2, 3), nil)
	n.elect(1)
	n.tickAll(2)
	n.dropTo(3)
	if err := n.node(1).ProposeConfChange(pb.ConfChange{Type: pb.ConfRemove, Replica: 3}); err != nil {
		t.Fatal(err)
	}
	n.tickAll(4) // a heartbeat round tells 2 that the removal is chosen
	if f := n.node(2); isVoter(f.conf, 3) || !isVoter(n.node(3).conf, 3) {
		t.Fatalf("2 has %+v, 3 has %+v: want 3 removed, and 3 not knowing it", f.conf, n.node(3).conf)
	}
	n.heal()
	n.advanceClocks(testLease)
	out := n.handle(prepareMsg(3, 2, bal(9, 3), n.node(3).chosen))
	refused := slices.ContainsFunc(out, func(m pb.Message) bool { return m.Type == pb.MsgPromise && m.Reject == pb.RejectNotMember })
	commit := slices.IndexFunc(out, func(m pb.Message) bool { return m.Type == pb.MsgCommit })
	if len(out) != 2 || !refused || commit < 0 {
		t.Fatalf("prepare from removed replica 3: got %v, want reject=not-member and a commit", describeMsgs(out))
	}
	n.deliver(out[commit])
	n.stabilize()
	if c := n.node(3).conf; isMember(c, 3) {
		t.Fatalf("3 was taught the chosen slots but its configuration is %+v", c)
	}
}

// TestRemovedMemberLearnsItsRemoval: the leader tells the voter and the
// learner it removes that they were removed, with the chosen slots up to
// the change; a lost message is told again an election timeout later, and
// once the member has it, nothing more is sent. Without that, the
// removed replica would never apply its removal (the leader sends it
// nothing once the change is chosen), and its node could never drop it.
func TestRemovedMemberLearnsItsRemoval(t *testing.T) {
	n := newNetwork(t, voters(1, 2, 3), nil)
	n.elect(1)
	l := n.node(1)
	if err := l.ProposeConfChange(pb.ConfChange{Type: pb.ConfAddLearner, Replica: 4}); err != nil {
		t.Fatal(err)
	}
	n.stabilize()
	n.addReplica(4, State{})
	n.waitFor("4 gets a snapshot", 30, func() bool { return isLearner(n.node(4).conf, 4) })

	for _, id := range []uint64{3, 4} {
		if err := l.ProposeConfChange(pb.ConfChange{Type: pb.ConfRemove, Replica: id}); err != nil {
			t.Fatal(err)
		}
		n.stabilize()
		if c := n.node(id).conf; isMember(c, id) {
			t.Fatalf("removed %d still has itself in %+v", id, c)
		}
		if applied := n.node(id).applied; applied < l.chosen {
			t.Fatalf("removed %d applied %d, not its removal at %d", id, applied, l.chosen)
		}
	}

}

// TestRemovedMemberIsToldAgain: the word of its removal is lost, so the
// leader tells the removed member again an election timeout later (only
// the leader ticks here, so the member never campaigns and learns it the
// other way); once the member has it, or after departedTells tries at a
// member that never answers, the leader stops.
func TestRemovedMemberIsToldAgain(t *testing.T) {
	for _, answers := range []bool{true, false} {
		n := newNetwork(t, voters(1, 2, 3), nil)
		n.elect(1)
		n.tickAll(2) // 3 knows a chosen slot: it is told with entries
		l := n.node(1)
		n.dropTo(3)
		if err := l.ProposeConfChange(pb.ConfChange{Type: pb.ConfRemove, Replica: 3}); err != nil {
			t.Fatal(err)
		}
		n.stabilize()
		if isMember(l.conf, 3) || !isMember(n.node(3).conf, 3) {
			t.Fatalf("1 has %+v, 3 has %+v: want 3 removed, and 3 not knowing it", l.conf, n.node(3).conf)
		}
		if answers {
			n.heal()
		}
		tells := 0
		for range (departedTells + 2) * l.cfg.ElectionTicks {
			n.tick(1)
			n.processAll()
			for _, m := range n.queue {
				if m.Type == pb.MsgCommit && m.To == 3 {
					tells++
				}
			}
			n.stabilize()
		}
		switch {
		case answers && isMember(n.node(3).conf, 3):
			t.Fatalf("3 was told again but its configuration is %+v", n.node(3).conf)
		case answers && tells != 1:
			t.Errorf("3 was told %d more times, want once: it had the news after the first", tells)
		case !answers && tells != departedTells-1:
			t.Errorf("3, which never answers, was told %d more times, want %d", tells, departedTells-1)
		}
		if len(l.lead.departed) > 0 {
			t.Errorf("answers=%v: the leader still means to tell %+v", answers, l.lead.departed)
		}
	}
}

// TestRemovedEmptyLearnerGetsSnapshot: a learner removed before its first
// snapshot knows no configuration and learns no entry, so the leader
// tells it of its removal with a snapshot, whose configuration leaves it
// out: its caller can drop it rather than host an empty replica for good.
func TestRemovedEmptyLearnerGetsSnapshot(t *testing.T) {
	n := newNetwork(t, voters(1, 2, 3), nil)
	n.elect(1)
	n.tickAll(2)
	l := n.node(1)
	n.addReplica(4, State{})
	n.dropTo(4)
	for _, cc := range []pb.ConfChange{{Type: pb.ConfAddLearner, Replica: 4}, {Type: pb.ConfRemove, Replica: 4}} {
		if err := l.ProposeConfChange(cc); err != nil {
			t.Fatal(err)
		}
		n.stabilize()
	}
	n.heal()
	var told []pb.Message
	for range 2 * l.cfg.ElectionTicks {
		n.tick(1)
		n.processAll()
		told = append(told, n.dropQueued(func(m pb.Message) bool { return m.To == 4 })...)
		n.stabilize()
	}
	if len(told) == 0 || told[0].Type != pb.MsgSnapshot || isMember(told[0].Snapshot.Meta.Config, 4) {
		t.Fatalf("removed empty learner 4 was told %v, want a snapshot that leaves it out", describeMsgs(told))
	}
	n.deliver(told[0])
	n.stabilize()
	if c := n.node(4).conf; len(c.Voters) == 0 || isMember(c, 4) {
		t.Fatalf("4 has configuration %+v after the snapshot, want one without it", c)
	}
}

// TestBusyGroupSendsLearnerSnapshot: a learner added to a group that
// proposes every tick gets its snapshot. Its answers to accepts say it
// knows no configuration (RejectNotMember); a busy leader renews its lease
// with its accepts and sends no heartbeat, so if only the answer to a
// heartbeat offered the snapshot, the learner would wait for a lull.
func TestBusyGroupSendsLearnerSnapshot(t *testing.T) {
	n := newNetwork(t, voters(1, 2, 3), nil)
	n.elect(1)
	l := n.node(1)
	n.propose(1, "before")
	n.stabilize()
	n.addReplica(4, State{})
	if err := l.ProposeConfChange(pb.ConfChange{Type: pb.ConfAddLearner, Replica: 4}); err != nil {
		t.Fatal(err)
	}
	n.stabilize()
	for i := range 5 * l.cfg.ElectionTicks {
		if isLearner(n.node(4).conf, 4) {
			return
		}
		n.propose(1, fmt.Sprintf("busy%d", i))
		n.tickAll(1)
	}
	t.Fatalf("learner 4 of a busy group never got a snapshot: %+v", n.node(4).Status())
}
