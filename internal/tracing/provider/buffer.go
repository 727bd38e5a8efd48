package provider

import (
	"context"
	"sync"

	"github.com/shardd/shardd/internal/tracing"
	"github.com/shardd/shardd/kvpb"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/trace"
	"google.golang.org/grpc"
)

// Buffer is a span processor that keeps the last spans that ended, a
// fixed number of them, for `shardd trace` to read by trace id (the Trace
// gRPC service). Only sampled spans reach it, so an idle buffer costs
// nothing; a busy one costs a lock and a slot per sampled span.
type Buffer struct {
	mu    sync.Mutex
	spans []sdktrace.ReadOnlySpan // a ring; next is the oldest once full
	next  int
}

// NewBuffer returns a Buffer of n spans.
func NewBuffer(n int) *Buffer {
	return &Buffer{spans: make([]sdktrace.ReadOnlySpan, 0, n)}
}

// OnStart implements sdktrace.SpanProcessor.
func (b *Buffer) OnStart(context.Context, sdktrace.ReadWriteSpan) {}

// OnEnd implements sdktrace.SpanProcessor.
func (b *Buffer) OnEnd(s sdktrace.ReadOnlySpan) {
	b.mu.Lock()
	if len(b.spans) < cap(b.spans) {
		b.spans = append(b.spans, s)
	} else {
		b.spans[b.next] = s
		b.next = (b.next + 1) % len(b.spans)
	}
	b.mu.Unlock()
}

// Shutdown implements sdktrace.SpanProcessor.
func (b *Buffer) Shutdown(context.Context) error { return nil }

// ForceFlush implements sdktrace.SpanProcessor.
func (b *Buffer) ForceFlush(context.Context) error { return nil }

// Trace returns the buffered spans of trace id, and those of every trace
// one of whose spans links to a span of it: a Paxos value or an fsync
// that served several traced requests is the root of a trace of its own,
// linked to each (tracing.StartShared), and belongs to each request's
// story.
func (b *Buffer) Trace(id trace.TraceID) []sdktrace.ReadOnlySpan {
	b.mu.Lock()
	defer b.mu.Unlock()
	traces := map[trace.TraceID]bool{id: true}
	for _, s := range b.spans {
		for _, l := range s.Links() {
			if l.SpanContext.TraceID() == id {
				traces[s.SpanContext().TraceID()] = true
			}
		}
	}
	var out []sdktrace.ReadOnlySpan
	for _, s := range b.spans {
		if traces[s.SpanContext().TraceID()] {
			out = append(out, s)
		}
	}
	return out
}

// Spans returns every buffered span, oldest first.
func (b *Buffer) Spans() []sdktrace.ReadOnlySpan {
	b.mu.Lock()
	defer b.mu.Unlock()
	out := make([]sdktrace.ReadOnlySpan, 0, len(b.spans))
	out = append(out, b.spans[b.next:]...)
	return append(out, b.spans[:b.next]...)
}

// ToProto converts a finished span to its wire form.
func ToProto(s sdktrace.ReadOnlySpan) *kvpb.TraceSpan {
	sc := s.SpanContext()
	tid, sid := sc.TraceID(), sc.SpanID()
	p := &kvpb.TraceSpan{
		TraceId:       tid[:],
		SpanId:        sid[:],
		Name:          s.Name(),
		Kind:          s.SpanKind().String(),
		StartUnixNano: uint64(s.StartTime().UnixNano()),
		EndUnixNano:   uint64(s.EndTime().UnixNano()),
		Attributes:    attrs(s.Attributes()),
	}
	if parent := s.Parent(); parent.IsValid() {
		psid := parent.SpanID()
		p.ParentSpanId = psid[:]
	}
	if res := s.Resource(); res != nil {
		for _, kv := range res.Attributes() {
			switch kv.Key {
			case "service.name":
				p.Service = kv.Value.AsString()
			case tracing.Node:
				p.NodeId = uint64(kv.Value.AsInt64())
			}
		}
	}
	for _, l := range s.Links() {
		ltid, lsid := l.SpanContext.TraceID(), l.SpanContext.SpanID()
		p.Links = append(p.Links, &kvpb.SpanLink{TraceId: ltid[:], SpanId: lsid[:]})
	}
	for _, e := range s.Events() {
		p.Events = append(p.Events, &kvpb.SpanEvent{Name: e.Name, TimeUnixNano: uint64(e.Time.UnixNano()), Attributes: attrs(e.Attributes)})
	}
	if st := s.Status(); st.Code == codes.Error {
		p.Failed, p.Error = true, st.Description
	}
	return p
}

func attrs(kvs []attribute.KeyValue) []*kvpb.SpanAttribute {
	if len(kvs) == 0 {
		return nil
	}
	out := make([]*kvpb.SpanAttribute, len(kvs))
	for i, kv := range kvs {
		out[i] = &kvpb.SpanAttribute{Key: string(kv.Key), Value: kv.Value.Emit()}
	}
	return out
}

// RegisterTraceService serves b's spans on s as the Trace service of node
// nodeID.
func RegisterTraceService(s grpc.ServiceRegistrar, b *Buffer, nodeID uint64) {
	kvpb.RegisterTraceServer(s, &traceServer{b: b, node: nodeID})
}

type traceServer struct {
	kvpb.UnimplementedTraceServer
	b    *Buffer
	node uint64
}

func (t *traceServer) Spans(_ context.Context, req *kvpb.SpansRequest) (*kvpb.SpansResponse, error) {
	resp := &kvpb.SpansResponse{NodeId: t.node}
	if t.b == nil || len(req.TraceId) != len(trace.TraceID{}) {
		return resp, nil
	}
	for _, s := range t.b.Trace(trace.TraceID(req.TraceId)) {
		resp.Spans = append(resp.Spans, ToProto(s))
	}
	return resp, nil
}
