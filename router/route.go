package router

import (
	"context"
	"fmt"
	"math/rand/v2"
	"time"

	"github.com/shardd/shardd/internal/tracing"
	"github.com/shardd/shardd/kvpb"
	"go.opentelemetry.io/otel/trace"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// routeOpts says how to route and retry one request.
type routeOpts struct {
	// stale lets any replica serve a read.
	stale bool
	// seq is a write's number in the Client's session (0 for a read):
	// every attempt carries it, so the write is applied at most once
	// however often it is sent.
	seq uint64
	// check vets the range the request is about to be routed to.
	check func(*kvpb.RangeDescriptor) error
	// op names the operation, for its span: "Get", "Put", ...
	op string
}

// run routes one request for key to the range holding it and retries it
// until it succeeds, fails for good, runs out of attempts or ctx ends.
// build makes a fresh request per attempt (a request once handed to a
// stream is never touched again) with the given header.
//
//   - FailedPrecondition with NotLeader: remember the hinted leader and
//     retry at once if the hint names a node not yet tried; otherwise back
//     off and try another replica.
//   - FailedPrecondition with RangeMismatch: cache the node's descriptor
//     and those of the ranges it says hold the key now if they are newer,
//     and retry at once; otherwise drop the cached range, ask the Source,
//     and retry (backing off if that keeps happening).
//   - Unavailable, a broken stream, no connection: back off and retry,
//     avoiding the failed node for a while.
//   - Aborted (a write whose result its range no longer remembers) and
//     anything else (InvalidArgument, Internal, ...) is returned at once.
//
// When attempts run out, the last error is returned with its message
// prefixed; routing errors (FailedPrecondition) turn into Unavailable,
// since they are the cluster's transient state, not the caller's doing.
//
// A write's error says its fate (see ErrAmbiguous): ambiguous once an
// attempt may have been applied and no later one learned the outcome.
// Retrying such a write is safe because every attempt carries the same
// session number; it stops MaxRetryAge after the first attempt.
func (c *Client) run(ctx context.Context, key []byte, o routeOpts, build func(*kvpb.RequestHeader) *kvpb.Request) (_ *kvpb.Response, err error) {
	maybeApplied := false
	if o.seq != 0 {
		defer func() { err = writeFailed(err, maybeApplied) }()
	}
	var tp []byte
	attempts := 0
	if c.tracer != nil {
		var span trace.Span
		ctx, span = c.tracer.Start(ctx, "router."+o.op, trace.WithSpanKind(trace.SpanKindClient))
		if span.IsRecording() {
			defer func() {
				span.SetAttributes(tracing.Attempts.Int(attempts))
				tracing.EndWith(span, err)
			}()
		} else {
			span.End()
		}
	}
	// Only a sampled trace is worth carrying: nobody records the others.
	if sc := trace.SpanContextFromContext(ctx); sc.IsSampled() {
		tp = tracing.Traceparent(sc)
	}
	var lastErr error
	tried := make(map[uint64]bool, 4)
	backoffs, mismatches := 0, 0
	wait := false
	start := time.Now()
	for attempt := 0; attempt < c.cfg.MaxAttempts; attempt++ {
		if attempt > 0 {
			c.stats.retries.Add(1)
		}
		if wait {
			if err := c.sleep(ctx, backoffs, lastErr); err != nil {
				return nil, err
			}
			backoffs++
			clear(tried)
			wait = false
		}
		if c.ctx.Err() != nil {
			return nil, errClosed
		}
		if ctx.Err() != nil {
			return nil, ctxError(ctx, lastErr)
		}
		if maybeApplied && time.Since(start) > MaxRetryAge {
			return nil, exhausted(lastErr, attempt)
		}

		d, leader := c.cache.lookup(key)
		if d == nil {
			if err := c.refresh(ctx, key); err != nil {
				if ctx.Err() != nil {
					return nil, ctxError(ctx, lastErr)
				}
				lastErr, wait = err, true
				continue
			}
			if d, leader = c.cache.lookup(key); d == nil {
				lastErr = status.Errorf(codes.Unavailable, "router: no known range holds key %q", key)
				wait = true
				continue
			}
		}
		if o.check != nil {
			if err := o.check(d); err != nil {
				return nil, err
			}
		}
		node := c.pick(d, leader, o.stale, tried)
		tried[node] = true
		nc, err := c.conn(node)
		switch {
		case isClosed(err):
			return nil, err
		case err != nil:
			c.markSuspect(node)
			lastErr, wait = err, true
			continue
		case nc == nil:
			// The node's address is unknown: the Source may know it.
			lastErr = status.Errorf(codes.Unavailable, "router: no address known for node %d", node)
			_ = c.refresh(ctx, key)
			wait = true
			continue
		}

		h := &kvpb.RequestHeader{RangeId: d.RangeId, Generation: d.Generation, Traceparent: tp}
		attempts++
		if o.stale {
			h.Consistency = kvpb.ReadConsistency_STALE
		}
		if o.seq != 0 {
			h.ClientId, h.Seq, h.AckedBelow = c.session.clientID, o.seq, min(c.session.ackedBelow(), o.seq)
		}
		r := nc.do(ctx, build(h))
		if r.err != nil {
			maybeApplied = maybeApplied || r.sent
			switch {
			case c.ctx.Err() != nil:
				return nil, errClosed
			case ctx.Err() != nil:
				return nil, ctxError(ctx, lastErr)
			}
			c.markSuspect(node)
			c.cache.forgetLeader(d.RangeId, node)
			lastErr, wait = r.err, true
			continue
		}
		e := r.resp.Error
		if e == nil {
			if !o.stale && leader != node {
				c.cache.setLeader(d.RangeId, node)
			}
			return r.resp, nil
		}
		lastErr = statusOf(e)
		switch {
		case e.NotLeader != nil:
			c.stats.redirects.Add(1)
			hint := e.NotLeader.LeaderNodeId
			c.setAddr(hint, e.NotLeader.LeaderAddr)
			fresh := hint != 0 && hint != node && !c.isSuspect(hint, time.Now())
			if fresh {
				c.cache.setLeader(d.RangeId, hint)
			} else {
				c.cache.forgetLeader(d.RangeId, node)
			}
			wait = !fresh || tried[hint]
		case e.RangeMismatch != nil:
			c.stats.mismatches.Add(1)
			nd := e.RangeMismatch.Descriptor_
			// The ranges the node says hold the key now (the right half
			// of a split) route the retry without asking the Source.
			learned := false
			for _, o := range e.RangeMismatch.Others {
				learned = c.cache.install(o) || learned
			}
			switch {
			case learned && (nd == nil || nd.Generation >= d.Generation):
				c.cache.install(nd)
				continue
			case nd != nil && nd.Generation > d.Generation:
				c.cache.install(nd)
				continue // the fresh descriptor routes at once
			case nd != nil && nd.Generation < d.Generation:
				// The node lags behind the change we know of: try
				// another replica.
				c.cache.forgetLeader(d.RangeId, node)
				wait = true
			default:
				// The node no longer has the range, or has it as we do
				// but not holding key: our view is wrong; ask the
				// Source afresh.
				c.cache.evict(d.RangeId, d.Generation)
				mismatches++
				wait = mismatches > 1
			}
		case codes.Code(e.Code) == codes.ResourceExhausted:
			// The node refused to queue the write: it was never proposed,
			// so even a compare-and-swap may go again.
			wait = true
		case codes.Code(e.Code) == codes.Unavailable:
			// For a write: perhaps applied (the leader changed while it
			// was in flight); a retry learns whether.
			maybeApplied = maybeApplied || o.seq != 0
			wait = true
		case codes.Code(e.Code) == codes.Aborted && o.seq != 0:
			// The range no longer remembers the write's result: nobody
			// can learn its fate now.
			maybeApplied = true
			return nil, lastErr
		default:
			return nil, lastErr
		}
	}
	return nil, exhausted(lastErr, c.cfg.MaxAttempts)
}

// pick chooses the node to send a request for range d to: the leader if
// known and not yet tried (for a stale read too), else a random replica
// not yet tried, preferring nodes that have not failed lately. Only
// voters can lead, so a linearizable request skips learners.
func (c *Client) pick(d *kvpb.RangeDescriptor, leader uint64, stale bool, tried map[uint64]bool) uint64 {
	now := time.Now()
	if leader != 0 && !tried[leader] && !c.isSuspect(leader, now) {
		return leader
	}
	var good, suspect, all []uint64
	for _, r := range d.Replicas {
		if !stale && r.Role == kvpb.ReplicaRole_LEARNER {
			continue
		}
		all = append(all, r.NodeId)
		switch {
		case tried[r.NodeId]:
		case c.isSuspect(r.NodeId, now):
			suspect = append(suspect, r.NodeId)
		default:
			good = append(good, r.NodeId)
		}
	}
	switch {
	case len(good) > 0:
		return good[rand.IntN(len(good))]
	case len(suspect) > 0:
		return suspect[rand.IntN(len(suspect))]
	case leader != 0:
		return leader
	case len(all) > 0:
		return all[rand.IntN(len(all))]
	}
	return d.Replicas[rand.IntN(len(d.Replicas))].NodeId
}

// sleep waits the n-th backoff: InitialBackoff doubled n times, capped at
// MaxBackoff, of which a random half is jitter.
func (c *Client) sleep(ctx context.Context, n int, lastErr error) error {
	d := c.cfg.MaxBackoff
	if n < 30 {
		d = min(c.cfg.InitialBackoff<<n, c.cfg.MaxBackoff)
	}
	d = d/2 + rand.N(d/2+1)
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return ctxError(ctx, lastErr)
	case <-c.ctx.Done():
		return errClosed
	}
}

// exhausted is the error of a request that ran out of attempts.
func exhausted(last error, attempts int) error {
	if last == nil {
		return status.Errorf(codes.Unavailable, "router: gave up after %d attempts", attempts)
	}
	p := status.Convert(last).Proto()
	if codes.Code(p.Code) == codes.FailedPrecondition {
		p.Code = int32(codes.Unavailable)
	}
	p.Message = fmt.Sprintf("router: gave up after %d attempts: %s", attempts, p.Message)
	return status.FromProto(p).Err()
}
