package group

import (
	"math"
	"reflect"
	"testing"

	pb "github.com/shardd/shardd/paxospb"
)

// The transcripts testdata/probe_*.txt show probes at work; these tests
// check what a transcript can't see.

// TestProbeChangesNothing: answering a probe, refused or granted, leaves
// the acceptor as it was: no promise, no lease, no new round to campaign
// with, no election timer reset, and a quiesced group stays asleep, so
// that a node that flaps and probes every election timeout keeps none of
// its peers' groups awake.
func TestProbeChangesNothing(t *testing.T) {
	n, live := boundFollower(t) // 2 is bound to leader 1.1, and quiesced
	f := n.node(2)
	f.electionElapsed = 3
	answer := func(want pb.RejectReason) {
		t.Helper()
		before, elapsed, timeout, maxRound := f.Status(), f.electionElapsed, f.electionTimeout, f.maxRound
		resp := only(t, n.handle(pb.Message{Type: pb.MsgProbe, From: 3, To: 2, Ballot: bal(2, 3)}))
		if resp.Type != pb.MsgProbeResp || resp.Reject != want {
			t.Fatalf("2 answers %s, want a probe-resp with reject %v", describeMsg(resp), want)
		}
		if after := f.Status(); !reflect.DeepEqual(after, before) {
			t.Fatalf("the probe changed 2:\n before %+v\n after  %+v", before, after)
		}
		if f.electionElapsed != elapsed || f.electionTimeout != timeout || f.maxRound != maxRound {
			t.Fatalf("the probe moved 2's election timer (%d/%d, was %d/%d) or its round (%d, was %d)",
				f.electionElapsed, f.electionTimeout, elapsed, timeout, f.maxRound, maxRound)
		}
	}
	answer(pb.RejectLease)
	live[1] = support{6, math.MaxInt64} // the binding is over
	answer(pb.RejectNone)
	if !f.Quiesced() {
		t.Fatal("a granted probe woke 2")
	}
}

// TestProbeNeedsOwnAcceptor: a probe ends, and its grants are worth
// nothing, once the prober's own acceptor would refuse its ballot: here it
// promised another candidate's higher one meanwhile. Campaigning then
// would only duel with that candidate.
func TestProbeNeedsOwnAcceptor(t *testing.T) {
	n := newNetwork(t, voters(1, 2, 3), nil)
	r := n.node(3)
	r.startProbe()
	for n.processReady(3) {
	}
	probes := n.take(3)
	if len(probes) != 2 || probes[0].Type != pb.MsgProbe {
		t.Fatalf("3 sent %v, want two probes", describeMsgs(probes))
	}
	b := probes[0].Ballot
	if p := only(t, n.handle(prepareMsg(2, 3, pb.Ballot{Round: b.Round + 1, Node: 2}, 0))); p.Reject != pb.RejectNone {
		t.Fatalf("3 answers %s, want a promise", describeMsg(p))
	}
	if out := n.handle(pb.Message{Type: pb.MsgProbeResp, From: 1, To: 3, Ballot: b}); len(out) != 0 || r.role != Follower {
		t.Fatalf("3 campaigned on a grant for a ballot it would refuse itself: sent %v, role %v", describeMsgs(out), r.role)
	}
}

// TestProbingFollowerHearsLeader: a leader's heartbeat ends a probe, and
// the grants of the probe it ended don't start a campaign later.
func TestProbingFollowerHearsLeader(t *testing.T) {
	n := newNetwork(t, voters(1, 2, 3, 4, 5), nil)
	r := n.node(3)
	r.startProbe()
	for n.processReady(3) {
	}
	b := n.take(3)[0].Ballot
	n.handle(pb.Message{Type: pb.MsgHeartbeat, From: 1, To: 3, Ballot: bal(1, 1), Seq: 1})
	for _, from := range []uint64{2, 4, 5} {
		if out := n.handle(pb.Message{Type: pb.MsgProbeResp, From: from, To: 3, Ballot: b}); len(out) != 0 {
			t.Fatalf("3 acts on a grant of a probe its leader ended: %v", describeMsgs(out))
		}
	}
	if r.role != Follower || r.promised != bal(1, 1) {
		t.Fatalf("3 is %v with promise %v, want a follower of 1.1", r.role, r.promised)
	}
}

// TestCampaignHonorsOwnLease: Campaign skips the probe, but not the lease:
// a replica whose own acceptor is bound to another leader does nothing,
// or its promise to itself would break the lease it granted. (The probe
// of an election timeout checks the same through its own answer, so only
// Campaign relies on canCampaign's lease check.)
func TestCampaignHonorsOwnLease(t *testing.T) {
	n := newNetwork(t, voters(1, 2, 3), nil)
	n.elect(1)
	n.tickAll(2) // a heartbeat round renews every lease
	n.isolate(1)
	r := n.node(3)
	r.Campaign()
	n.processAll()
	if out := n.take(3); len(out) != 0 || r.role != Follower || r.promised != bal(1, 1) {
		t.Fatalf("3, bound by 1.1's lease, campaigned: %v, role %v, promised %v", describeMsgs(out), r.role, r.promised)
	}
	n.advanceClocks(testLease)
	r.Campaign()
	if r.role != Candidate {
		t.Fatalf("3 did not campaign once the lease was over: role %v", r.role)
	}
}
