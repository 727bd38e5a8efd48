package node

import (
	"context"
	"errors"
	"strings"
	"time"

	"github.com/shardd/shardd/engine"
	"github.com/shardd/shardd/internal/tracing"
	"github.com/shardd/shardd/kvpb"
	pb "github.com/shardd/shardd/paxospb"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/trace"
)

// The spans of one traced write, across the nodes of its range:
//
//	router.Put                               client
//	└─ kv.Put                                leader: the KV handler, until the reply
//	   ├─ paxos.propose                      the command waits for the value it rides in
//	   └─ paxos.value  slot, ballot, commands  Propose to applied; event "chosen"
//	      ├─ paxos.persist  records, synced  the cycle's batch and the fsync it shared
//	      ├─ paxos.accept  peer=2            the round trip to a follower
//	      │  └─ paxos.acceptor               follower 2: the accept message stepped to the reply sent
//	      │     ├─ paxos.persist             follower 2's fsync
//	      │     ├─ paxos.reply               follower 2 hands its acceptance to the transport
//	      │     └─ paxos.apply               follower 2 applies it, once it learns it chosen
//	      ├─ paxos.accept  peer=3 ...
//	      └─ paxos.apply                     the leader applies it and answers
//
// Each node records its own spans with its own tracer provider: they meet
// in one trace at the collector, or in `shardd trace`, which asks every
// node's span buffer (the Trace service) for them.
//
// A value that carries several traced commands, and a persist shared by
// several traced values or acceptors, is the root of its own trace
// linked to each instead (tracing.StartShared). Reads: kv.Get with a
// read.lease or read.quorum child.
//
// The trace context crosses to the followers in the Trace field of the
// accept message, inside the frames the transport batches per peer: no
// RPC per message. Only a sampled trace fills it; everything here is
// gated on a nil replica.traces or an empty Trace, so a node that traces
// nothing allocates nothing for tracing on its hot path
// (TestTracingOffAllocatesNothing).

// tracerName is the instrumentation scope of the node's spans.
const tracerName = "github.com/shardd/shardd/node"

// errLeadershipLost ends the spans of values whose fate a lost leadership
// left unknown.
var errLeadershipLost = errors.New("leadership lost before the value was applied")

// replicaTraces is a replica's tracing state, nil while no traced work is
// in flight in the group. It belongs to the replica's worker.
type replicaTraces struct {
	// values are the traced values this replica proposed as leader, by
	// slot, until applied and every accept round trip ended.
	values map[uint64]*valueTrace
	// accepted are, on a follower, the acceptor spans of the traced slots
	// it accepted, for the span of their apply.
	accepted map[uint64]trace.SpanContext
	// acceptors are the acceptor spans started in this cycle: their
	// replies end them (traceSent).
	acceptors []acceptorTrace
	// applies are the apply spans started in this cycle.
	applies []appliedTrace
}

type valueTrace struct {
	span trace.Span
	// accepts are the open round trips to the followers, by node.
	accepts map[uint64]trace.Span
	chosen  bool
	applied bool
}

type acceptorTrace struct {
	span      trace.Span
	lo, hi    uint64 // the slots of the accept
	persisted bool
}

// tracedCommand is a traced write waiting in the mailbox: its handler's
// span and its wait for a value.
type tracedCommand struct {
	req, propose trace.Span
}

type appliedTrace struct {
	slot uint64
	span trace.Span
}

// maxAcceptedTraces bounds a follower's memory of traced slots whose apply
// it has not seen yet.
const maxAcceptedTraces = 64

func (n *Node) traces(r *replica) *replicaTraces {
	if r.traces == nil {
		r.traces = &replicaTraces{values: make(map[uint64]*valueTrace), accepted: make(map[uint64]trace.SpanContext)}
	}
	return r.traces
}

func (n *Node) rangeAttrs(r *replica) []attribute.KeyValue {
	return []attribute.KeyValue{tracing.Node.Int64(int64(n.cfg.NodeID)), tracing.Range.Int64(int64(r.id)), tracing.Group.Int64(int64(r.id))}
}

