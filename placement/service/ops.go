package service

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"maps"
	"slices"
	"sync/atomic"
	"time"

	"github.com/shardd/shardd/internal/tracing"
	"github.com/shardd/shardd/kvpb"
	"github.com/shardd/shardd/placement"
	"github.com/shardd/shardd/placementpb"
	"go.opentelemetry.io/otel/attribute"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
)

// Operations on ranges. The placement leader drives each operation on a
// range (a split, for now) through the range's nodes, one at a time per
// range. It records the operation (op/<range id>, with whatever it
// allocated for it, such as the new range's id) in the same revision-
// fenced write that checks it may start, before its first step reaches a
// node; it records the outcome, and deletes the record, in one write once
// the nodes report it. A leader that takes over finds the records and
// drives them again: every step is one the nodes answer the same way when
// asked twice (a split that applied returns its halves), so a step that
// was lost with its leader is simply repeated. An operation the nodes
// refuse for good (the range changed under it) is rolled back: its record
// is deleted and nothing else changes.

// opStep names a step of an operation that its driver has reached; see
// testHook.
type opStep string

const (
	stepRecorded     opStep = "recorded"      // recorded; no node has heard of it
	stepSplitApplied opStep = "split applied" // the range's leader applied the split; not recorded
	stepLearnerAdded opStep = "learner added" // the target is the range's learner; not recorded
	stepPromoted     opStep = "promoted"      // the target is a voter; not recorded
	stepLeaderMoved  opStep = "leader moved"  // the source handed its leadership to the target
	stepRemoved      opStep = "removed"       // the source's replica left the range; not recorded
)

// testHook, if set, is called by the operation drivers at each step they
// reach, before they record it, on the goroutine that drives the
// operation (ctx is its context), so that tests can stop processes at
// that step. Production leaves it nil.
var testHook atomic.Pointer[func(ctx context.Context, op *placementpb.RangeOperation, step opStep)]

// reached calls testHook, if set.
func reached(ctx context.Context, op *placementpb.RangeOperation, step opStep) {
	if h := testHook.Load(); h != nil {
		(*h)(ctx, op, step)
	}
}

// opDeadline bounds how long one call drives or waits for an operation
// before it answers Unavailable and leaves the operation to the background
// rounds: less than a client's per-attempt timeout, so that the client's
// retry finds the operation and waits for it.
const opDeadline = 2500 * time.Millisecond

// ListOperations implements the API: the operations under way, by range,
// and the balancer's recent decisions.
func (a *api) ListOperations(context.Context, *placementpb.ListOperationsRequest) (*placementpb.ListOperationsResponse, error) {
	tm, err := a.s.leading()
	if err != nil {
		return nil, err
	}
	a.s.mu.Lock()
	defer a.s.mu.Unlock()
	resp := &placementpb.ListOperationsResponse{}
	for _, id := range slices.Sorted(maps.Keys(tm.ops)) {
		op := tm.ops[id]
		resp.Operations = append(resp.Operations, op)
		resp.Descriptions = append(resp.Descriptions, fmt.Sprintf("%s, under way for %v", describeOp(op),
			time.Since(time.Unix(0, op.StartedUnixNanos)).Round(time.Millisecond)))
	}
	resp.RecentDecisions = slices.Clone(a.s.decisions)
	return resp, nil
}

// describeOp says what an operation is, for errors and logs.
func describeOp(op *placementpb.RangeOperation) string {
	switch o := op.Op.(type) {
	case *placementpb.RangeOperation_Split:
		return fmt.Sprintf("a split of range %d at %q into range %d", op.RangeId, o.Split.Key, o.Split.NewRangeId)
	case *placementpb.RangeOperation_Move:
		return fmt.Sprintf("a move of range %d's replica from node %d to node %d (%s)", op.RangeId, o.Move.From, o.Move.To, o.Move.Reason)
	}
	return fmt.Sprintf("an operation on range %d", op.RangeId)
}

