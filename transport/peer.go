package transport

import (
	"context"
	"encoding/binary"
	"errors"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"
	"unsafe"

	"google.golang.org/grpc"
	"google.golang.org/grpc/backoff"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/shardd/shardd/kvpb"
	pb "github.com/shardd/shardd/paxospb"
)

// msgOverhead is what a queued message costs beyond its encoding: the
// Message value itself and its entry in the cost slice.
const msgOverhead = int(unsafe.Sizeof(pb.Message{})) + int(unsafe.Sizeof(int(0)))

// frameHeader bounds the bytes of a frame that are not messages: the frame
// version and the message count.
const frameHeader = 1 + binary.MaxVarintLen64

// messageCost returns the encoded size of m inside a frame: its length
// prefix and its encoding.
func messageCost(m *pb.Message) int {
	n := m.Size()
	return uvarintLen(uint64(n)) + n
}

func uvarintLen(v uint64) int {
	n := 1
	for v >= 0x80 {
		v >>= 7
		n++
	}
	return n
}

var (
	errNoRoute     = errors.New("transport: the resolver has no address for the peer")
	errDialTimeout = errors.New("transport: timed out waiting for the connection")
)

// peer is the outgoing side of the link to one node: one queue and one
// sender goroutine (run) that owns the connection and the one message
// stream. The queue holds decoded messages; the sender encodes them, so
// that encoding runs off the callers' path and in parallel with them.
type peer struct {
	t  *Transport
	id uint64
	// signal wakes the sender. Whenever the sender waits on it, either the
	// queue is empty or a signal is pending: Send signals on the queue's
	// transition from empty, and the sender waits only after it found the
	// queue empty under mu.
	signal chan struct{}

	mu struct {
		sync.Mutex
		// msgs and costs are the queue; costs[i] is msgs[i]'s encoded
		// size in a frame (messageCost).
		msgs  []pb.Message
		costs []int
		// bytes is the cost of the queued and in-flight messages, each
		// costing msgOverhead plus its encoded size; it never exceeds
		// Config.MaxQueueBytes.
		bytes int
		// inflight is the number of messages the sender has taken from
		// the queue and not yet sent or dropped.
		inflight int
		// closed is set by shutdown; enqueue refuses from then on.
		closed bool
	}

	// lostAt is when the stream to the peer broke and has not been
	// reopened since (Unix nanoseconds), or 0.
	lostAt atomic.Int64
	// health is what PeerStatuses reports of the link.
	health peerHealth

	// The rest is owned by the sender goroutine.

	// spareMsgs and spareCosts are the previous batch's slices, swapped
	// back in as the next queue, so a steady stream allocates nothing.
	spareMsgs  []pb.Message
	spareCosts []int
	// buf is the reusable frame encoding buffer.
	buf []byte
	// cc is the connection for the message stream, to ccAddr.
	cc     *grpc.ClientConn
	ccAddr string

	// snap is the separate connection for snapshots (see SendSnapshot).
	snap struct {
		sync.Mutex
		cc     *grpc.ClientConn
		addr   string
		closed bool
	}
}

func newPeer(t *Transport, id uint64) *peer {
	return &peer{t: t, id: id, signal: make(chan struct{}, 1)}
}

func (p *peer) log() *slog.Logger {
	return p.t.cfg.Logger.With("node", p.t.cfg.NodeID, "peer", p.id)
}

// enqueueLocked appends m to the queue if it fits. It returns the drop
// reason, or -1 if m was queued, and whether the sender must be woken.
// p.mu is held.
func (p *peer) enqueueLocked(m *pb.Message, cost int) (dropReason, bool) {
	c := cost + msgOverhead
	switch {
	case p.mu.closed:
		return dropClosed, false
	case c > p.t.cfg.MaxQueueBytes:
		return dropTooLarge, false
	case p.mu.bytes+c > p.t.cfg.MaxQueueBytes:
		return dropQueueFull, false
	}
	wake := len(p.mu.msgs) == 0
	p.mu.msgs = append(p.mu.msgs, *m)
	p.mu.costs = append(p.mu.costs, cost)
	p.mu.bytes += c
	return -1, wake
}

