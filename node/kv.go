package node

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/shardd/shardd/internal/tracing"
	"github.com/shardd/shardd/kvpb"
	"github.com/shardd/shardd/kvsm"
	"go.opentelemetry.io/otel/trace"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
)

var (
	// errAmbiguous leaves the write's fate unknown: a retry with the same
	// session numbers is safe, and learns it.
	errAmbiguous = status.Error(codes.Unavailable, "leadership changed while the write was in flight: it may or may not have been applied")
	// errForgotten is final: the range no longer remembers the write's
	// result, and a retry can't learn it. Aborted, so that no client takes
	// it for "not applied".
	errForgotten = status.Error(codes.Aborted, "the write's session has moved past it and its result is no longer remembered: it may or may not have been applied")
	// errBusy is ResourceExhausted, not Unavailable: the write was never
	// proposed, so a client may retry even a compare-and-swap.
	errBusy = status.Error(codes.ResourceExhausted, "the range has too many writes in flight; retry")
)

// notLeader is the error for a request that reached a replica without the
// lease: FailedPrecondition with the leader hint as a detail.
func (n *Node) notLeader(r *replica) error {
	lead := r.leader.Load()
	d := &kvpb.NotLeader{RangeId: r.id, LeaderNodeId: lead}
	if lead != 0 {
		d.LeaderAddr, _ = n.addrOf(lead)
	}
	st, _ := status.New(codes.FailedPrecondition, fmt.Sprintf("node %d does not lead range %d; leader hint: node %d", n.cfg.NodeID, r.id, lead)).WithDetails(d)
	return st.Err()
}

// rangeMismatch is the error for a request routed with a stale descriptor
// or a key the range doesn't hold; it carries our descriptor, if any.
func rangeMismatch(msg string, r *replica) error {
	d := &kvpb.RangeMismatch{}
	if r != nil {
		d.Descriptor_ = r.desc.Load()
	}
	st, _ := status.New(codes.FailedPrecondition, msg).WithDetails(d)
	return st.Err()
}

// route finds the replica a request is for and checks the descriptor the
// client routed with and the keys against the range's bounds.
func (n *Node) route(h *kvpb.RequestHeader, start, end []byte) (*replica, error) {
	var r *replica
	if id := h.GetRangeId(); id != 0 {
		if r = n.replica(id); r == nil {
			return nil, rangeMismatch(fmt.Sprintf("node %d has no replica of range %d", n.cfg.NodeID, id), nil)
		}
	} else if r = n.replicaFor(start); r == nil {
		return nil, rangeMismatch(fmt.Sprintf("node %d holds no range containing key %q", n.cfg.NodeID, start), nil)
	}
	d := r.desc.Load()
	if g := h.GetGeneration(); g != 0 && g != d.Generation {
		return nil, n.mismatch(fmt.Sprintf("range %d is at generation %d, not %d", r.id, d.Generation, g), r, start)
	}
	if !contains(d, start) {
		return nil, n.keyMoved(r, start)
	}
	if end != nil && len(d.EndKey) > 0 && bytes.Compare(end, d.EndKey) > 0 {
		return nil, n.keyMoved(r, d.EndKey)
	}
	r.load.record(start) // see load.go
	return r, nil
}

func contains(d *kvpb.RangeDescriptor, k []byte) bool {
	return len(d.GetReplicas()) > 0 && bytes.Compare(k, d.StartKey) >= 0 && (len(d.EndKey) == 0 || bytes.Compare(k, d.EndKey) < 0)
}

// replicaFor finds the hosted range that contains key: a binary search of
// the index of initialized replicas by start key.
func (n *Node) replicaFor(key []byte) *replica {
	idx := n.byStart.Load()
	if idx == nil {
		return nil
	}
	i, _ := slices.BinarySearchFunc(*idx, key, func(r *replica, k []byte) int {
		return bytes.Compare(r.desc.Load().StartKey, k)
	})
	// i is the first range starting after key, or at it.
	for _, j := range []int{i, i - 1} {
		if j >= 0 && j < len(*idx) && contains((*idx)[j].desc.Load(), key) {
			return (*idx)[j]
		}
	}
	return nil
}