// startRequest starts the handler span of a KV request: a child of the
// trace context in its header, or a root the node samples itself. It
// returns nil, at the cost of a length check, when the request is not
// traced.
func (n *Node) startRequest(name string, tp []byte) trace.Span {
	ctx, ok := tracing.ContextFrom(context.Background(), tp)
	if !ok && !n.traceRoots {
		return nil
	}
	_, span := n.tracer.Start(ctx, name, trace.WithSpanKind(trace.SpanKindServer),
		trace.WithAttributes(tracing.Node.Int64(int64(n.cfg.NodeID))))
	if !span.IsRecording() {
		return nil
	}
	return span
}

// traceRequest starts the handler span of a KV request with header h
// (nil if it is not traced: see startRequest) and returns done wrapped to
// end it with the request's outcome.
func traceRequest[T any](n *Node, name string, h *kvpb.RequestHeader, done func(T, error)) (trace.Span, func(T, error)) {
	span := n.startRequest(name, h.GetTraceparent())
	return span, traced(span, done)
}

// traced wraps done to end span (nil: not traced) with the request's
// outcome.
func traced[T any](span trace.Span, done func(T, error)) func(T, error) {
	if span == nil {
		return done
	}
	return func(v T, err error) {
		tracing.EndWith(span, err)
		done(v, err)
	}
}

// proposeSpan starts the wait of a traced command for its Paxos value.
func (n *Node) proposeSpan(r *replica, req trace.Span) trace.Span {
	_, span := tracing.ChildOf(n.tracer, req.SpanContext(), "paxos.propose", trace.WithAttributes(n.rangeAttrs(r)...))
	return span
}

// traceProposed starts the span of a value just proposed at slot, which
// carries commands commands, of which the traced ones waited in
// proposing (their paxos.propose spans, which end now).
func (n *Node) traceProposed(r *replica, slot uint64, commands int, proposing []tracedCommand) {
	served := make([]trace.SpanContext, len(proposing))
	for i, tc := range proposing {
		tc.propose.SetAttributes(tracing.Slot.Int64(int64(slot)))
		tc.propose.End()
		served[i] = tc.req.SpanContext()
	}
	attrs := append(n.rangeAttrs(r), tracing.Slot.Int64(int64(slot)), tracing.Commands.Int(commands),
		tracing.Ballot.String(r.rn.Status().Ballot.String()))
	_, span := tracing.StartShared(n.tracer, "paxos.value", served, attrs...)
	n.traces(r).values[slot] = &valueTrace{span: span, accepts: make(map[uint64]trace.Span)}
}

// traceProposeFailed ends the propose spans of commands whose value was
// refused.
func traceProposeFailed(proposing []tracedCommand, err error) {
	for _, tc := range proposing {
		tracing.EndWith(tc.propose, err)
	}
}

// traceStep notes what a message stepped by a replica with traced work,
// or carrying a trace context, means for the traces: on a leader, an
// acceptance ends the round trip to its sender; on a follower, a traced
// accept starts the acceptor span. Untraced, it costs two comparisons.
func (n *Node) traceStep(r *replica, m *pb.Message) {
	if r.traces != nil || len(m.Trace) > 0 {
		n.traceStepSlow(r, m)
	}
}

func (n *Node) traceStepSlow(r *replica, m *pb.Message) {
	switch {
	case m.Type == pb.MsgAccept && len(m.Trace) > 0:
		sc, ok := tracing.ParseTraceparent(m.Trace)
		if !ok || !sc.IsSampled() {
			return
		}
		_, span := tracing.ChildOf(n.tracer, sc, "paxos.acceptor", trace.WithSpanKind(trace.SpanKindServer),
			trace.WithAttributes(append(n.rangeAttrs(r), tracing.Slot.Int64(int64(m.Index)), tracing.Peer.Int64(int64(m.From)),
				tracing.Ballot.String(m.Ballot.String()))...))
		t := n.traces(r)
		t.acceptors = append(t.acceptors, acceptorTrace{span: span, lo: m.Index, hi: m.LastIndex})
	case m.Type == pb.MsgAccepted && r.traces != nil && len(r.traces.values) > 0:
		for slot, v := range r.traces.values {
			if slot < m.Index || slot > m.LastIndex {
				continue
			}
			if a := v.accepts[m.From]; a != nil {
				if m.Reject != pb.RejectNone {
					a.SetAttributes(attribute.String("shardd.reject", rejectName(m.Reject)))
				}
				a.End()
				delete(v.accepts, m.From)
			}
		}
	}
}