// wake signals the sender without blocking; a pending signal suffices.
func (p *peer) wake() {
	select {
	case p.signal <- struct{}{}:
	default:
	}
}

// take swaps the queue out for the spare slices and marks its messages in
// flight.
func (p *peer) take() ([]pb.Message, []int) {
	p.mu.Lock()
	defer p.mu.Unlock()
	msgs, costs := p.mu.msgs, p.mu.costs
	p.mu.msgs, p.mu.costs = p.spareMsgs[:0], p.spareCosts[:0]
	p.mu.inflight += len(msgs)
	return msgs, costs
}

// release ends the flight of n messages whose encoded sizes sum to bytes.
func (p *peer) release(n, bytes int) {
	if n == 0 {
		return
	}
	p.mu.Lock()
	p.mu.inflight -= n
	p.mu.bytes -= bytes + n*msgOverhead
	p.mu.Unlock()
}

// recycle keeps a sent batch's slices as the next spare ones, after
// clearing them so that they do not pin the messages' payloads. A batch
// far larger than usual (a burst) is let go instead, so that one burst
// does not pin its memory for the transport's lifetime.
func (p *peer) recycle(msgs []pb.Message, costs []int) {
	clear(msgs)
	if cap(msgs) > 4096 && len(msgs) < cap(msgs)/4 {
		msgs, costs = nil, nil
	}
	p.spareMsgs, p.spareCosts = msgs[:0], costs[:0]
}

// hasWork reports whether the queue holds messages.
func (p *peer) hasWork() bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	return len(p.mu.msgs) > 0
}

// dropQueued drops every queued message for reason r.
func (p *peer) dropQueued(r dropReason) {
	msgs, costs := p.take()
	bytes := 0
	for _, c := range costs {
		bytes += c
	}
	p.release(len(msgs), bytes)
	p.t.stats.drop(r, len(msgs))
	p.recycle(msgs, costs)
}

// run is the sender goroutine, the only one that sends on this peer's
// message stream: it waits for work, dials if it has no stream, and
// drains the queue into frames. On a failed dial it keeps the queue
// (bounded by MaxQueueBytes) and retries with backoff; on a broken stream
// it drops the batch in flight, since Paxos retransmits, and redials when
// there is work again. It runs until Close.
func (p *peer) run() {
	defer p.t.wg.Done()
	var s *msgStream
	defer func() {
		if s != nil {
			s.close()
		}
	}()
	delay := p.t.cfg.ReconnectBackoff
	backoff := func() bool {
		ok := p.sleep(delay)
		delay = min(2*delay, p.t.cfg.MaxReconnectBackoff)
		return ok
	}
	for {
		var broken <-chan struct{}
		if s != nil {
			broken = s.done
		}
		select {
		case <-p.t.done:
			return
		case <-broken:
			// The peer ended the stream while we had nothing to send;
			// redial lazily, when there is.
			p.lost(s, nil)
			s = nil
			continue
		case <-p.signal:
		}
		for p.hasWork() {
			if p.t.faults.cut(p.id) {
				// A cut link needs no connection to drop messages.
				p.dropQueued(dropFault)
				continue
			}
			if s == nil {
				var err error
				if s, err = p.connect(); err != nil {
					if p.closing() {
						return
					}
					p.health.down(err)
					p.t.stats.dialFailures.Add(1)
					if errors.Is(err, errNoRoute) {
						p.log().Warn("transport: dropping queue", "err", err)
						p.dropQueued(dropNoRoute)
						continue
					}
					p.log().Debug("transport: dial failed", "err", err)
					if !backoff() {
						return
					}
					continue
				}
			}
			if err := p.flush(s); err != nil {
				if p.closing() {
					return
				}
				p.lost(s, err)
				s = nil
				if !backoff() {
					return
				}
				continue
			}
			delay = p.t.cfg.ReconnectBackoff
		}
	}
}

