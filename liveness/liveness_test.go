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
	a.Handle(pb.Message{Type: pb.MsgSupportResponse, From: 2, Seq: 1, Epoch: e1})
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