// overlaps reports whether a replica of this node other than except holds
// keys of d.
func (n *Node) overlaps(d *kvpb.RangeDescriptor, except *replica) bool {
	idx := n.byStart.Load()
	if idx == nil {
		return false
	}
	for _, o := range *idx {
		od := o.desc.Load()
		if o != except && (len(d.EndKey) == 0 || bytes.Compare(od.StartKey, d.EndKey) < 0) &&
			(len(od.EndKey) == 0 || bytes.Compare(d.StartKey, od.EndKey) < 0) {
			return true
		}
	}
	return false
}

// reindex rebuilds the start-key index from every hosted replica, after
// many were added at once (startup, CreateGroups).
func (n *Node) reindex() {
	n.indexMu.Lock()
	defer n.indexMu.Unlock()
	n.mu.RLock()
	idx := make([]*replica, 0, len(n.replicas))
	for _, r := range n.replicas {
		if len(r.desc.Load().GetReplicas()) > 0 {
			idx = append(idx, r)
		}
	}
	n.mu.RUnlock()
	slices.SortFunc(idx, func(a, b *replica) int { return bytes.Compare(a.desc.Load().StartKey, b.desc.Load().StartKey) })
	n.byStart.Store(&idx)
}

// index puts one replica in the start-key index, or moves it there after
// its descriptor changed: a copy with one insertion, O(ranges) rather
// than a sort, since thousands of empty replicas initialized one by one
// at a cluster's start each call it.
func (n *Node) index(r *replica) {
	n.indexMu.Lock()
	defer n.indexMu.Unlock()
	var old []*replica
	if p := n.byStart.Load(); p != nil {
		old = *p
	}
	idx := make([]*replica, 0, len(old)+1)
	for _, o := range old {
		if o != r {
			idx = append(idx, o)
		}
	}
	start := r.desc.Load().StartKey
	i, _ := slices.BinarySearchFunc(idx, start, func(o *replica, k []byte) int {
		return bytes.Compare(o.desc.Load().StartKey, k)
	})
	idx = slices.Insert(idx, i, r)
	n.byStart.Store(&idx)
}

// submitWrite queues a command for the range's next Paxos value; cb gets
// its result once applied here, or the error. The command's Proposer is
// unique across this node's process lives, so a command of an earlier
// life applied now (replayed from the log, or re-proposed by a new
// leader) answers no caller of this one.
func (n *Node) submitWrite(r *replica, c kvsm.Command, cb writeCallback) {
	n.submitTracedWrite(r, c, cb, nil)
}

// submitTracedWrite is submitWrite for a write whose handler span is req
// (nil: not traced).
func (n *Node) submitTracedWrite(r *replica, c kvsm.Command, cb writeCallback, req trace.Span) {
	c.Proposer = kvsm.Proposer{Node: n.cfg.NodeID, Incarnation: n.incarnation, Seq: n.seq.Add(1)}
	var tc tracedCommand
	if req != nil {
		tc = tracedCommand{req: req, propose: n.proposeSpan(r, req)}
	}
	r.mb.propose(c, cb, tc)
	n.sched.enqueue(r)
}

// submitRead serves a read of key: a stale one at once from what this
// replica applied, a linearizable one once the leader confirmed its index
// (at once under the lease) and applied up to it. Either way the range
// must still hold key by then: a split applied meanwhile hands it to
// another range, whose writes this one no longer sees.
// serve gets the descriptor that was found to hold key, and must bound
// what it reads by that one and not load the replica's again: a stale
// read is served on the caller's goroutine while the worker may apply a
// split, so a second load could find a range that ends at or before key.
// req is the read's handler span, nil if it is not traced.
func (n *Node) submitRead(r *replica, key []byte, consistency kvpb.ReadConsistency, req trace.Span, serve func(*kvpb.RangeDescriptor, error)) {
	checked := func(err error) {
		if err != nil {
			serve(nil, err)
			return
		}
		d := r.desc.Load()
		if !contains(d, key) {
			serve(nil, n.keyMoved(r, key))
			return
		}
		serve(d, nil)
	}
	if consistency == kvpb.ReadConsistency_STALE {
		if req != nil {
			req.SetAttributes(tracing.Read.String("stale"))
		}
		checked(nil)
		return
	}
	n.post(r, func(in *inputs) { in.reads = append(in.reads, &readRequest{serve: checked, req: req}) })
}

