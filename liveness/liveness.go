// Package liveness implements node-to-node support, shared by every Paxos
// group hosted on a node pair (the shape of CockroachDB's store liveness).
//
// Each node asks each peer for support with a MsgSupportRequest carrying
// its clock reading; a peer that answers supports it, at some epoch, for
// SupportDuration from when the request arrived, on the peer's clock. The
// requester counts that support from when it sent the request, minus
// MaxClockDrift, so its view always expires first. Support that lapses is
// withdrawn for good: the next grant uses a higher epoch, so anything
// promised under the old epoch (a quiesced group's lease) stays dead.
// Epochs never repeat for a peer within one incarnation of this node, even
// across RemovePeer and AddPeer, and each incarnation's epochs start above
// every earlier one's.
//
// A response counts only for the life of this node that sent its request:
// it echoes the requester's incarnation, and a response from an earlier
// life (delayed across a restart) is dropped, because its request time was
// read on that life's clock.
//
// Groups use it to stay idle: a quiesced group sends no heartbeats of its
// own, and its leader's lease lasts as long as a quorum of its followers'
// nodes keep supporting the leader's node at the epochs they acknowledged.
// Idle cost is one request and one response per node pair per interval,
// whatever the number of groups.
package liveness

import (
	"slices"
	"sync"

	pb "github.com/shardd/shardd/paxospb"
)

// Clock is a monotonic clock in nanoseconds.
type Clock interface{ Now() int64 }

// Config configures a node's liveness.
type Config struct {
	// NodeID is this node's id.
	NodeID uint64
	// Incarnation distinguishes this process from every earlier one of the
	// same node; the node persists and bumps it at start. Epochs granted by
	// this incarnation start above every epoch an earlier one granted.
	Incarnation uint64
	// SupportDuration is how long, in nanoseconds of Clock, a node supports
	// a peer after hearing from it. It must not exceed the groups'
	// LeaseDuration: a restarted node remembers no support it gave, and
	// its groups refuse Phase 1 for one LeaseDuration after the restart.
	SupportDuration int64
	// Interval is how often, in nanoseconds, a node asks each peer for
	// support. A few intervals should fit in SupportDuration.
	Interval int64
	// MaxClockDrift is subtracted from support counted on our clock.
	MaxClockDrift int64
	Clock         Clock
}

type peer struct {
	// Support we give the peer: at forEpoch until forUntil (our clock),
	// to its incarnation.
	forEpoch       uint64
	forUntil       int64
	forIncarnation uint64
	// Support the peer gives us: at fromEpoch until fromUntil (our clock).
	fromEpoch uint64
	fromUntil int64
	// reported is set once a lapse (either way) was reported by Tick, so
	// it is reported once.
	forLapsed, fromLapsed bool
	// regained is set when support from the peer resumed after a lapse,
	// until Tick reports it.
	regained bool
	// restarted: the peer restarted while we supported it; the next Tick
	// reports the old epoch's support as lapsed.
	restarted bool
	// removed: RemovePeer was called. We no longer ask the peer for
	// support nor renew ours, but support already granted runs out at its
	// time. The entry is kept, so that the peer's epochs never repeat.
	removed bool
}

// Liveness is one node's support state. It is safe for concurrent use:
// groups query it from every scheduler worker.
type Liveness struct {
	cfg      Config
	mu       sync.Mutex
	peers    map[uint64]*peer
	lastSent int64
	sent     bool
}

// New returns a node's liveness with no peers.
func New(cfg Config) *Liveness {
	return &Liveness{cfg: cfg, peers: make(map[uint64]*peer)}
}

// AddPeer starts asking id for support, and granting it, again if id was
// removed: epochs continue from where they were.
func (l *Liveness) AddPeer(id uint64) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.peerLocked(id).removed = false
}

// RemovePeer stops asking id for support and stops renewing the support
// we give it. Support already granted runs out at its time, not now: a
// group led from id may hold a lease that counts on followers here staying
// bound until then, and unbinding them early could let two leases overlap.
// Tick reports the end of that support as usual.
func (l *Liveness) RemovePeer(id uint64) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if p := l.peers[id]; p != nil {
		p.removed = true
	}
}

// peerLocked returns id's entry, creating it if id was never heard of.
// Entries are never deleted: the epoch counter of a peer lives in its entry.
func (l *Liveness) peerLocked(id uint64) *peer {
	p := l.peers[id]
	if p == nil {
		p = &peer{forEpoch: l.cfg.Incarnation << 32, forLapsed: true, fromLapsed: true}
		l.peers[id] = p
	}
	return p
}

