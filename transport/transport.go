package transport

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"sync/atomic"

	"google.golang.org/grpc"

	"github.com/shardd/shardd/kvpb"
	pb "github.com/shardd/shardd/paxospb"
)

// Handler receives what peers send. HandleMessages and HandleSnapshot are
// called from the transport's receive goroutines, one per incoming stream,
// so calls for different peers (and different snapshots) run concurrently,
// while the calls for one message stream are sequential and in the order
// the peer sent them. (When a peer reconnects, its old stream may still
// deliver a last frame while the new one starts, so two calls for the same
// peer can briefly overlap.) A Handler must not block long in
// HandleMessages: while it runs, nothing more is read from that peer's
// stream, and gRPC flow control eventually stalls the peer's sender (which
// then drops rather than blocks). The usual implementation hands the
// messages to the node's scheduler and returns.
type Handler interface {
	// HandleMessages receives the messages of one frame from node from.
	// msgs and everything it references belong to the Handler.
	HandleMessages(from uint64, msgs []pb.Message)

	// HandleSnapshot consumes one snapshot stream from node from: header is
	// the MsgSnapshot message (with Group set) and next returns successive
	// data chunks until io.EOF, or the error that broke the stream. A chunk
	// is valid until the next call of next. Returning an error aborts the
	// stream and the sender's SendSnapshot returns it (as a gRPC status;
	// return a status error to choose the code). Returning nil before
	// io.EOF accepts the snapshot without reading the rest.
	HandleSnapshot(from uint64, header pb.Message, next func() ([]byte, error)) error
}

// Resolver maps a node id to the address of its gRPC server; membership
// implements it. Addr is called when a destination is first used and before
// every dial, from any goroutine, so it must be safe for concurrent use and
// cheap. A changed address takes effect at the next dial.
type Resolver interface {
	Addr(nodeID uint64) (addr string, ok bool)
}

// ErrClosed is returned by SendSnapshot after Close.
var ErrClosed = errors.New("transport: closed")

// Transport carries the Paxos messages of every group on this node to every
// peer node, over one long-lived gRPC stream per peer, and receives theirs.
// See the package documentation for the design. All methods are safe for
// concurrent use.
type Transport struct {
	cfg      Config
	resolver Resolver
	handler  Handler
	faults   *Faults
	stats    counters
	metrics  transportMetrics

	// ctx is canceled by Close; every stream the transport opens derives
	// from it, so that Close interrupts sends blocked on flow control.
	ctx    context.Context
	cancel context.CancelFunc
	// done is closed by Close; server handlers select on it.
	done chan struct{}

	// peers maps a destination node id to its queue. It is copied on
	// write under mu, so that Send finds an existing peer without a lock.
	peers atomic.Pointer[map[uint64]*peer]

	mu     sync.Mutex
	closed bool
	// wg counts the goroutines Close waits for: senders, their stream
	// readers, server receive loops and running SendSnapshot calls. It is
	// only incremented under mu while !closed, or by a goroutine it
	// already counts, so Add never races with Close's Wait.
	wg sync.WaitGroup
}

// New returns a Transport for the node cfg.NodeID. It starts nothing: a
// destination's sender goroutine and connection start with the first
// message to it, and messages are received once Register has added the
// transport to the node's gRPC server.
func New(cfg Config, r Resolver, h Handler) (*Transport, error) {
	cfg.EnsureDefaults()
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if r == nil || h == nil {
		return nil, errors.New("transport: a Resolver and a Handler are required")
	}
	t := &Transport{
		cfg:      cfg,
		resolver: r,
		handler:  h,
		faults:   newFaults(cfg.FaultSeed),
		done:     make(chan struct{}),
	}
	t.ctx, t.cancel = context.WithCancel(context.Background())
	t.peers.Store(&map[uint64]*peer{})
	if err := t.newMetrics(cfg.MeterProvider); err != nil {
		return nil, fmt.Errorf("transport: metrics: %w", err)
	}
	return t, nil
}

// Register adds the transport's Transport service to the node's gRPC
// server, which must then serve on the address the peers' Resolvers
// return. Register may be called again with a new server after the old one
// stopped. The server's MaxRecvMsgSize (4 MiB unless set) bounds the
// largest single message and snapshot chunk it accepts.
func (t *Transport) Register(s grpc.ServiceRegistrar) {
	kvpb.RegisterTransportServer(s, &server{t: t})
}

// Faults returns the transport's fault injector, a test hook. Without
// faults set it costs one uncontended mutex per batch sent.
func (t *Transport) Faults() *Faults { return t.faults }