// split records and then drives a split of the range holding key. A call
// for a split already under way at the same key (a client's retry) waits
// for it and answers with its halves.
func (s *Server) split(ctx context.Context, key []byte) (*placementpb.SplitRangeResponse, error) {
	ctx, cancel := context.WithTimeout(ctx, opDeadline)
	defer cancel()
	var op *placementpb.RangeOperation
	var busy uint64 // the range on which the same split is under way
	err := s.mutate(ctx, func(tm *term) (*mutation, func(*term) *placementpb.WatchEvent, error) {
		if tm.rm == nil {
			return nil, nil, s.notBootstrappedLocked(tm)
		}
		d := tm.rm.Lookup(key)
		if bytes.Equal(d.StartKey, key) {
			return nil, nil, status.Errorf(codes.FailedPrecondition, "key %q is already where range %d starts", key, d.RangeId)
		}
		if o := tm.ops[d.RangeId]; o != nil {
			if bytes.Equal(o.GetSplit().GetKey(), key) {
				busy = d.RangeId
				return nil, nil, nil
			}
			return nil, nil, status.Errorf(codes.FailedPrecondition, "range %d is busy with %s", d.RangeId, describeOp(o))
		}
		op = &placementpb.RangeOperation{RangeId: d.RangeId, StartedUnixNanos: time.Now().UnixNano(),
			Op: &placementpb.RangeOperation_Split{Split: &placementpb.SplitOperation{Key: key, NewRangeId: tm.nextRangeID}}}
		m := &mutation{}
		m.putOp(op)
		m.put(keyNextID, encUint(tm.nextRangeID+1))
		return m, func(tm *term) *placementpb.WatchEvent {
			tm.ops[op.RangeId] = op
			tm.driving[op.RangeId] = true
			tm.nextRangeID++
			return nil
		}, nil
	})
	if err != nil {
		if _, ok := status.FromError(err); ok && status.Code(err) != codes.Unknown {
			return nil, err
		}
		return nil, s.writeError(err)
	}
	if busy != 0 {
		return s.awaitSplit(ctx, busy, key)
	}
	s.log.Info("splitting a range", "range", op.RangeId, "key", fmt.Sprintf("%q", key), "new range", op.GetSplit().NewRangeId)
	reached(ctx, op, stepRecorded)
	return s.driveSplit(ctx, op)
}

// awaitSplit waits until the operation under way on range id, a split
// at key, ends, and returns the halves on either side of key.
func (s *Server) awaitSplit(ctx context.Context, id uint64, key []byte) (*placementpb.SplitRangeResponse, error) {
	rm, rev, err := s.awaitOpEnd(ctx, id, fmt.Sprintf("the split at %q", key))
	if err != nil {
		return nil, err
	}
	right := rm.Lookup(key)
	if !bytes.Equal(right.StartKey, key) {
		return nil, status.Errorf(codes.FailedPrecondition, "the split at %q was given up", key)
	}
	var left *kvpb.RangeDescriptor
	for _, d := range rm.All() {
		if bytes.Equal(d.EndKey, key) {
			left = d
		}
	}
	return &placementpb.SplitRangeResponse{Left: left, Right: right, Revision: rev}, nil
}

// awaitOpEnd waits until no operation is under way on range id (one a
// caller's retry found: what names it), and returns the map and its
// revision then. If ctx ends first the operation is still under way, and
// the caller is told so (Unavailable: it will be completed).
func (s *Server) awaitOpEnd(ctx context.Context, id uint64, what string) (*placement.RangeMap, uint64, error) {
	for {
		s.mu.Lock()
		tm := s.term
		if tm == nil || tm.rm == nil {
			s.mu.Unlock()
			return nil, 0, s.notLeader()
		}
		if tm.ops[id] == nil {
			rm, rev := tm.rm, tm.rev // a term's maps are replaced, never changed
			s.mu.Unlock()
			return rm, rev, nil
		}
		changed := tm.changed
		s.mu.Unlock()
		select {
		case <-changed:
		case <-ctx.Done():
			return nil, 0, status.Errorf(codes.Unavailable, "%s is under way and will be completed; not done yet", what)
		}
	}
}

