package liveness

import (
	"testing"

	pb "github.com/shardd/shardd/paxospb"
)

type clock struct{ t int64 }

func (c *clock) Now() int64 { return c.t }

const (
	sd    = 1000
	drift = 100
)

func pair(t *testing.T) (a, b *Liveness, ca, cb *clock) {
	ca, cb = &clock{t: 10_000}, &clock{t: 50_000}
	a = New(Config{NodeID: 1, Incarnation: 1, SupportDuration: sd, Interval: 100, MaxClockDrift: drift, Clock: ca})
	b = New(Config{NodeID: 2, Incarnation: 1, SupportDuration: sd, Interval: 100, MaxClockDrift: drift, Clock: cb})
	a.AddPeer(2)
	b.AddPeer(1)
	return
}

// exchange has a ask b for support and delivers the answer.
func exchange(t *testing.T, a, b *Liveness) {
	t.Helper()
	msgs, _ := a.Tick()
	deliver(t, a, b, msgs)
}

func deliver(t *testing.T, a, b *Liveness, msgs []pb.Message) {
	t.Helper()
	if len(msgs) == 0 {
		t.Fatal("no support request to deliver")
	}
	for _, m := range msgs {
		resp, ok := b.Handle(m)
		if !ok || resp.Type != pb.MsgSupportResponse {
			t.Fatalf("no response to %+v", m)
		}
		a.Handle(resp)
	}
}

func TestSupportIsConservativeOnTheRequester(t *testing.T) {
	a, b, ca, cb := pair(t)
	exchange(t, a, b)
	eFor, untilFor := b.SupportFor(1)
	eFrom, untilFrom := a.SupportFrom(2)
	if eFor == 0 || eFor != eFrom {
		t.Fatalf("epochs: b supports a at %d, a sees %d", eFor, eFrom)
	}
	if untilFor != cb.t+sd || untilFrom != ca.t+sd-drift {
		t.Fatalf("until: supporter %d (want %d), requester %d (want %d)", untilFor, cb.t+sd, untilFrom, ca.t+sd-drift)
	}
}

// Support counts from when the request was sent, not from when the answer
// arrived: the supporter's promise started somewhere in between, so only
// the send time is sure to be before it.
func TestSupportCountsFromTheRequest(t *testing.T) {
	a, b, ca, cb := pair(t)
	sent := ca.t
	msgs, _ := a.Tick()
	ca.t += 300
	cb.t += 150
	deliver(t, a, b, msgs)
	if _, until := a.SupportFrom(2); until != sent+sd-drift {
		t.Fatalf("support until %d, want the request's send time %d + %d - %d", until, sent, sd, drift)
	}
}

// Support from a peer that resumes after a lapse is reported once: the
// groups we lead with a replica there must catch it up.
func TestRegainedSupportIsReportedOnce(t *testing.T) {
	a, b, ca, cb := pair(t)
	exchange(t, a, b)
	a.Tick() // reports the first support as regained
	ca.t += 2 * sd
	cb.t += 2 * sd
	msgs, l := a.Tick()
	if len(l.NotSupported) != 1 || len(l.Regained) != 0 {
		t.Fatalf("lapse: %+v", l)
	}
	deliver(t, a, b, msgs)
	if _, l := a.Tick(); len(l.Regained) != 1 || l.Regained[0] != 2 {
		t.Fatalf("support regained from 2 was not reported: %+v", l)
	}
	if _, l := a.Tick(); len(l.Regained) != 0 {
		t.Fatalf("regained support reported twice: %+v", l)
	}
}