func rejectName(r pb.RejectReason) string {
	switch r {
	case pb.RejectBallot:
		return "ballot"
	case pb.RejectLease:
		return "lease"
	case pb.RejectBehind:
		return "behind"
	case pb.RejectNotMember:
		return "not-member"
	}
	return "none"
}

// traceChosen marks the traced values the group now knows chosen.
func (n *Node) traceChosen(r *replica) {
	if r.traces == nil {
		return
	}
	chosen := r.rn.Chosen()
	for slot, v := range r.traces.values {
		if !v.chosen && slot <= chosen {
			v.chosen = true
			v.span.AddEvent("chosen")
		}
	}
}

// traceSend gives an accept for a traced value its round-trip span and
// carries that span's context to the follower, and a follower's
// acceptance its acceptor's context. A message carries one context: that
// of the first traced slot it holds. Untraced, it costs a comparison.
func (n *Node) traceSend(r *replica, m *pb.Message) {
	if r.traces != nil {
		n.traceSendSlow(r, m)
	}
}

func (n *Node) traceSendSlow(r *replica, m *pb.Message) {
	t := r.traces
	switch m.Type {
	case pb.MsgAccept:
		for i := range m.Entries {
			v := t.values[m.Entries[i].Slot]
			if v == nil || v.applied {
				continue
			}
			a := v.accepts[m.To]
			if a == nil {
				_, a = n.tracer.Start(trace.ContextWithSpan(context.Background(), v.span), "paxos.accept",
					trace.WithSpanKind(trace.SpanKindClient),
					trace.WithAttributes(append(n.rangeAttrs(r), tracing.Peer.Int64(int64(m.To)), tracing.Slot.Int64(int64(m.Entries[i].Slot)))...))
				v.accepts[m.To] = a
			}
			if len(m.Trace) == 0 {
				m.Trace = tracing.Traceparent(a.SpanContext())
			}
		}
	case pb.MsgAccepted:
		for _, at := range t.acceptors {
			if m.Index <= at.hi && at.lo <= m.LastIndex {
				m.Trace = tracing.Traceparent(at.span.SpanContext())
				break
			}
		}
	}
}

// tracePersisting returns the spans that the cycle's persist serves for r,
// appended to served: its traced values whose entries it writes, and its
// acceptors.
func (n *Node) tracePersisting(r *replica, entries []pb.Entry, served []trace.SpanContext) []trace.SpanContext {
	t := r.traces
	if t == nil {
		return served
	}
	for i := range entries {
		if v := t.values[entries[i].Slot]; v != nil {
			served = append(served, v.span.SpanContext())
		}
	}
	for i := range t.acceptors {
		if !t.acceptors[i].persisted {
			t.acceptors[i].persisted = true
			served = append(served, t.acceptors[i].span.SpanContext())
		}
	}
	return served
}

// startPersist starts the span of a cycle's persist, shared by served.
func (n *Node) startPersist(served []trace.SpanContext, b *engine.Batch) trace.Span {
	_, span := tracing.StartShared(n.tracer, "paxos.persist", served,
		tracing.Node.Int64(int64(n.cfg.NodeID)), attribute.Int("shardd.cycle_records", b.Count()))
	return span
}

// endPersist ends a persist span with the round the batch joined.
func endPersist(span trace.Span, round engine.Round, err error) {
	span.SetAttributes(tracing.Records.Int(round.Records), tracing.Synced.Bool(round.Synced),
		attribute.Int("shardd.round_batches", round.Batches))
	tracing.EndWith(span, err)
}

// traceApply starts the apply span of a traced slot: on the leader a child
// of its value, on a follower of its acceptor.
func (n *Node) traceApply(r *replica, slot uint64) {
	t := r.traces
	if t == nil {
		return
	}
	var parent trace.SpanContext
	if v := t.values[slot]; v != nil {
		if !v.chosen {
			v.chosen = true
			v.span.AddEvent("chosen")
		}
		parent = v.span.SpanContext()
	} else if sc, ok := t.accepted[slot]; ok {
		parent = sc
		delete(t.accepted, slot)
	} else {
		return
	}
	_, span := tracing.ChildOf(n.tracer, parent, "paxos.apply", trace.WithAttributes(append(n.rangeAttrs(r), tracing.Slot.Int64(int64(slot)))...))
	t.applies = append(t.applies, appliedTrace{slot: slot, span: span})
}