// driveSplit asks the range's leader to split it, following its hints,
// until the nodes answer or ctx ends, and records the outcome. The term
// that started driving op stops driving it when this returns.
func (s *Server) driveSplit(ctx context.Context, op *placementpb.RangeOperation) (_ *placementpb.SplitRangeResponse, err error) {
	defer s.stopDriving(op.RangeId)
	sp := op.GetSplit()
	ctx, span := s.startOp(ctx, "placement.split", op.RangeId,
		attribute.String("shardd.split_key", string(sp.GetKey())), attribute.Int64("shardd.new_range", int64(sp.GetNewRangeId())))
	defer func() { tracing.EndWith(span, err) }()
	req := &kvpb.SplitRangeRequest{RangeId: op.RangeId, SplitKey: sp.Key, NewRangeId: sp.NewRangeId}
	backoff := 20 * time.Millisecond
	var lastErr error
	for ctx.Err() == nil {
		d, addrs, ok := s.rangeAndAddrs(op.RangeId)
		if !ok {
			if _, err := s.leading(); err != nil {
				return nil, err
			}
			return nil, s.rollBack(ctx, op, fmt.Errorf("range %d is no longer in the map", op.RangeId))
		}
		var resp *kvpb.SplitRangeResponse
		err := s.askLeader(ctx, d, addrs, func(ctx context.Context, c kvpb.AdminClient) error {
			var err error
			resp, err = c.SplitRange(ctx, req)
			return err
		}, nil)
		if err == nil {
			reached(ctx, op, stepSplitApplied)
			return s.recordSplit(ctx, op, resp.Left, resp.Right)
		}
		lastErr = err
		for _, det := range status.Convert(err).Details() {
			if mm, ok := det.(*kvpb.RangeMismatch); ok && mm.Descriptor_ != nil && mm.Descriptor_.RangeId == op.RangeId &&
				!containsKey(mm.Descriptor_, sp.Key) {
				// The range no longer holds the key (the map is behind
				// the nodes): nothing to do but give up.
				return nil, s.rollBack(ctx, op, fmt.Errorf("range %d [%q, %q) no longer holds %q",
					op.RangeId, mm.Descriptor_.StartKey, mm.Descriptor_.EndKey, sp.Key))
			}
		}
		select {
		case <-ctx.Done():
		case <-time.After(backoff):
		}
		backoff = min(2*backoff, time.Second)
	}
	return nil, status.Errorf(codes.Unavailable, "%s is under way and will be completed; the range's leader has not answered yet: %v", describeOp(op), lastErr)
}

// stopDriving records that no goroutine drives the operation on range id
// any more (resumeOps takes it up if it is still recorded).
func (s *Server) stopDriving(id uint64) {
	s.mu.Lock()
	if s.term != nil {
		delete(s.term.driving, id)
	}
	s.mu.Unlock()
}

// rangeAndAddrs returns the map's descriptor of range id and the addresses
// of its replicas' nodes.
func (s *Server) rangeAndAddrs(id uint64) (*kvpb.RangeDescriptor, map[uint64]string, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	tm := s.term
	if tm == nil || tm.rm == nil {
		return nil, nil, false
	}
	d, ok := tm.rm.Get(id)
	if !ok {
		return nil, nil, false
	}
	addrs := map[uint64]string{}
	for _, r := range d.Replicas {
		if rec := tm.nodes[r.NodeId]; rec != nil {
			addrs[r.NodeId] = rec.Addr
		}
	}
	return d, addrs, true
}

func containsKey(d *kvpb.RangeDescriptor, k []byte) bool {
	return bytes.Compare(k, d.StartKey) > 0 && (len(d.EndKey) == 0 || bytes.Compare(k, d.EndKey) < 0)
}

