package group

import (
	"slices"
	"testing"

	pb "github.com/shardd/shardd/paxospb"
)

// TestWipedVoterDoesNotVote: voter 2 promises 3's ballot, which wins with
// it, then loses its disk and comes back empty under the same id. Replica
// 1 never heard of 3's ballot and campaigns with a lower one. 3 refuses
// it, so 1 could win only with 2's promise, which would break the quorum
// 3 won with: two leaders, each free to choose its own values. The empty
// replica refuses to promise, and its acceptances don't count either,
// until the leader's snapshot gives it a configuration again.
// testdata/wiped_voter.txt is the same scenario.
func TestWipedVoterDoesNotVote(t *testing.T) {
	n := newNetwork(t, voters(1, 2, 3), nil)
	n.elect(1)
	n.propose(1, "a")
	n.tickAll(2)
	// 1 hears nothing while 3 takes over with 2's promise.
	n.dropTo(1)
	n.advanceClocks(testLease)
	n.elect(3)
	l := n.node(3)
	n.wipe(2)
	n.heal()
	n.cut[[2]uint64{1, 3}], n.cut[[2]uint64{3, 1}] = true, true

	c := n.node(1)
	c.campaign(pb.Ballot{})
	if !c.ballot.Less(l.ballot) {
		t.Fatalf("1's ballot %v is not below 3's %v: the test proves nothing", c.ballot, l.ballot)
	}
	n.processReady(1)
	n.deliverMatching(isMsg(pb.MsgPrepare, 1, 2))
	n.processReady(2)
	p := only(t, n.take(2))
	if p.Type != pb.MsgPromise || p.Reject != pb.RejectNotMember {
		t.Errorf("the wiped replica answers %s, want reject=not-member", describeMsg(p))
	}
	n.deliver(p)
	n.stabilize()
	if c.role == Leader {
		t.Fatalf("1 won at %v with the wiped replica's promise while 3 leads at %v", c.ballot, l.ballot)
	}

	// 3's accepts reach 2, which stores them but is not counted: the
	// value is chosen only once 2 has installed 3's snapshot and accepted
	// it again.
	f := n.node(2)
	n.propose(3, "x")
	n.stabilize()
	x := l.log.last()
	if e := f.log.get(x); e == nil || entryValue(*e) != "x" {
		t.Errorf("the wiped replica did not store slot %d", x)
	}
	if len(f.installed) != 1 {
		t.Fatalf("the wiped replica installed %d snapshots, want the leader's", len(f.installed))
	}
	if l.chosen >= x {
		t.Fatalf("slot %d chosen by 3 with the acceptance of a replica that had no state", x)
	}
	n.waitFor("2 and 3 apply x", 20, func() bool {
		return slices.Contains(f.disk.app, "x") && slices.Contains(l.disk.app, "x")
	})
	if !slices.Equal(f.disk.app, l.disk.app) {
		t.Errorf("2 applied %v, 3 %v", f.disk.app, l.disk.app)
	}
}

// TestPrepareFromNonVoterIsRefused: only voters campaign, so an acceptor
// refuses a prepare from a learner or a stranger, and a learner never
// campaigns.
func TestPrepareFromNonVoterIsRefused(t *testing.T) {
	n := newNetwork(t, pb.Config{Voters: []uint64{1, 2, 3}, Learners: []uint64{4}}, nil)
	for _, from := range []uint64{4, 9} {
		p := only(t, n.handle(prepareMsg(from, 2, bal(5, from), 0)))
		if p.Reject != pb.RejectNotMember {
			t.Errorf("prepare from %d: got %s, want reject=not-member", from, describeMsg(p))
		}
	}
	if p := n.node(2).disk.hard.Promised; !p.IsZero() {
		t.Errorf("durable promise %v after refusing every prepare", p)
	}
	if n.node(4).canCampaign() {
		t.Errorf("learner 4 may campaign")
	}
}