// Send queues m for the node m.To and returns at once: it never blocks on
// the network, because the caller is a scheduler worker serving many
// groups. It returns false, and counts the drop in Stats, when m.To is not
// a known peer or its queue is full; Paxos retransmits, so a dropped
// message costs latency, not safety. The transport takes ownership of m's
// slices (Entries and their Data, Snapshot, Trace): the caller must not
// modify them afterwards. Messages to one destination travel in the order
// Send accepted them; those that arrive, arrive in that order, except that
// across a reconnect a frame of the old stream may be handled after one of
// the new. Paxos assumes an asynchronous network that loses and reorders,
// so neither costs safety.
func (t *Transport) Send(m pb.Message) bool {
	p, r := t.peer(m.To)
	if p == nil {
		t.stats.drop(r, 1)
		return false
	}
	cost := messageCost(&m)
	p.mu.Lock()
	r, wake := p.enqueueLocked(&m, cost)
	p.mu.Unlock()
	if wake {
		p.wake()
	}
	if r >= 0 {
		t.stats.drop(r, 1)
		return false
	}
	return true
}

// SendBatch is Send for many messages, such as one scheduling cycle's
// output: it takes each destination's queue lock once for all of that
// destination's messages. It returns how many messages were queued; the
// others are counted as drops. Order per destination is kept.
func (t *Transport) SendBatch(msgs []pb.Message) int {
	var destBuf [16]uint64
	dests := destBuf[:0]
	for i := range msgs {
		to := msgs[i].To
		found := false
		for _, d := range dests {
			if d == to {
				found = true
				break
			}
		}
		if !found {
			dests = append(dests, to)
		}
	}
	queued := 0
	for _, to := range dests {
		p, r := t.peer(to)
		if p == nil {
			n := 0
			for i := range msgs {
				if msgs[i].To == to {
					n++
				}
			}
			t.stats.drop(r, n)
			continue
		}
		var drops [numDropReasons]int
		wake := false
		p.mu.Lock()
		for i := range msgs {
			if msgs[i].To != to {
				continue
			}
			r, w := p.enqueueLocked(&msgs[i], messageCost(&msgs[i]))
			wake = wake || w
			if r >= 0 {
				drops[r]++
			} else {
				queued++
			}
		}
		p.mu.Unlock()
		if wake {
			p.wake()
		}
		for r, n := range drops {
			t.stats.drop(dropReason(r), n)
		}
	}
	return queued
}

// peer returns the queue for node to, creating it and starting its sender
// goroutine on first use. It returns nil and the drop reason if to is zero,
// this node, or unknown to the Resolver, or if the transport is closed.
func (t *Transport) peer(to uint64) (*peer, dropReason) {
	if p := (*t.peers.Load())[to]; p != nil {
		return p, -1
	}
	if to == 0 || to == t.cfg.NodeID {
		return nil, dropNoRoute
	}
	if _, ok := t.resolver.Addr(to); !ok {
		return nil, dropNoRoute
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.closed {
		return nil, dropClosed
	}
	old := *t.peers.Load()
	if p := old[to]; p != nil {
		return p, -1
	}
	p := newPeer(t, to)
	peers := make(map[uint64]*peer, len(old)+1)
	for id, q := range old {
		peers[id] = q
	}
	peers[to] = p
	t.peers.Store(&peers)
	t.wg.Add(1)
	go p.run()
	return p, -1
}

// enter registers a goroutine that Close must wait for; it returns false
// once the transport is closed.
func (t *Transport) enter() bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.closed {
		return false
	}
	t.wg.Add(1)
	return true
}

func (t *Transport) exit() { t.wg.Done() }

// Stats returns the transport's counters.
func (t *Transport) Stats() Stats {
	s := t.stats.load()
	for _, p := range *t.peers.Load() {
		p.mu.Lock()
		s.QueuedMessages += len(p.mu.msgs) + p.mu.inflight
		s.QueuedBytes += p.mu.bytes
		p.mu.Unlock()
		s.Peers++
	}
	return s
}

// Lost returns the peers whose stream broke and could not be opened again
// since: their process is gone or unreachable. A peer never connected to
// is not among them.
func (t *Transport) Lost() []uint64 {
	var out []uint64
	for id, p := range *t.peers.Load() {
		if p.lostAt.Load() != 0 {
			out = append(out, id)
		}
	}
	slices.Sort(out)
	return out
}

// Close stops every sender goroutine and closes the streams and
// connections to peers; incoming streams are ended with Unavailable. It
// waits for the transport's goroutines, so once it returns no Handler call
// is running and none will start. Messages still queued count as
// Stats.Dropped.Closed, and Send drops everything from then on. Close does
// not stop the gRPC server that Register was given. It is idempotent and
// returns nil.
func (t *Transport) Close() error {
	t.mu.Lock()
	if t.closed {
		t.mu.Unlock()
		return nil
	}
	t.closed = true
	close(t.done)
	t.cancel()
	t.mu.Unlock()

	t.wg.Wait()
	for _, p := range *t.peers.Load() {
		p.shutdown()
	}
	t.metrics.close()
	return nil
}