// await blocks a unary call on a callback-style operation.
func await[T any](ctx context.Context, n *Node, start func(done func(T, error))) (T, error) {
	type result struct {
		v   T
		err error
	}
	ch := make(chan result, 1)
	start(func(v T, err error) { ch <- result{v, err} })
	select {
	case res := <-ch:
		return res.v, res.err
	case <-ctx.Done():
		var zero T
		return zero, status.FromContextError(ctx.Err()).Err()
	case <-n.stopped:
		var zero T
		return zero, status.Error(codes.Unavailable, "node stopped")
	}
}

// The operations, in callback style so that the streaming RPC can run many
// at once without a goroutine each.

func (n *Node) doGet(req *kvpb.GetRequest, done func(*kvpb.GetResponse, error)) {
	span, done := traceRequest(n, "kv.Get", req.GetHeader(), done)
	if err := n.cfg.Limits.ValidateGet(req); err != nil {
		done(nil, err)
		return
	}
	r, err := n.route(req.Header, req.Key, nil)
	if err != nil {
		done(nil, err)
		return
	}
	n.submitRead(r, req.Key, req.GetHeader().GetConsistency(), span, func(_ *kvpb.RangeDescriptor, err error) {
		if err != nil {
			done(nil, err)
			return
		}
		v, ok, err := n.eng.Get(req.Key)
		if err != nil {
			done(nil, status.Error(codes.Internal, err.Error()))
			return
		}
		done(&kvpb.GetResponse{Found: ok, Value: v}, nil)
	})
}

func (n *Node) doScan(req *kvpb.ScanRequest, done func(*kvpb.ScanResponse, error)) {
	span, done := traceRequest(n, "kv.Scan", req.GetHeader(), done)
	if err := n.cfg.Limits.ValidateScan(req); err != nil {
		done(nil, err)
		return
	}
	r, err := n.route(req.Header, req.StartKey, nil)
	if err != nil {
		done(nil, err)
		return
	}
	limit := int(n.cfg.Limits.ScanLimit(req))
	n.submitRead(r, req.StartKey, req.GetHeader().GetConsistency(), span, func(d *kvpb.RangeDescriptor, err error) {
		if err != nil {
			done(nil, err)
			return
		}
		end := req.EndKey
		if len(d.EndKey) > 0 && (len(end) == 0 || bytes.Compare(end, d.EndKey) > 0) {
			end = d.EndKey // stop at the range's end; the client continues
		}
		resp := &kvpb.ScanResponse{}
		var last []byte
		err = n.eng.Scan(req.StartKey, nilIfEmpty(end), limit+1, func(k, v []byte) bool {
			if len(resp.Kvs) == limit {
				// k is the engine's only until we return: its iterator
				// recycles the buffer for another request's scan.
				last = bytes.Clone(k)
				return false
			}
			resp.Kvs = append(resp.Kvs, &kvpb.KeyValue{Key: bytes.Clone(k), Value: bytes.Clone(v)})
			return true
		})
		if err != nil {
			done(nil, status.Error(codes.Internal, err.Error()))
			return
		}
		if k := n.cfg.Knobs.AfterScan; k != nil {
			k()
		}
		switch {
		case last != nil:
			resp.ResumeKey = last
		case len(end) > 0 && !bytes.Equal(end, req.EndKey):
			resp.ResumeKey = bytes.Clone(end) // the range ended first
		}
		done(resp, nil)
	})
}

func nilIfEmpty(b []byte) []byte {
	if len(b) == 0 {
		return nil
	}
	return b
}

// write routes and submits a write; span is its handler's, nil if it is
// not traced.
func (n *Node) write(h *kvpb.RequestHeader, c kvsm.Command, start, end []byte, span trace.Span, done writeCallback) {
	r, err := n.route(h, start, end)
	if err != nil {
		done(kvsm.Result{}, err)
		return
	}
	n.submitTracedWrite(r, c, done, span)
}