// recordSplit records the halves a node reported for op and ends op.
func (s *Server) recordSplit(ctx context.Context, op *placementpb.RangeOperation, left, right *kvpb.RangeDescriptor) (*placementpb.SplitRangeResponse, error) {
	var rev uint64
	var recorded []*kvpb.RangeDescriptor // the halves as the map holds them
	err := s.mutate(ctx, func(tm *term) (*mutation, func(*term) *placementpb.WatchEvent, error) {
		next, halves, err := withSplit(tm.rm, left, right)
		if err != nil {
			return nil, nil, err
		}
		m := &mutation{}
		for _, d := range halves {
			m.putDesc(d)
		}
		m.delOp(op.RangeId)
		return m, func(tm *term) *placementpb.WatchEvent {
			tm.rm = next
			delete(tm.ops, op.RangeId)
			rev = tm.rev + 1
			recorded = halves
			return &placementpb.WatchEvent{Updated: halves}
		}, nil
	})
	if err != nil {
		return nil, s.writeError(err)
	}
	left, right = recorded[0], recorded[1]
	s.metrics.opEnded(op, opDone)
	s.log.Info("split a range", "left", left.RangeId, "right", right.RangeId, "key", fmt.Sprintf("%q", right.StartKey), "generation", left.Generation)
	return &placementpb.SplitRangeResponse{Left: left, Right: right, Revision: rev}, nil
}

// adoptReportedSplits records the splits the nodes report that the map
// lacks: a range the nodes hold at a higher generation and a shorter end,
// whose right half they also report under an id the map does not know,
// with no operation under way on it (that one's driver records it). It
// happens when a split applied but its outcome was never recorded: its
// record was lost with a placement state restored from an older copy, or
// a node was split through its own Admin API. The map never goes back to
// a lower generation.
func (s *Server) adoptReportedSplits(reported map[uint64]*kvpb.RangeDescriptor) {
	s.mu.Lock()
	tm := s.term
	if tm == nil || tm.rm == nil {
		s.mu.Unlock()
		return
	}
	type split struct{ left, right *kvpb.RangeDescriptor }
	var found []split
	for _, cur := range tm.rm.All() {
		left := reported[cur.RangeId]
		if left == nil || left.Generation <= cur.Generation || tm.ops[cur.RangeId] != nil ||
			len(left.EndKey) == 0 || bytes.Equal(left.EndKey, cur.EndKey) {
			continue
		}
		for _, right := range reported {
			if _, known := tm.rm.Get(right.RangeId); !known && bytes.Equal(right.StartKey, left.EndKey) {
				found = append(found, split{left, right})
				break
			}
		}
	}
	s.mu.Unlock()
	for _, sp := range found {
		err := s.mutate(s.ctx, func(tm *term) (*mutation, func(*term) *placementpb.WatchEvent, error) {
			next, halves, err := withSplit(tm.rm, sp.left, sp.right)
			if err != nil {
				return nil, nil, err
			}
			m := &mutation{}
			for _, d := range halves {
				m.putDesc(d)
			}
			nextID := max(tm.nextRangeID, sp.right.RangeId+1)
			m.put(keyNextID, encUint(nextID))
			return m, func(tm *term) *placementpb.WatchEvent {
				tm.rm, tm.nextRangeID = next, nextID
				return &placementpb.WatchEvent{Updated: halves}
			}, nil
		})
		if err != nil {
			s.log.Info("cannot record a split the nodes report", "left", sp.left.RangeId, "right", sp.right.RangeId, "err", err)
			continue
		}
		s.log.Info("recorded a split the nodes report and the map lacked", "left", sp.left.RangeId, "right", sp.right.RangeId,
			"key", fmt.Sprintf("%q", sp.right.StartKey), "generation", sp.left.Generation)
	}
}

