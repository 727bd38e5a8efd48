package router

import (
	"context"
	"fmt"
	"math"
	"runtime"
	"sync"
	"sync/atomic"

	"github.com/shardd/shardd/kvpb"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/encoding"
	"google.golang.org/grpc/mem"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"
)

// pool holds one grpc.ClientConn per node address. The KV streams and the
// Admin calls of a NodeSource built by the Client share it.
type pool struct {
	opts []grpc.DialOption

	mu     sync.Mutex
	conns  map[string]*grpc.ClientConn
	closed bool
}

func newPool(opts []grpc.DialOption) *pool {
	return &pool{opts: opts, conns: make(map[string]*grpc.ClientConn)}
}

// conn returns the connection to addr, creating it (lazily connecting) on
// first use.
func (p *pool) conn(addr string) (*grpc.ClientConn, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed {
		return nil, errClosed
	}
	if cc := p.conns[addr]; cc != nil {
		return cc, nil
	}
	cc, err := grpc.NewClient(addr, p.opts...)
	if err != nil {
		return nil, status.Errorf(codes.InvalidArgument, "router: connect to %s: %v", addr, err)
	}
	p.conns[addr] = cc
	return cc, nil
}

func (p *pool) close() {
	p.mu.Lock()
	conns := p.conns
	p.conns, p.closed = nil, true
	p.mu.Unlock()
	for _, cc := range conns {
		_ = cc.Close()
	}
}

// rawFrame is a RequestFrame already encoded by its callers: each request
// is marshaled by the goroutine that issues it, in its own buffer, so the
// sender only concatenates, and a caller that gives up never races with
// the sender over the caller's key and value slices.
type rawFrame struct{ parts mem.BufferSlice }

// frameCodec is the stream's codec. It is named "proto", so the server
// decodes with its ordinary protobuf codec; it writes a rawFrame as is and
// hands everything else to the registered protobuf codec.
type frameCodec struct{ proto encoding.CodecV2 }

func (c frameCodec) Marshal(v any) (mem.BufferSlice, error) {
	if f, ok := v.(*rawFrame); ok {
		return f.parts, nil
	}
	return c.proto.Marshal(v)
}

func (c frameCodec) Unmarshal(data mem.BufferSlice, v any) error { return c.proto.Unmarshal(data, v) }

func (frameCodec) Name() string { return "proto" }

var streamCodec = frameCodec{proto: encoding.GetCodecV2("proto")}

// encodeRequest encodes req as one element of RequestFrame.requests
// (field 1): tag, length, message.
func encodeRequest(req *kvpb.Request) ([]byte, error) {
	size := proto.Size(req)
	b := make([]byte, 0, size+1+protowire.SizeVarint(uint64(size)))
	b = protowire.AppendTag(b, 1, protowire.BytesType)
	b = protowire.AppendVarint(b, uint64(size))
	return proto.MarshalOptions{UseCachedSize: true}.MarshalAppend(b, req)
}

// call is one request waiting for its response.
type call struct {
	ctx  context.Context
	id   uint64
	enc  []byte      // the encoded frame element
	st   *stream     // the stream it was sent on, once sent; under nodeConn.mu
	done chan result // buffered; receives exactly one result
}

// result is a call's outcome. sent reports whether the request may have
// reached the node: a write that failed after being sent may or may not
// have been applied.
type result struct {
	resp *kvpb.Response
	sent bool
	err  error
}

// stream is one KV.Stream to a node and the calls sent on it.
type stream struct {
	s       grpc.BidiStreamingClient[kvpb.RequestFrame, kvpb.ResponseFrame]
	cancel  context.CancelFunc
	pending map[uint64]*call // nil once broken; under nodeConn.mu
}

// nodeConn multiplexes every request of the Client to one node over one
// long-lived stream. Callers queue encoded requests; one sender goroutine
// swaps the queue out and sends it as frames of up to MaxFrameRequests
// requests (and MaxFrameBytes bytes); one receiver goroutine per stream
// hands each response to its caller by id. The more callers queue while a
// frame is on the wire, the more the next one carries; no timer is needed.
type nodeConn struct {
	c    *Client
	addr string
	kv   kvpb.KVClient
	wake chan struct{}
	ids  atomic.Uint64

	mu    sync.Mutex
	queue []*call
	cur   *stream // nil when there is none, or it broke
}

func newNodeConn(c *Client, addr string, cc *grpc.ClientConn) *nodeConn {
	nc := &nodeConn{c: c, addr: addr, kv: kvpb.NewKVClient(cc), wake: make(chan struct{}, 1)}
	c.wg.Add(1)
	go nc.sendLoop()
	return nc
}

// do sends req (whose id it sets) and waits for its response, the stream's
// failure, or ctx.
func (nc *nodeConn) do(ctx context.Context, req *kvpb.Request) result {
	req.Id = nc.ids.Add(1)
	enc, err := encodeRequest(req)
	if err != nil {
		return result{err: status.Errorf(codes.Internal, "router: encode request: %v", err)}
	}
	c := &call{ctx: ctx, id: req.Id, enc: enc, done: make(chan result, 1)}
	nc.mu.Lock()
	nc.queue = append(nc.queue, c)
	nc.mu.Unlock()
	select {
	case nc.wake <- struct{}{}:
	default:
	}
	select {
	case r := <-c.done:
		return r
	case <-nc.c.ctx.Done():
		// Closed: the sender may have left before this call was queued.
		return result{err: errClosed}
	case <-ctx.Done():
		nc.mu.Lock()
		sent := c.st != nil
		if sent && c.st.pending != nil {
			delete(c.st.pending, c.id)
		}
		nc.mu.Unlock()
		return result{sent: sent, err: ctxError(ctx, nil)}
	}
}