func (n *Node) doPut(req *kvpb.PutRequest, done func(*kvpb.PutResponse, error)) {
	span, done := traceRequest(n, "kv.Put", req.GetHeader(), done)
	if err := n.cfg.Limits.ValidatePut(req); err != nil {
		done(nil, err)
		return
	}
	n.write(req.Header, kvsm.NewPut(req), req.Key, nil, span, func(res kvsm.Result, err error) {
		done(kvsm.PutResponse(res), err)
	})
}

func (n *Node) doDelete(req *kvpb.DeleteRequest, done func(*kvpb.DeleteResponse, error)) {
	span, done := traceRequest(n, "kv.Delete", req.GetHeader(), done)
	if err := n.cfg.Limits.ValidateDelete(req); err != nil {
		done(nil, err)
		return
	}
	n.write(req.Header, kvsm.NewDelete(req), req.Key, nil, span, func(res kvsm.Result, err error) {
		done(kvsm.DeleteResponse(res), err)
	})
}

func (n *Node) doCAS(req *kvpb.CompareAndSwapRequest, done func(*kvpb.CompareAndSwapResponse, error)) {
	span, done := traceRequest(n, "kv.CompareAndSwap", req.GetHeader(), done)
	if err := n.cfg.Limits.ValidateCompareAndSwap(req); err != nil {
		done(nil, err)
		return
	}
	n.write(req.Header, kvsm.NewCAS(req), req.Key, nil, span, func(res kvsm.Result, err error) {
		done(kvsm.CASResponse(res), err)
	})
}

func (n *Node) doBatch(req *kvpb.BatchRequest, done func(*kvpb.BatchResponse, error)) {
	span, done := traceRequest(n, "kv.Batch", req.GetHeader(), done)
	if err := n.cfg.Limits.ValidateBatch(req); err != nil {
		done(nil, err)
		return
	}
	c, lo, hi := kvsm.NewBatch(req)
	// Every key must lie in one range: check the lowest and the highest.
	r, err := n.route(req.Header, lo, nil)
	if err == nil && !contains(r.desc.Load(), hi) {
		err = rangeMismatch(fmt.Sprintf("batch keys %q..%q span more than range %d", lo, hi, r.id), r)
	}
	if err != nil {
		done(nil, err)
		return
	}
	n.submitTracedWrite(r, c, func(res kvsm.Result, err error) {
		if err != nil {
			done(nil, err)
			return
		}
		done(kvsm.BatchResponse(req, res))
	}, span)
}

// kvServer implements the KV gRPC service.
type kvServer struct {
	kvpb.UnimplementedKVServer
	n *Node
}

func (s *kvServer) Get(ctx context.Context, req *kvpb.GetRequest) (*kvpb.GetResponse, error) {
	return await(ctx, s.n, func(done func(*kvpb.GetResponse, error)) { s.n.doGet(req, done) })
}

func (s *kvServer) Put(ctx context.Context, req *kvpb.PutRequest) (*kvpb.PutResponse, error) {
	return await(ctx, s.n, func(done func(*kvpb.PutResponse, error)) { s.n.doPut(req, done) })
}

func (s *kvServer) Delete(ctx context.Context, req *kvpb.DeleteRequest) (*kvpb.DeleteResponse, error) {
	return await(ctx, s.n, func(done func(*kvpb.DeleteResponse, error)) { s.n.doDelete(req, done) })
}

func (s *kvServer) Scan(ctx context.Context, req *kvpb.ScanRequest) (*kvpb.ScanResponse, error) {
	return await(ctx, s.n, func(done func(*kvpb.ScanResponse, error)) { s.n.doScan(req, done) })
}

func (s *kvServer) CompareAndSwap(ctx context.Context, req *kvpb.CompareAndSwapRequest) (*kvpb.CompareAndSwapResponse, error) {
	return await(ctx, s.n, func(done func(*kvpb.CompareAndSwapResponse, error)) { s.n.doCAS(req, done) })
}

func (s *kvServer) Batch(ctx context.Context, req *kvpb.BatchRequest) (*kvpb.BatchResponse, error) {
	return await(ctx, s.n, func(done func(*kvpb.BatchResponse, error)) { s.n.doBatch(req, done) })
}

