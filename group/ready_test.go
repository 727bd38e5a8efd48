package group

import (
	"testing"

	pb "github.com/shardd/shardd/paxospb"
)

// TestSendFirstSurvivesACrash: the Ready contract lets a caller send
// SendFirst before it persists anything, and it may crash right after. So
// whatever a message in SendFirst claims about its sender's durable state
// must hold after a restart from what was persisted before that Ready: a
// promise or an acceptance in SendFirst would be forgotten, and a ballot
// the acceptor promised to refuse could then win it over.
func TestSendFirstSurvivesACrash(t *testing.T) {
	for _, tc := range []struct {
		name string
		in   pb.Message
	}{
		{"prepare", prepareMsg(3, 2, bal(5, 3), 0)},
		{"accept", acceptMsg(3, 2, bal(5, 3), 0, normal(1, "a"), normal(2, "b"))},
		{"heartbeat", heartbeatMsg(3, 2, bal(5, 3), 0, 1)},
	} {
		t.Run(tc.name, func(t *testing.T) {
			n := newNetwork(t, voters(1, 2, 3), nil)
			a := n.node(2)
			a.Step(tc.in)
			rd := a.Ready()
			if len(rd.SendFirst)+len(rd.Messages) != 1 {
				t.Fatalf("want one answer, got %v and %v", describeMsgs(rd.SendFirst), describeMsgs(rd.Messages))
			}
			early := rd.SendFirst
			n.crashAndRestart(2) // before persisting rd
			for _, m := range early {
				if m.Reject != pb.RejectNone {
					continue
				}
				// Each answer says that its sender promised m.Ballot, and
				// an acceptance that it holds the slots.
				if a.promised.Less(m.Ballot) {
					t.Errorf("%s left before the promise was persisted: restarted with promise %v", describeMsg(m), a.promised)
				}
				if m.Type != pb.MsgAccepted {
					continue
				}
				for s := m.Index; s <= m.LastIndex; s++ {
					if e := a.log.get(s); e == nil || e.Ballot != m.Ballot {
						t.Errorf("%s left before slot %d was persisted", describeMsg(m), s)
					}
				}
			}
		})
	}
}

// TestLeaderCountsOwnAcceptOnceDurable: a leader sends its accepts while it
// persists its own copy (SendFirst), but counts its own acceptance only at
// Advance. Counted earlier, a value would be chosen with one durable copy
// (2's) of the two a quorum of three needs: a leader crash would then lose
// it, and a new leader elected by 1 and 3 would fill its slot with
// something else.
func TestLeaderCountsOwnAcceptOnceDurable(t *testing.T) {
	n := newNetwork(t, voters(1, 2, 3), nil)
	n.elect(1)
	n.dropTo(3)
	l := n.node(1)
	n.propose(1, "x")
	s := l.log.last()
	rd := l.Ready()
	n.transmit(1, rd.SendFirst) // the accepts travel while 1 persists
	n.deliverMatching(isMsg(pb.MsgAccept, 1, 2))
	n.processReady(2)
	n.deliverMatching(isMsg(pb.MsgAccepted, 2, 1))
	if l.chosen >= s {
		t.Fatalf("slot %d chosen before the leader persisted its own acceptance (chosen %d)", s, l.chosen)
	}
	n.persist(1, rd)
	n.transmit(1, rd.Messages)
	n.apply(1, rd)
	l.Advance(rd)
	if l.chosen < s {
		t.Fatalf("slot %d not chosen once the leader's acceptance is durable (chosen %d)", s, l.chosen)
	}
}