func TestLapsedSupportIsNeverRenewedAtTheSameEpoch(t *testing.T) {
	a, b, ca, cb := pair(t)
	exchange(t, a, b)
	e1, _ := b.SupportFor(1)
	// Renewed in time: same epoch.
	ca.t += 500
	cb.t += 500
	exchange(t, a, b)
	if e, _ := b.SupportFor(1); e != e1 {
		t.Fatalf("renewal in time changed the epoch: %d -> %d", e1, e)
	}
	// Lapsed: a new epoch, and Tick reports the lapse once on each side.
	ca.t += 2 * sd
	cb.t += 2 * sd
	if _, l := b.Tick(); len(l.NotSupporting) != 1 || l.NotSupporting[0] != 1 {
		t.Fatalf("b's lapse not reported: %+v", l)
	}
	if _, l := b.Tick(); len(l.NotSupporting) != 0 {
		t.Fatalf("lapse reported twice: %+v", l)
	}
	msgs, l := a.Tick()
	if len(l.NotSupported) != 1 {
		t.Fatalf("a's lapse not reported: %+v", l)
	}
	deliver(t, a, b, msgs)
	e2, _ := b.SupportFor(1)
	if e2 <= e1 {
		t.Fatalf("support resumed at epoch %d after %d lapsed", e2, e1)
	}
	if e, _ := a.SupportFrom(2); e != e2 {
		t.Fatalf("a sees epoch %d, b grants %d", e, e2)
	}
}

func TestRestartedPeerGetsANewEpoch(t *testing.T) {
	a, b, ca, _ := pair(t)
	exchange(t, a, b)
	e1, _ := b.SupportFor(1)
	// a restarts within the support duration, as a new incarnation.
	a = New(Config{NodeID: 1, Incarnation: 2, SupportDuration: sd, Interval: 100, MaxClockDrift: drift, Clock: ca})
	a.AddPeer(2)
	exchange(t, a, b)
	if e, _ := b.SupportFor(1); e <= e1 {
		t.Fatalf("support for a restarted peer stayed at epoch %d (was %d)", e, e1)
	}
	if _, l := b.Tick(); len(l.NotSupporting) != 1 {
		t.Fatalf("the old epoch's end was not reported: %+v", l)
	}
}

func TestEpochsOutliveRestartsOfTheSupporter(t *testing.T) {
	a, b, ca, cb := pair(t)
	exchange(t, a, b)
	e1, _ := b.SupportFor(1)
	ca.t += 100
	b = New(Config{NodeID: 2, Incarnation: 2, SupportDuration: sd, Interval: 100, MaxClockDrift: drift, Clock: cb})
	b.AddPeer(1)
	exchange(t, a, b)
	if e, _ := b.SupportFor(1); e <= e1 {
		t.Fatalf("a restarted supporter granted epoch %d, not above %d", e, e1)
	}
	// A stale response from the old incarnation doesn't roll a back.
	eNow, _ := a.SupportFrom(2)
	a.Handle(pb.Message{Type: pb.MsgSupportResponse, From: 2, Seq: 1, Index: 1, Epoch: e1})
	if e, _ := a.SupportFrom(2); e != eNow {
		t.Fatalf("stale response moved the epoch to %d", e)
	}
}

func TestTickPacesRequests(t *testing.T) {
	a, _, ca, _ := pair(t)
	if m, _ := a.Tick(); len(m) != 1 {
		t.Fatalf("first tick sent %d requests", len(m))
	}
	ca.t += 50
	if m, _ := a.Tick(); len(m) != 0 {
		t.Fatalf("tick within the interval sent %d requests", len(m))
	}
	ca.t += 50
	if m, _ := a.Tick(); len(m) != 1 {
		t.Fatalf("tick after the interval sent %d requests", len(m))
	}
}

// A node must keep supporting a peer it removed until the support it
// already granted runs out: a follower on our node bound to a group led
// from there stays bound, because that leader still counts on the lease.
// Removal only stops renewing it.
func TestRemovedPeerKeepsSupportUntilItRunsOut(t *testing.T) {
	a, b, ca, cb := pair(t)
	exchange(t, a, b)
	e1, until1 := b.SupportFor(1)
	b.RemovePeer(1)
	if e, until := b.SupportFor(1); e != e1 || until != until1 {
		t.Fatalf("removal changed support for 1 from (%d, %d) to (%d, %d)", e1, until1, e, until)
	}
	ca.t += 500
	cb.t += 500
	msgs, _ := a.Tick()
	if len(msgs) != 1 {
		t.Fatalf("a sent %d requests", len(msgs))
	}
	if resp, ok := b.Handle(msgs[0]); ok {
		t.Fatalf("b renewed support for a removed peer: %+v", resp)
	}
	if e, until := b.SupportFor(1); e != e1 || until != until1 {
		t.Fatalf("support for a removed peer moved to (%d, %d)", e, until)
	}
	if msgs, l := b.Tick(); len(msgs) != 0 || len(l.NotSupporting) != 0 {
		t.Fatalf("b asked a removed peer for support (%v) or reported a lapse early (%+v)", msgs, l)
	}
	cb.t = until1
	if _, l := b.Tick(); len(l.NotSupporting) != 1 || l.NotSupporting[0] != 1 {
		t.Fatalf("the end of support for a removed peer was not reported: %+v", l)
	}
}