// Lapses lists the peers whose support changed for the worse since the
// previous Tick: groups bound to them must wake up.
type Lapses struct {
	// NotSupporting: we stopped supporting these peers (they went quiet),
	// so groups they lead here must start their election timers.
	NotSupporting []uint64
	// NotSupported: these peers stopped supporting us, so leases of groups
	// we lead that counted on them are gone.
	NotSupported []uint64
	// Regained: these peers support us again after a lapse; they may have
	// missed what their groups chose meanwhile.
	Regained []uint64
}

// Tick returns the support requests due now (one per peer per Interval)
// and the support that lapsed since the last call.
func (l *Liveness) Tick() ([]pb.Message, Lapses) {
	l.mu.Lock()
	defer l.mu.Unlock()
	now := l.cfg.Clock.Now()
	var lapses Lapses
	ids := make([]uint64, 0, len(l.peers))
	for id := range l.peers {
		ids = append(ids, id)
	}
	slices.Sort(ids) // deterministic output for the simulation
	for _, id := range ids {
		p := l.peers[id]
		if (!p.forLapsed && now >= p.forUntil) || p.restarted {
			p.forLapsed = now >= p.forUntil
			p.restarted = false
			lapses.NotSupporting = append(lapses.NotSupporting, id)
		}
		if !p.fromLapsed && now >= p.fromUntil {
			p.fromLapsed = true
			lapses.NotSupported = append(lapses.NotSupported, id)
		}
		if p.regained {
			p.regained = false
			lapses.Regained = append(lapses.Regained, id)
		}
	}
	if l.sent && now-l.lastSent < l.cfg.Interval {
		return nil, lapses
	}
	l.sent, l.lastSent = true, now
	msgs := make([]pb.Message, 0, len(ids))
	for _, id := range ids {
		if l.peers[id].removed {
			continue
		}
		msgs = append(msgs, pb.Message{Type: pb.MsgSupportRequest, From: l.cfg.NodeID, To: id, Seq: uint64(now), Epoch: l.cfg.Incarnation})
	}
	return msgs, lapses
}

// Handle processes a support message and returns the response to send, if
// any.
func (l *Liveness) Handle(m pb.Message) (pb.Message, bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	now := l.cfg.Clock.Now()
	p := l.peerLocked(m.From)
	switch m.Type {
	case pb.MsgSupportRequest:
		if p.removed || m.Epoch < p.forIncarnation {
			// Removed: its support only runs out. An older incarnation: a
			// request delayed across the peer's restart, which must not end
			// the support its current life holds.
			return pb.Message{}, false
		}
		if now >= p.forUntil || m.Epoch != p.forIncarnation {
			// Support lapsed (or never started), or the peer restarted and
			// forgot what it held: whatever was promised under the old
			// epoch must stay dead, so grant a new one.
			if !p.forLapsed && m.Epoch != p.forIncarnation {
				p.restarted = true
			}
			p.forEpoch++
			p.forIncarnation = m.Epoch
		}
		p.forUntil = now + l.cfg.SupportDuration
		p.forLapsed = false
		return pb.Message{Type: pb.MsgSupportResponse, From: l.cfg.NodeID, To: m.From, Seq: m.Seq, Index: m.Epoch, Epoch: p.forEpoch}, true
	case pb.MsgSupportResponse:
		if m.Index != l.cfg.Incarnation || !l.sent || int64(m.Seq) > l.lastSent {
			// Not a response to a request of this life: its request time
			// is on another clock (or on none), so the support it reports
			// cannot be placed on ours. Support is counted from a request's
			// send time, never later than our latest request's.
			return pb.Message{}, false
		}
		until := int64(m.Seq) + l.cfg.SupportDuration - l.cfg.MaxClockDrift
		switch {
		case m.Epoch > p.fromEpoch:
			p.fromEpoch, p.fromUntil = m.Epoch, until
		case m.Epoch == p.fromEpoch:
			p.fromUntil = max(p.fromUntil, until)
		default:
			return pb.Message{}, false // a response from before a newer epoch
		}
		if now < p.fromUntil && p.fromLapsed {
			p.fromLapsed = false
			p.regained = true
		}
	}
	return pb.Message{}, false
}

// SupportFor reports the epoch at which this node supports id and until
// when, on this node's clock. Support is current only while now < until.
func (l *Liveness) SupportFor(id uint64) (epoch uint64, until int64) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if p := l.peers[id]; p != nil {
		return p.forEpoch, p.forUntil
	}
	return 0, 0
}

// SupportFrom reports the epoch at which id supports this node and until
// when, measured conservatively on this node's clock.
func (l *Liveness) SupportFrom(id uint64) (epoch uint64, until int64) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if p := l.peers[id]; p != nil {
		return p.fromEpoch, p.fromUntil
	}
	return 0, 0
}