// closing reports whether Close has begun.
func (p *peer) closing() bool {
	select {
	case <-p.t.done:
		return true
	default:
		return false
	}
}

// lost tears down a broken stream. It waits for the stream's reader,
// which the cancel ends promptly, to learn why the stream ended: a failed
// Send only says io.EOF.
func (p *peer) lost(s *msgStream, sendErr error) {
	s.close()
	<-s.done
	p.t.stats.streamFailures.Add(1)
	p.lostAt.CompareAndSwap(0, time.Now().UnixNano())
	err := s.err
	if err == nil {
		err = sendErr
	}
	p.health.down(err)
	p.log().Info("transport: stream to peer lost", "err", err)
}

// sleep waits for d, or until Close; it returns false on Close.
func (p *peer) sleep(d time.Duration) bool {
	if d <= 0 {
		return true
	}
	tm := time.NewTimer(d)
	defer tm.Stop()
	select {
	case <-tm.C:
		return true
	case <-p.t.done:
		return false
	}
}

// flush takes the whole queue and sends it as frames of at most
// MaxFrameBytes (a larger message goes alone). If a send fails it drops
// what is left of the batch and returns the error.
func (p *peer) flush(s *msgStream) error {
	t := p.t
	msgs, costs := p.take()
	defer p.recycle(msgs, costs)
	total := 0
	for _, c := range costs {
		total += c
	}
	n, delay := t.faults.filter(p.id, msgs, costs)
	if n < len(msgs) {
		kept := 0
		for _, c := range costs[:n] {
			kept += c
		}
		t.stats.drop(dropFault, len(msgs)-n)
		p.release(len(msgs)-n, total-kept)
		msgs, costs = msgs[:n], costs[:n]
	}
	limit := t.cfg.MaxFrameBytes - frameHeader
	for i := 0; i < len(msgs); {
		j, size := i+1, costs[i]
		for j < len(msgs) && size+costs[j] <= limit {
			size += costs[j]
			j++
		}
		if delay > 0 && !p.sleep(delay) {
			p.dropRest(costs[i:], dropClosed)
			return ErrClosed
		}
		p.buf = pb.AppendMessages(p.buf[:0], msgs[i:j])
		err := s.stream.Send(&kvpb.MessageFrame{FromNode: t.cfg.NodeID, ToNode: p.id, Messages: p.buf})
		if err != nil {
			p.dropRest(costs[i:], dropDisconnected)
			return err
		}
		t.stats.framesSent.Add(1)
		t.stats.messagesSent.Add(uint64(j - i))
		t.metrics.frameSent(j - i)
		t.stats.bytesSent.Add(uint64(len(p.buf)))
		p.release(j-i, size)
		i = j
	}
	if cap(p.buf) > 4*t.cfg.MaxFrameBytes {
		// A huge single message grew the buffer; do not keep it.
		p.buf = nil
	}
	return nil
}

// dropRest drops the unsent tail of a batch, given its costs.
func (p *peer) dropRest(costs []int, r dropReason) {
	bytes := 0
	for _, c := range costs {
		bytes += c
	}
	p.release(len(costs), bytes)
	p.t.stats.drop(r, len(costs))
}

// msgStream is one open Messages stream and the goroutine that reads its
// (unused) ack side, which is how the sender learns that the peer ended
// the stream even while it has nothing to send.
type msgStream struct {
	stream kvpb.Transport_MessagesClient
	cancel context.CancelFunc
	// done is closed when the stream has ended; err is then the reason.
	done chan struct{}
	err  error
}

func (s *msgStream) close() { s.cancel() }

