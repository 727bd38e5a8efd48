package transport

import (
	"cmp"
	"slices"
	"sync"
	"time"
)

// PeerStatus is the state of the outgoing link to one peer node, for an
// operator's status: is the stream up, why did it last fail, and what
// waits to be sent.
type PeerStatus struct {
	NodeID uint64
	// Addr is the address the stream was last dialed at, "" before the
	// first dial.
	Addr string
	// Connected: the message stream is open.
	Connected bool
	// LostAt is when the stream broke, if it has not been opened again
	// since; zero otherwise (see Lost).
	LostAt time.Time
	// LastError is the last failed dial or broken stream, and LastErrorAt
	// when it happened; nil if there was none. It stays after the link
	// recovers, so that a flapping link shows why it flaps.
	LastError   error
	LastErrorAt time.Time
	// QueuedMessages and QueuedBytes are queued or in flight to the peer,
	// as in Stats.
	QueuedMessages, QueuedBytes int
}

// peerHealth is what PeerStatus reports beyond the queue. The sender
// goroutine writes it; PeerStatuses reads it from any goroutine.
type peerHealth struct {
	mu        sync.Mutex
	addr      string
	connected bool
	err       error
	errAt     time.Time
}

// up records that a stream to addr opened.
func (h *peerHealth) up(addr string) {
	h.mu.Lock()
	h.addr, h.connected = addr, true
	h.mu.Unlock()
}

// down records that a dial or a stream failed with err.
func (h *peerHealth) down(err error) {
	h.mu.Lock()
	h.connected = false
	if err != nil {
		h.err, h.errAt = err, time.Now()
	}
	h.mu.Unlock()
}

// PeerStatuses returns the state of the link to every peer this node has
// sent to, sorted by node id.
func (t *Transport) PeerStatuses() []PeerStatus {
	peers := *t.peers.Load()
	out := make([]PeerStatus, 0, len(peers))
	for id, p := range peers {
		s := PeerStatus{NodeID: id}
		p.health.mu.Lock()
		s.Addr, s.Connected, s.LastError, s.LastErrorAt = p.health.addr, p.health.connected, p.health.err, p.health.errAt
		p.health.mu.Unlock()
		if ns := p.lostAt.Load(); ns != 0 {
			s.LostAt = time.Unix(0, ns)
		}
		p.mu.Lock()
		s.QueuedMessages, s.QueuedBytes = len(p.mu.msgs)+p.mu.inflight, p.mu.bytes
		p.mu.Unlock()
		out = append(out, s)
	}
	slices.SortFunc(out, func(a, b PeerStatus) int { return cmp.Compare(a.NodeID, b.NodeID) })
	return out
}