// traceSent ends what a cycle of r traced once its messages are sent and
// its clients answered: the acceptors (with their reply spans) and the
// applies, with the values they end; persisted is when the cycle's batch
// was durable, where the replies' spans start. It drops r.traces once
// empty.
func (n *Node) traceSent(r *replica, persisted time.Time) {
	t := r.traces
	if t == nil {
		return
	}
	for _, at := range t.acceptors {
		_, reply := n.tracer.Start(trace.ContextWithSpan(context.Background(), at.span), "paxos.reply",
			trace.WithTimestamp(persisted))
		reply.End()
		at.span.End()
		for s := at.lo; s <= at.hi; s++ {
			if len(t.accepted) >= maxAcceptedTraces {
				for old := range t.accepted {
					delete(t.accepted, old)
					break
				}
			}
			t.accepted[s] = at.span.SpanContext()
		}
	}
	t.acceptors = t.acceptors[:0]
	for _, a := range t.applies {
		a.span.End()
		if v := t.values[a.slot]; v != nil {
			v.applied = true
			v.span.End()
		}
	}
	t.applies = t.applies[:0]
	applied := r.rn.Applied()
	for slot := range t.accepted {
		if slot <= applied {
			delete(t.accepted, slot) // applied without an apply span: a snapshot covered it
		}
	}
	for slot, v := range t.values {
		// A follower that never answers keeps no span open for long.
		if v.applied && (len(v.accepts) == 0 || slot+uint64(maxAcceptedTraces) < applied) {
			for _, a := range v.accepts {
				a.SetAttributes(attribute.Bool("shardd.unanswered", true))
				a.End()
			}
			delete(t.values, slot)
		}
	}
	if len(t.values) == 0 && len(t.accepted) == 0 {
		r.traces = nil
	}
}

// traceLostLeadership ends the spans of values whose fate is now unknown.
func traceLostLeadership(r *replica) {
	if r.traces == nil {
		return
	}
	for slot, v := range r.traces.values {
		for _, a := range v.accepts {
			a.End()
		}
		if !v.applied {
			tracing.EndWith(v.span, errLeadershipLost)
		}
		delete(r.traces.values, slot)
	}
}

// traceReads starts, for the traced reads among reads, the span of their
// wait for the leader to confirm its index: read.lease when its lease
// lets it answer at once, read.quorum when it must hear from a majority.
func (n *Node) traceReads(r *replica, reads []*readRequest) {
	if anyTracedRead(reads) {
		n.traceReadsSlow(r, reads)
	}
}

func anyTracedRead(reads []*readRequest) bool {
	for _, rr := range reads {
		if rr.req != nil {
			return true
		}
	}
	return false
}

func (n *Node) traceReadsSlow(r *replica, reads []*readRequest) {
	name := ""
	for _, rr := range reads {
		if rr.req == nil {
			continue
		}
		if name == "" {
			name = "read.quorum"
			if r.rn.LeaseValid() {
				name = "read.lease"
			}
		}
		_, rr.wait = n.tracer.Start(trace.ContextWithSpan(context.Background(), rr.req), name, trace.WithAttributes(n.rangeAttrs(r)...))
		rr.req.SetAttributes(tracing.Read.String(name[len("read."):]))
		wait, serve := rr.wait, rr.serve
		rr.serve = func(err error) {
			tracing.EndWith(wait, err)
			serve(err)
		}
	}
}

// isAdminMethod selects the Admin calls for tracing.UnaryServerInterceptor:
// the KV calls carry their context in the request header instead.
func isAdminMethod(method string) bool { return strings.HasPrefix(method, "/shardd.kv.v1.Admin/") }

// recordingSpan returns ctx's span if it records, else nil: the span of a
// traced Admin call, whose write (a split) is traced as a client's is.
func recordingSpan(ctx context.Context) trace.Span {
	if span := trace.SpanFromContext(ctx); span.IsRecording() {
		return span
	}
	return nil
}
