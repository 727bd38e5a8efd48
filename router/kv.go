package router

import (
	"bytes"
	"context"

	"github.com/shardd/shardd/kvpb"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// scanChunk is the most keys one scan request asks a node for: the
// nodes' default limit, so a node with tightened limits still accepts it.
const scanChunk = kvpb.DefaultDefaultScanLimit

// ReadOption changes how a read is served.
type ReadOption struct{ stale bool }

// Stale lets any replica serve the read from what it has applied, which
// may lag behind the latest writes: the leader if the Client knows it,
// else any replica. It spares the leader and works while a range has no
// leader.
func Stale() ReadOption { return ReadOption{stale: true} }

func readOpts(op string, opts []ReadOption) routeOpts {
	ro := routeOpts{op: op}
	for _, o := range opts {
		ro.stale = ro.stale || o.stale
	}
	return ro
}

var errEmptyKey = status.Error(codes.InvalidArgument, "router: key is empty")

func unexpected(what string) error {
	return status.Errorf(codes.Internal, "router: node answered a %s request with another kind of response", what)
}

// Get returns the value of key and whether it exists. The read is
// linearizable unless Stale is given. Errors: InvalidArgument for a bad
// key; Unavailable when no leader answered within the attempts;
// DeadlineExceeded or Canceled when ctx ends; Canceled after Close.
func (c *Client) Get(ctx context.Context, key []byte, opts ...ReadOption) (value []byte, found bool, err error) {
	if len(key) == 0 {
		return nil, false, errEmptyKey
	}
	resp, err := c.run(ctx, key, readOpts("Get", opts), func(h *kvpb.RequestHeader) *kvpb.Request {
		return &kvpb.Request{Op: &kvpb.Request_Get{Get: &kvpb.GetRequest{Header: h, Key: key}}}
	})
	if err != nil {
		return nil, false, err
	}
	g := resp.GetGet()
	if g == nil {
		return nil, false, unexpected("get")
	}
	if g.Found && g.Value == nil {
		g.Value = []byte{}
	}
	return g.Value, g.Found, nil
}

// writeOpts numbers a new write in the Client's session; the caller must
// call done when the write is finished.
func (c *Client) writeOpts(op string) (o routeOpts, done func()) {
	seq := c.session.begin()
	return routeOpts{seq: seq, op: op}, func() { c.session.end(seq) }
}

// Put sets key to value. Errors as for Get, and the error says the put's
// fate (ErrAmbiguous or ErrNotApplied). A put whose outcome was lost (a
// leader change or a broken connection while it was in flight) is
// retried: it is applied at most once however often it is sent.
func (c *Client) Put(ctx context.Context, key, value []byte) error {
	if len(key) == 0 {
		return writeFailed(errEmptyKey, false)
	}
	o, done := c.writeOpts("Put")
	defer done()
	resp, err := c.run(ctx, key, o, func(h *kvpb.RequestHeader) *kvpb.Request {
		return &kvpb.Request{Op: &kvpb.Request_Put{Put: &kvpb.PutRequest{Header: h, Key: key, Value: value}}}
	})
	if err == nil && resp.GetPut() == nil {
		err = writeFailed(unexpected("put"), true)
	}
	return err
}

// Delete removes key and reports whether it existed. Errors and retries
// as for Put; found is what the one application of the delete saw.
func (c *Client) Delete(ctx context.Context, key []byte) (found bool, err error) {
	if len(key) == 0 {
		return false, writeFailed(errEmptyKey, false)
	}
	o, done := c.writeOpts("Delete")
	defer done()
	resp, err := c.run(ctx, key, o, func(h *kvpb.RequestHeader) *kvpb.Request {
		return &kvpb.Request{Op: &kvpb.Request_Delete{Delete: &kvpb.DeleteRequest{Header: h, Key: key}}}
	})
	if err != nil {
		return false, err
	}
	d := resp.GetDelete()
	if d == nil {
		return false, writeFailed(unexpected("delete"), true)
	}
	return d.Found, nil
}

// CAS is a compare-and-swap: set Key to NewValue (or delete it, if Delete
// is set) if its current value is Expected or, with ExpectAbsent, if it
// does not exist.
type CAS struct {
	Key          []byte
	Expected     []byte
	ExpectAbsent bool
	NewValue     []byte
	Delete       bool
}

// CASResult is the outcome of a compare-and-swap: whether it swapped, and
// the value found before, whether or not it swapped.
type CASResult struct {
	Swapped bool
	Found   bool
	Current []byte
}

// CompareAndSwap applies cas atomically. It is retried like Put: a retry
// of a CAS that was applied returns the first application's result (it
// does not compare again against its own write). InvalidArgument reports
// a bad request (an empty key, Expected with ExpectAbsent, NewValue with
// Delete). Errors say the CAS's fate, as for Put.
func (c *Client) CompareAndSwap(ctx context.Context, cas CAS) (CASResult, error) {
	if len(cas.Key) == 0 {
		return CASResult{}, writeFailed(errEmptyKey, false)
	}
	switch {
	case cas.ExpectAbsent && len(cas.Expected) > 0:
		return CASResult{}, writeFailed(status.Error(codes.InvalidArgument, "router: CAS has both ExpectAbsent and Expected"), false)
	case cas.Delete && len(cas.NewValue) > 0:
		return CASResult{}, writeFailed(status.Error(codes.InvalidArgument, "router: CAS has both Delete and NewValue"), false)
	}
	o, done := c.writeOpts("CompareAndSwap")
	defer done()
	resp, err := c.run(ctx, cas.Key, o, func(h *kvpb.RequestHeader) *kvpb.Request {
		return &kvpb.Request{Op: &kvpb.Request_Cas{Cas: &kvpb.CompareAndSwapRequest{Header: h, Key: cas.Key,
			ExpectedValue: cas.Expected, ExpectAbsent: cas.ExpectAbsent, NewValue: cas.NewValue, Delete: cas.Delete}}}
	})
	if err != nil {
		return CASResult{}, err
	}
	r := resp.GetCas()
	if r == nil {
		return CASResult{}, writeFailed(unexpected("compare-and-swap"), true)
	}
	return CASResult{Swapped: r.Succeeded, Found: r.Found, Current: r.Value}, nil
}

// Op is one write of a Batch: a put of Value, or a delete of Key.
type Op struct {
	Key, Value []byte
	Delete     bool
}

// Batch applies ops atomically. Every key must lie in one range: if the
// Client's range map (refreshed once to make sure) puts them in more than
// one, Batch returns InvalidArgument naming the boundary they straddle,
// without sending anything. Other errors and retries are as for Put.
func (c *Client) Batch(ctx context.Context, ops []Op) error {
	return writeFailed(c.batch(ctx, ops), false)
}

func (c *Client) batch(ctx context.Context, ops []Op) error {
	if len(ops) == 0 {
		return status.Error(codes.InvalidArgument, "router: batch has no ops")
	}
	lo, hi := ops[0].Key, ops[0].Key
	for i, op := range ops {
		if len(op.Key) == 0 {
			return status.Errorf(codes.InvalidArgument, "router: batch op %d has an empty key", i)
		}
		if bytes.Compare(op.Key, lo) < 0 {
			lo = op.Key
		}
		if bytes.Compare(op.Key, hi) > 0 {
			hi = op.Key
		}
	}
	spans := func(d *kvpb.RangeDescriptor) error {
		if contains(d, hi) {
			return nil
		}
		return status.Errorf(codes.InvalidArgument,
			"router: batch keys %q and %q lie in different ranges, on either side of %q; a batch must stay within one range",
			lo, hi, d.EndKey)
	}
	// Make sure before refusing: the cache may predate a merge.
	if d, _ := c.cache.lookup(lo); d == nil || !contains(d, hi) {
		if err := c.refresh(ctx, lo); err != nil && ctx.Err() != nil {
			return err
		}
		if d, _ := c.cache.lookup(lo); d != nil {
			if err := spans(d); err != nil {
				return err
			}
		}
	}
	o, done := c.writeOpts("Batch")
	defer done()
	o.check = spans
	resp, err := c.run(ctx, lo, o, func(h *kvpb.RequestHeader) *kvpb.Request {
		b := &kvpb.BatchRequest{Header: h, Ops: make([]*kvpb.BatchOp, len(ops))}
		for i, op := range ops {
			if op.Delete {
				b.Ops[i] = &kvpb.BatchOp{Op: &kvpb.BatchOp_Delete{Delete: &kvpb.DeleteRequest{Key: op.Key}}}
			} else {
				b.Ops[i] = &kvpb.BatchOp{Op: &kvpb.BatchOp_Put{Put: &kvpb.PutRequest{Key: op.Key, Value: op.Value}}}
			}
		}
		return &kvpb.Request{Op: &kvpb.Request_Batch{Batch: b}}
	})
	if err == nil && resp.GetBatch() == nil {
		err = writeFailed(unexpected("batch"), true)
	}
	return err
}

// KeyValue is one key and its value.
type KeyValue struct {
	Key, Value []byte
}

// Scan returns the keys in [start, end) in order, with their values, at
// most limit of them (limit <= 0: all of them). An empty start means the
// start of the key space, an empty end its end. It walks the ranges in
// key order, one or more requests per range, each continuing where the
// last stopped, so the result has no gaps and no duplicates; the reads
// are linearizable one request at a time (Stale makes them stale), not
// one snapshot of the whole span.
//
// resume is non-nil if and only if Scan stopped at the limit before end:
// scanning [resume, end) continues where it stopped (and may find no more
// keys). Errors: InvalidArgument if start does not sort before a
// non-empty end; otherwise as for Get. A failed Scan returns no keys.
func (c *Client) Scan(ctx context.Context, start, end []byte, limit int, opts ...ReadOption) (kvs []KeyValue, resume []byte, err error) {
	if len(end) > 0 && bytes.Compare(start, end) >= 0 {
		return nil, nil, status.Errorf(codes.InvalidArgument, "router: scan start %q does not sort before end %q", start, end)
	}
	ro := readOpts("Scan", opts)
	cursor := start
	for {
		n := scanChunk
		if limit > 0 {
			n = min(n, limit-len(kvs))
		}
		from := cursor
		resp, err := c.run(ctx, from, ro, func(h *kvpb.RequestHeader) *kvpb.Request {
			return &kvpb.Request{Op: &kvpb.Request_Scan{Scan: &kvpb.ScanRequest{Header: h, StartKey: from, EndKey: end, Limit: uint32(n)}}}
		})
		if err != nil {
			return nil, nil, err
		}
		s := resp.GetScan()
		if s == nil {
			return nil, nil, unexpected("scan")
		}
		for _, kv := range s.Kvs {
			kvs = append(kvs, KeyValue{Key: kv.Key, Value: kv.Value})
		}
		next := s.ResumeKey
		if len(next) == 0 || (len(end) > 0 && bytes.Compare(next, end) >= 0) {
			return kvs, nil, nil
		}
		if bytes.Compare(next, from) <= 0 {
			return nil, nil, status.Errorf(codes.Internal, "router: scan from %q resumed at %q, making no progress", from, next)
		}
		if limit > 0 && len(kvs) >= limit {
			return kvs, next, nil
		}
		cursor = next
	}
}
