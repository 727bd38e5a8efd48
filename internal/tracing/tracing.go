// Package tracing holds what every traced component shares, at the cost of
// the OpenTelemetry API alone (no SDK, no exporter), so that the router,
// a client library, can use it: the W3C traceparent that requests and
// Paxos messages carry, the attribute names, the rule for a span that
// serves many requests, and the gRPC metadata propagation of Admin calls.
//
// The SDK side (sampler, exporter, the in-memory span buffer that
// `shardd trace` reads) is in the provider subpackage.
package tracing

import (
	"context"
	"encoding/hex"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/trace"
)

// Attribute keys of shardd's spans.
const (
	// Node is the node that recorded the span (a resource attribute too).
	Node = attribute.Key("shardd.node")
	// Range and Group name the range and its Paxos group (equal today).
	Range = attribute.Key("shardd.range")
	Group = attribute.Key("shardd.group")
	// Slot and Ballot place a Paxos value in its group's log.
	Slot   = attribute.Key("shardd.slot")
	Ballot = attribute.Key("shardd.ballot")
	// Commands counts the client commands a Paxos value carries.
	Commands = attribute.Key("shardd.commands")
	// Records counts the records a persisted batch carries; Synced tells
	// whether it needed an fsync.
	Records = attribute.Key("shardd.records")
	Synced  = attribute.Key("shardd.synced")
	// Peer is the other node of a round trip.
	Peer = attribute.Key("shardd.peer")
	// Served counts the requests a shared span serves, of which at most
	// MaxLinks are linked.
	Served = attribute.Key("shardd.served")
	// Attempts counts a router request's attempts.
	Attempts = attribute.Key("shardd.attempts")
	// Read says how a read was served: "lease", "quorum" or "stale".
	Read = attribute.Key("shardd.read")
)

// MaxLinks bounds the links of a shared span: a value of thousands of
// commands links the first MaxLinks sampled ones and counts them all.
const MaxLinks = 32

// traceparentLen is the length of a version 00 traceparent:
// "00-" 32 hex "-" 16 hex "-" 2 hex.
const traceparentLen = 55

// AppendTraceparent appends sc as a W3C traceparent
// ("00-<trace id>-<span id>-<flags>") to dst.
func AppendTraceparent(dst []byte, sc trace.SpanContext) []byte {
	tid, sid := sc.TraceID(), sc.SpanID()
	dst = append(dst, "00-"...)
	dst = hex.AppendEncode(dst, tid[:])
	dst = append(dst, '-')
	dst = hex.AppendEncode(dst, sid[:])
	dst = append(dst, '-')
	return hex.AppendEncode(dst, []byte{byte(sc.TraceFlags())})
}

// Traceparent returns sc as a W3C traceparent, or nil if sc is not
// sampled: nothing downstream records an unsampled trace, so it is not
// worth its 55 bytes per request or message.
func Traceparent(sc trace.SpanContext) []byte {
	if !sc.IsSampled() {
		return nil
	}
	return AppendTraceparent(make([]byte, 0, traceparentLen), sc)
}

// ParseTraceparent decodes a W3C traceparent of version 00 into a remote
// span context; ok is false for anything else (an empty one included).
func ParseTraceparent(b []byte) (sc trace.SpanContext, ok bool) {
	if len(b) != traceparentLen || b[0] != '0' || b[1] != '0' || b[2] != '-' || b[35] != '-' || b[52] != '-' {
		return trace.SpanContext{}, false
	}
	var cfg trace.SpanContextConfig
	var flags [1]byte
	if _, err := hex.Decode(cfg.TraceID[:], b[3:35]); err != nil {
		return trace.SpanContext{}, false
	}
	if _, err := hex.Decode(cfg.SpanID[:], b[36:52]); err != nil {
		return trace.SpanContext{}, false
	}
	if _, err := hex.Decode(flags[:], b[53:55]); err != nil {
		return trace.SpanContext{}, false
	}
	cfg.TraceFlags = trace.TraceFlags(flags[0])
	cfg.Remote = true
	sc = trace.NewSpanContext(cfg)
	return sc, sc.IsValid()
}

// ContextFrom returns ctx carrying the remote span context of traceparent
// tp, and whether tp held a sampled one: a caller gates all its tracing
// work on ok, so an untraced request costs one length check.
func ContextFrom(ctx context.Context, tp []byte) (_ context.Context, ok bool) {
	if len(tp) == 0 {
		return ctx, false
	}
	sc, ok := ParseTraceparent(tp)
	if !ok || !sc.IsSampled() {
		return ctx, false
	}
	return trace.ContextWithRemoteSpanContext(ctx, sc), true
}

// StartShared starts a span for work that serves several traced requests
// at once, such as a Paxos value carrying many commands or an fsync
// shared by many groups: the OpenTelemetry way for a batch. With one
// request it is that request's child, which is the plain truth. With
// several it is the root of its own trace, linked to each request (at
// most MaxLinks, the count in Served) rather than made the child of one
// of them picked at random; a trace viewer follows the links, and so
// does `shardd trace` (provider.Buffer.Trace). The sampler must sample a
// root whose links are sampled (provider does).
func StartShared(t trace.Tracer, name string, served []trace.SpanContext, attrs ...attribute.KeyValue) (context.Context, trace.Span) {
	ctx := context.Background()
	opts := []trace.SpanStartOption{trace.WithAttributes(attrs...)}
	if len(served) == 1 {
		ctx = trace.ContextWithSpanContext(ctx, served[0])
	} else {
		links := make([]trace.Link, 0, min(len(served), MaxLinks))
		for _, sc := range served[:min(len(served), MaxLinks)] {
			links = append(links, trace.Link{SpanContext: sc})
		}
		opts = append(opts, trace.WithNewRoot(), trace.WithLinks(links...),
			trace.WithAttributes(Served.Int(len(served))))
	}
	return t.Start(ctx, name, opts...)
}

// ChildOf starts a span whose parent is sc.
func ChildOf(t trace.Tracer, sc trace.SpanContext, name string, opts ...trace.SpanStartOption) (context.Context, trace.Span) {
	return t.Start(trace.ContextWithSpanContext(context.Background(), sc), name, opts...)
}

// EndWith ends span, recording err on it first if there is one.
func EndWith(span trace.Span, err error) {
	if err != nil {
		span.RecordError(err)
		span.SetStatus(codes.Error, err.Error())
	}
	span.End()
}