// Epochs granted to a peer never repeat within an incarnation, even when
// the peer is removed and added again: a follower bound at the old epoch
// must not find itself bound again.
func TestReaddedPeerNeverGetsAnOldEpoch(t *testing.T) {
	a, b, ca, cb := pair(t)
	exchange(t, a, b)
	e1, _ := b.SupportFor(1)
	b.RemovePeer(1)
	ca.t += 2 * sd
	cb.t += 2 * sd
	b.Tick()
	b.AddPeer(1)
	exchange(t, a, b)
	if e2, _ := b.SupportFor(1); e2 <= e1 {
		t.Fatalf("support for a re-added peer at epoch %d, not above %d", e2, e1)
	}
}

// A response to a request sent by an earlier life of this node measures
// support on that life's clock, which says nothing about this one's: it
// must not count, whether that clock was ahead of ours or behind.
func TestResponseToAnEarlierLifeIsRejected(t *testing.T) {
	for _, tc := range []struct {
		name               string
		oldClock, newClock int64
	}{
		{"old clock ahead", 3_600_000, 10_000},
		{"old clock behind", 10_000, 10_500},
	} {
		t.Run(tc.name, func(t *testing.T) {
			a, b, ca, _ := pair(t)
			ca.t = tc.oldClock
			old, _ := a.Tick()
			resp, ok := b.Handle(old[0])
			if !ok {
				t.Fatal("no response")
			}
			ca.t = tc.newClock
			a = New(Config{NodeID: 1, Incarnation: 2, SupportDuration: sd, Interval: 100, MaxClockDrift: drift, Clock: ca})
			a.AddPeer(2)
			a.Tick() // this life's request, still in flight
			a.Handle(resp)
			if e, until := a.SupportFrom(2); e != 0 || until != 0 {
				t.Fatalf("a response to the previous life set support to (%d, %d) at %d", e, until, ca.t)
			}
		})
	}
}

// Support counts from when the request was sent: a response whose request
// time is after our latest request is not one of ours, and must not push
// support beyond what our requests allow.
func TestResponseCannotOutrunTheRequest(t *testing.T) {
	a, b, ca, _ := pair(t)
	exchange(t, a, b)
	e, until := a.SupportFrom(2)
	a.Handle(pb.Message{Type: pb.MsgSupportResponse, From: 2, To: 1, Seq: uint64(ca.t + 10*sd), Epoch: e, Index: 1})
	if e2, until2 := a.SupportFrom(2); e2 != e || until2 != until {
		t.Fatalf("a response for a request never sent moved support from (%d, %d) to (%d, %d)", e, until, e2, until2)
	}
}

// A request delayed from an earlier life of the peer must not end the
// support its current life holds, nor be answered.
func TestRequestFromAnEarlierLifeIsIgnored(t *testing.T) {
	a, b, ca, _ := pair(t)
	old, _ := a.Tick()
	a = New(Config{NodeID: 1, Incarnation: 2, SupportDuration: sd, Interval: 100, MaxClockDrift: drift, Clock: ca})
	a.AddPeer(2)
	exchange(t, a, b)
	e2, until2 := b.SupportFor(1)
	if resp, ok := b.Handle(old[0]); ok {
		t.Fatalf("b answered a request from a's previous life: %+v", resp)
	}
	if e, until := b.SupportFor(1); e != e2 || until != until2 {
		t.Fatalf("a request from a's previous life moved support from (%d, %d) to (%d, %d)", e2, until2, e, until)
	}
	if _, l := b.Tick(); len(l.NotSupporting) != 0 {
		t.Fatalf("a request from a's previous life ended support: %+v", l)
	}
}