// connect opens the message stream, dialing first if there is no
// connection to the peer's current address.
func (p *peer) connect() (*msgStream, error) {
	t := p.t
	addr, ok := t.resolver.Addr(p.id)
	if !ok {
		return nil, errNoRoute
	}
	if p.cc == nil || p.ccAddr != addr {
		if p.cc != nil {
			p.cc.Close()
		}
		cc, err := t.dial(addr)
		if err != nil {
			p.cc = nil
			return nil, err
		}
		p.cc, p.ccAddr = cc, addr
	}
	ctx, cancel := context.WithCancel(t.ctx)
	stream, err := openWithTimeout(ctx, cancel, t.cfg.DialTimeout, func(ctx context.Context) (kvpb.Transport_MessagesClient, error) {
		return kvpb.NewTransportClient(p.cc).Messages(ctx, grpc.WaitForReady(true))
	})
	if err != nil {
		return nil, err
	}
	s := &msgStream{stream: stream, cancel: cancel, done: make(chan struct{})}
	t.wg.Add(1) // run is counted, so the counter is not zero here.
	go func() {
		defer t.wg.Done()
		for {
			if _, err := stream.Recv(); err != nil {
				s.err = err
				close(s.done)
				return
			}
		}
	}()
	t.stats.streamsOpened.Add(1)
	p.health.up(addr)
	if at := p.lostAt.Swap(0); at != 0 {
		// The pair of "lost" (see lost): an operator sees how long the
		// link was down without counting dial failures.
		p.log().Info("transport: stream to peer restored", "addr", addr, "down", time.Since(time.Unix(0, at)).Round(time.Millisecond))
	} else {
		p.log().Debug("transport: stream to peer open", "addr", addr)
	}
	return s, nil
}

// openWithTimeout opens a long-lived stream on ctx, waiting at most d for
// the connection to become ready. The stream's own context cannot carry
// the timeout, since it governs the stream's whole life, so a timer
// cancels ctx if the open is still waiting. On error cancel has been
// called.
func openWithTimeout[S any](ctx context.Context, cancel context.CancelFunc, d time.Duration, open func(context.Context) (S, error)) (S, error) {
	timer := time.AfterFunc(d, cancel)
	s, err := open(ctx)
	if !timer.Stop() {
		cancel()
		var zero S
		if err == nil || ctx.Err() != nil {
			err = errDialTimeout
		}
		return zero, err
	}
	if err != nil {
		cancel()
	}
	return s, err
}

// dial creates a client connection to addr. gRPC connects lazily and
// reconnects by itself with the configured backoff.
func (t *Transport) dial(addr string) (*grpc.ClientConn, error) {
	bc := backoff.DefaultConfig
	bc.BaseDelay = t.cfg.ReconnectBackoff
	bc.MaxDelay = t.cfg.MaxReconnectBackoff
	opts := []grpc.DialOption{
		grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.WithConnectParams(grpc.ConnectParams{Backoff: bc, MinConnectTimeout: t.cfg.DialTimeout}),
	}
	opts = append(opts, t.cfg.DialOptions...)
	return grpc.NewClient(addr, opts...)
}

// snapConn returns the connection for snapshots to the peer's current
// address, dialing it if needed.
func (p *peer) snapConn() (*grpc.ClientConn, error) {
	addr, ok := p.t.resolver.Addr(p.id)
	if !ok {
		return nil, errNoRoute
	}
	p.snap.Lock()
	defer p.snap.Unlock()
	if p.snap.closed {
		return nil, ErrClosed
	}
	if p.snap.cc != nil && p.snap.addr == addr {
		return p.snap.cc, nil
	}
	if p.snap.cc != nil {
		p.snap.cc.Close()
	}
	cc, err := p.t.dial(addr)
	if err != nil {
		p.snap.cc = nil
		return nil, err
	}
	p.snap.cc, p.snap.addr = cc, addr
	return cc, nil
}

// shutdown runs in Close after every goroutine has exited: it counts the
// messages left in the queue and closes the connections.
func (p *peer) shutdown() {
	p.mu.Lock()
	p.mu.closed = true
	p.mu.Unlock()
	p.dropQueued(dropClosed)
	if p.cc != nil {
		p.cc.Close()
		p.cc = nil
	}
	p.snap.Lock()
	p.snap.closed = true
	if p.snap.cc != nil {
		p.snap.cc.Close()
		p.snap.cc = nil
	}
	p.snap.Unlock()
}