// Stream serves many requests per frame. Each request runs in callback
// style; responses are gathered and flushed by one sender goroutine per
// stream, many per frame, in whatever order they complete.
func (s *kvServer) Stream(stream kvpb.KV_StreamServer) error {
	out := make(chan *kvpb.Response, 4096)
	sendErr := make(chan error, 1)
	ctx := stream.Context()
	go func() {
		for {
			var frame kvpb.ResponseFrame
			select {
			case resp := <-out:
				frame.Responses = append(frame.Responses, resp)
			case <-ctx.Done():
				sendErr <- ctx.Err()
				return
			}
			size := proto.Size(frame.Responses[0])
		drain:
			for len(frame.Responses) < 1024 && size < 4<<20 {
				select {
				case resp := <-out:
					frame.Responses = append(frame.Responses, resp)
					size += proto.Size(resp)
				default:
					break drain
				}
			}
			if err := stream.Send(&frame); err != nil {
				sendErr <- err
				return
			}
		}
	}()
	for {
		frame, err := stream.Recv()
		if err != nil {
			if errors.Is(err, context.Canceled) {
				return nil
			}
			return err
		}
		for _, req := range frame.Requests {
			start, method := time.Now(), kvMethodOf(req)
			s.n.dispatch(req, func(resp *kvpb.Response) {
				s.n.metrics.kvDone(method, start, codes.Code(resp.GetError().GetCode()))
				select {
				case out <- resp:
				case <-ctx.Done():
				}
			})
		}
		select {
		case err := <-sendErr:
			return err
		default:
		}
	}
}

// dispatch runs one streamed request and reports its response.
func (n *Node) dispatch(req *kvpb.Request, reply func(*kvpb.Response)) {
	id := req.Id
	fail := func(err error) { reply(&kvpb.Response{Id: id, Error: toError(err)}) }
	if err := n.cfg.Limits.ValidateRequest(req); err != nil {
		fail(err)
		return
	}
	switch op := req.Op.(type) {
	case *kvpb.Request_Get:
		n.doGet(op.Get, func(r *kvpb.GetResponse, err error) {
			respond(reply, id, err, &kvpb.Response{Result: &kvpb.Response_Get{Get: r}})
		})
	case *kvpb.Request_Put:
		n.doPut(op.Put, func(r *kvpb.PutResponse, err error) {
			respond(reply, id, err, &kvpb.Response{Result: &kvpb.Response_Put{Put: r}})
		})
	case *kvpb.Request_Delete:
		n.doDelete(op.Delete, func(r *kvpb.DeleteResponse, err error) {
			respond(reply, id, err, &kvpb.Response{Result: &kvpb.Response_Delete{Delete: r}})
		})
	case *kvpb.Request_Scan:
		n.doScan(op.Scan, func(r *kvpb.ScanResponse, err error) {
			respond(reply, id, err, &kvpb.Response{Result: &kvpb.Response_Scan{Scan: r}})
		})
	case *kvpb.Request_Cas:
		n.doCAS(op.Cas, func(r *kvpb.CompareAndSwapResponse, err error) {
			respond(reply, id, err, &kvpb.Response{Result: &kvpb.Response_Cas{Cas: r}})
		})
	case *kvpb.Request_Batch:
		n.doBatch(op.Batch, func(r *kvpb.BatchResponse, err error) {
			respond(reply, id, err, &kvpb.Response{Result: &kvpb.Response_Batch{Batch: r}})
		})
	}
}

func respond(reply func(*kvpb.Response), id uint64, err error, ok *kvpb.Response) {
	if err != nil {
		reply(&kvpb.Response{Id: id, Error: toError(err)})
		return
	}
	ok.Id = id
	reply(ok)
}

// toError turns a gRPC status into a stream response's Error, keeping the
// typed details.
func toError(err error) *kvpb.Error {
	st := status.Convert(err)
	e := &kvpb.Error{Code: uint32(st.Code()), Message: st.Message()}
	for _, d := range st.Details() {
		switch d := d.(type) {
		case *kvpb.NotLeader:
			e.NotLeader = d
		case *kvpb.RangeMismatch:
			e.RangeMismatch = d
		}
	}
	return e
}