func (nc *nodeConn) sendLoop() {
	defer nc.c.wg.Done()
	ctx := nc.c.ctx
	for {
		select {
		case <-nc.wake:
		case <-ctx.Done():
			nc.mu.Lock()
			q := nc.queue
			nc.queue = nil
			nc.mu.Unlock()
			for _, c := range q {
				c.done <- result{err: errClosed}
			}
			return
		}
		// Let the callers that are runnable right now (say, woken by the
		// last response frame) queue their requests before taking them.
		runtime.Gosched()
		for ctx.Err() == nil {
			calls := nc.take()
			if len(calls) == 0 {
				break
			}
			nc.send(calls)
		}
	}
}

// take removes the next frame's worth of calls from the queue, skipping
// those whose callers have given up.
func (nc *nodeConn) take() []*call {
	maxReqs, maxBytes := nc.c.cfg.MaxFrameRequests, nc.c.cfg.MaxFrameBytes
	nc.mu.Lock()
	defer nc.mu.Unlock()
	var calls []*call
	n, size := 0, 0
	for ; n < len(nc.queue) && len(calls) < maxReqs; n++ {
		c := nc.queue[n]
		if c.ctx.Err() != nil {
			continue // the caller is gone: don't send it
		}
		if len(calls) > 0 && size+len(c.enc) > maxBytes {
			break
		}
		size += len(c.enc)
		calls = append(calls, c)
	}
	clear(nc.queue[:n])
	if nc.queue = nc.queue[n:]; len(nc.queue) == 0 {
		nc.queue = nil
	}
	return calls
}

// send sends calls as one frame on the current stream, opening one if
// needed. Calls that could not be sent fail with Unavailable and sent
// false; calls on a stream that breaks fail with sent true.
func (nc *nodeConn) send(calls []*call) {
	st, err := nc.stream()
	if err != nil {
		err = status.Errorf(codes.Unavailable, "router: no stream to %s: %v", nc.addr, status.Convert(err).Message())
		for _, c := range calls {
			c.done <- result{err: err}
		}
		return
	}
	frame := &rawFrame{parts: make(mem.BufferSlice, len(calls))}
	nc.mu.Lock()
	broken := st.pending == nil
	if !broken {
		for i, c := range calls {
			st.pending[c.id] = c
			c.st = st
			frame.parts[i] = mem.SliceBuffer(c.enc)
		}
	}
	nc.mu.Unlock()
	if broken {
		err := status.Errorf(codes.Unavailable, "router: stream to %s broke", nc.addr)
		for _, c := range calls {
			c.done <- result{err: err}
		}
		return
	}
	if err := st.s.SendMsg(frame); err != nil {
		nc.breakStream(st, err)
		return
	}
	nc.c.stats.frames.Add(1)
	nc.c.stats.requests.Add(uint64(len(calls)))
}

// stream returns the current stream, opening a new one if there is none.
// Only the sender goroutine calls it.
func (nc *nodeConn) stream() (*stream, error) {
	nc.mu.Lock()
	st := nc.cur
	nc.mu.Unlock()
	if st != nil {
		return st, nil
	}
	ctx, cancel := context.WithCancel(nc.c.ctx)
	s, err := nc.kv.Stream(ctx, grpc.ForceCodecV2(streamCodec), grpc.MaxCallRecvMsgSize(math.MaxInt32))
	if err != nil {
		cancel()
		return nil, err
	}
	st = &stream{s: s, cancel: cancel, pending: make(map[uint64]*call)}
	nc.mu.Lock()
	nc.cur = st
	nc.mu.Unlock()
	nc.c.stats.streams.Add(1)
	nc.c.wg.Add(1)
	go nc.recvLoop(st)
	return st, nil
}

func (nc *nodeConn) recvLoop(st *stream) {
	defer nc.c.wg.Done()
	var ready []*call
	var resps []*kvpb.Response
	for {
		f, err := st.s.Recv()
		if err != nil {
			nc.breakStream(st, err)
			return
		}
		ready, resps = ready[:0], resps[:0]
		nc.mu.Lock()
		for _, r := range f.Responses {
			if c := st.pending[r.Id]; c != nil {
				delete(st.pending, r.Id)
				ready = append(ready, c)
				resps = append(resps, r)
			}
		}
		nc.mu.Unlock()
		for i, c := range ready {
			c.done <- result{resp: resps[i], sent: true}
		}
	}
}

// breakStream retires st and fails the calls still waiting on it with
// Unavailable; the next frame opens a new stream. It is idempotent.
func (nc *nodeConn) breakStream(st *stream, cause error) {
	nc.mu.Lock()
	pending := st.pending
	st.pending = nil
	if nc.cur == st {
		nc.cur = nil
	}
	nc.mu.Unlock()
	st.cancel()
	if pending == nil {
		return
	}
	err := status.Error(codes.Unavailable, fmt.Sprintf("router: stream to %s broke with requests in flight (they may or may not have been applied): %v",
		nc.addr, status.Convert(cause).Message()))
	for _, c := range pending {
		c.done <- result{sent: true, err: err}
	}
}