// withSplit returns rm with the range left.RangeId replaced by the two
// halves a node reported (their generations and replicas are the nodes',
// which may be ahead of the map's), and the halves as the returned map
// holds them: what to store, never the reported ones, whose leader hints
// may be stale. The map never goes back to a lower generation: halves
// older than what it holds change nothing.
func withSplit(rm *placement.RangeMap, left, right *kvpb.RangeDescriptor) (*placement.RangeMap, []*kvpb.RangeDescriptor, error) {
	if cur, ok := rm.Get(left.RangeId); ok && cur.Generation >= left.Generation {
		if r, has := rm.Get(right.RangeId); has {
			return rm, []*kvpb.RangeDescriptor{cur, r}, nil // recorded already
		}
	}
	var descs []*kvpb.RangeDescriptor
	for _, d := range rm.All() {
		switch d.RangeId {
		case left.RangeId:
			l, r := proto.Clone(left).(*kvpb.RangeDescriptor), proto.Clone(right).(*kvpb.RangeDescriptor)
			// The left half's hint is the one its node stored, which may
			// name a replica moved away since; the right half's is the
			// leader that proposed the split.
			l.LeaderNodeId = voterHint(l, d.LeaderNodeId, left.LeaderNodeId)
			r.LeaderNodeId = voterHint(r, right.LeaderNodeId, d.LeaderNodeId)
			descs = append(descs, l, r)
		case right.RangeId:
		default:
			descs = append(descs, d)
		}
	}
	next, err := placement.NewRangeMap(descs)
	if err != nil {
		return nil, nil, err
	}
	l, _ := next.Get(left.RangeId)
	r, _ := next.Get(right.RangeId)
	return next, []*kvpb.RangeDescriptor{l, r}, nil
}

// voterHint returns the first of hints that is a voter of d, or 0. A
// leader hint is only a hint, and the map names no leader that is not a
// voter (RangeMap refuses it), so a stale hint, whatever view it came
// from, must not make a change the nodes report impossible to record.
func voterHint(d *kvpb.RangeDescriptor, hints ...uint64) uint64 {
	for _, h := range hints {
		if role, ok := roleOf(d, h); ok && role == kvpb.ReplicaRole_VOTER {
			return h
		}
	}
	return 0
}

// rollBack ends op without changing the map, and returns why as the
// caller's error.
func (s *Server) rollBack(ctx context.Context, op *placementpb.RangeOperation, why error) error {
	err := s.mutate(ctx, func(tm *term) (*mutation, func(*term) *placementpb.WatchEvent, error) {
		m := &mutation{}
		m.delOp(op.RangeId)
		return m, func(tm *term) *placementpb.WatchEvent {
			delete(tm.ops, op.RangeId)
			return nil
		}, nil
	})
	if err != nil {
		return s.writeError(err)
	}
	s.metrics.opEnded(op, opGivenUp)
	s.log.Info("gave up an operation", "op", describeOp(op), "reason", why)
	return status.Errorf(codes.FailedPrecondition, "%s was given up: %v", describeOp(op), why)
}

// resumeOps drives, in the background, the recorded operations that no
// goroutine of this term drives: those a former leader left, and those
// whose caller gave up waiting.
func (s *Server) resumeOps() {
	s.mu.Lock()
	tm := s.term
	if tm == nil {
		s.mu.Unlock()
		return
	}
	var todo []*placementpb.RangeOperation
	for id, op := range tm.ops {
		if !tm.driving[id] {
			tm.driving[id] = true
			todo = append(todo, op)
		}
	}
	s.mu.Unlock()
	for _, op := range todo {
		s.log.Info("resuming an operation", "op", describeOp(op))
		s.wg.Add(1)
		go func() {
			defer s.wg.Done()
			ctx, cancel := context.WithTimeout(s.ctx, opDeadline)
			defer cancel()
			var err error
			switch op.Op.(type) {
			case *placementpb.RangeOperation_Split:
				_, err = s.driveSplit(ctx, op)
			case *placementpb.RangeOperation_Move:
				_, err = s.driveMove(ctx, op)
			default:
				err = errors.New("unknown operation")
			}
			if err != nil {
				s.log.Info("operation not finished; the next round retries", "op", describeOp(op), "err", err)
			}
		}()
	}
}
