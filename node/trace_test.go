package node

import (
	"context"
	"encoding/hex"
	"fmt"
	"net"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/shardd/shardd/internal/tracing"
	"github.com/shardd/shardd/internal/tracing/provider"
	"github.com/shardd/shardd/kvpb"
	pb "github.com/shardd/shardd/paxospb"
	"github.com/shardd/shardd/router"
	coltracepb "go.opentelemetry.io/proto/otlp/collector/trace/v1"
	commonpb "go.opentelemetry.io/proto/otlp/common/v1"
	tracepb "go.opentelemetry.io/proto/otlp/trace/v1"
	"google.golang.org/grpc"
)

// otlpReceiver is an OTLP/gRPC trace collector in the test process: what
// Jaeger or an OpenTelemetry Collector would receive.
type otlpReceiver struct {
	coltracepb.UnimplementedTraceServiceServer
	addr  string
	mu    sync.Mutex
	spans []receivedSpan
}

// receivedSpan is a span with the shardd.node of the resource it came
// from (0 for the client).
type receivedSpan struct {
	*tracepb.Span
	service string
	node    int64
}

func startOTLPReceiver(t testing.TB) *otlpReceiver {
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	r := &otlpReceiver{addr: lis.Addr().String()}
	s := grpc.NewServer()
	coltracepb.RegisterTraceServiceServer(s, r)
	go func() { _ = s.Serve(lis) }()
	t.Cleanup(s.Stop)
	return r
}

func (r *otlpReceiver) Export(_ context.Context, req *coltracepb.ExportTraceServiceRequest) (*coltracepb.ExportTraceServiceResponse, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, rs := range req.ResourceSpans {
		var service string
		var node int64
		for _, kv := range rs.GetResource().GetAttributes() {
			switch kv.Key {
			case "service.name":
				service = kv.Value.GetStringValue()
			case string(tracing.Node):
				node = kv.Value.GetIntValue()
			}
		}
		for _, ss := range rs.ScopeSpans {
			for _, s := range ss.Spans {
				r.spans = append(r.spans, receivedSpan{Span: s, service: service, node: node})
			}
		}
	}
	return &coltracepb.ExportTraceServiceResponse{}, nil
}

func (r *otlpReceiver) received() []receivedSpan {
	r.mu.Lock()
	defer r.mu.Unlock()
	return slices.Clone(r.spans)
}

func attr(s *tracepb.Span, key string) (*commonpb.AnyValue, bool) {
	for _, kv := range s.Attributes {
		if kv.Key == string(key) {
			return kv.Value, true
		}
	}
	return nil, false
}

// TestTracedPutIsOneTrace exports the spans of three nodes and a router to
// a real OTLP receiver, makes one traced Put, and checks that they form
// one trace: the client's span, the leader's handler, its value with its
// persist, accept round trips and apply, and on each follower an acceptor
// span (a child of the leader's round trip to it, through the trace
// context the accept carried in the frame) with its persist and reply.
func TestTracedPutIsOneTrace(t *testing.T) {
	recv := startOTLPReceiver(t)
	c := newTestCluster(t, 3, splitRanges(1, 3), func(cfg *Config) {
		cfg.Tracing.Endpoint = recv.addr
	})
	lead := c.leaderFor(1)
	// A write first, untraced, so the traced one finds the range settled.
	if err := c.do(1, func(kv kvpb.KVClient) error {
		_, err := kv.Put(ctx(t), &kvpb.PutRequest{Key: []byte("warm"), Value: []byte("up")})
		return err
	}); err != nil {
		t.Fatal(err)
	}
	client, err := provider.New(provider.Config{Endpoint: recv.addr, Sample: 1, ServiceName: "client"})
	if err != nil {
		t.Fatal(err)
	}
	rc, err := router.New(ctx(t), router.Config{Seeds: []string{c.nodes[lead].Addr()}, TracerProvider: client.TracerProvider()})
	if err != nil {
		t.Fatal(err)
	}
	defer rc.Close()
	// The application's own span, around the Put, gives the test the
	// trace id.
	app, appSpan := client.Tracer("test").Start(ctx(t), "app")
	if err := rc.Put(app, []byte("traced"), []byte("value")); err != nil {
		t.Fatal(err)
	}
	appSpan.End()
	// The Put returns once a majority accepted: wait until the leader
	// heard from both followers, so that its round trips to them ended.
	waitFor(t, 10*time.Second, func() bool {
		accepts := 0
		for _, s := range c.nodes[lead].tracing.Buffer().Trace(appSpan.SpanContext().TraceID()) {
			if s.Name() == "paxos.accept" {
				accepts++
			}
		}
		return accepts == 2
	})
	// Stopping flushes every exporter.
	if err := client.Shutdown(ctx(t)); err != nil {
		t.Fatal(err)
	}
	c.stop()

	spans := recv.received()
	var root *receivedSpan
	for i := range spans {
		if spans[i].Name == "router.Put" {
			root = &spans[i]
		}
	}
	if root == nil {
		t.Fatalf("no router.Put span among %d spans:\n%s", len(spans), dumpSpans(spans))
	}
	byID := map[string]*receivedSpan{}
	var trace []*receivedSpan
	for i := range spans {
		if string(spans[i].TraceId) == string(root.TraceId) {
			trace = append(trace, &spans[i])
			byID[string(spans[i].SpanId)] = &spans[i]
		}
	}
	parentOf := func(s *receivedSpan) *receivedSpan { return byID[string(s.ParentSpanId)] }
	find := func(name string, node int64, parent *receivedSpan) *receivedSpan {
		t.Helper()
		for _, s := range trace {
			if s.Name == name && s.node == node && (parent == nil || parentOf(s) == parent) {
				return s
			}
		}
		t.Fatalf("no %s span on node %d (parent %v) in the trace:\n%s", name, node, parent.GetName(), dumpSpans(spans))
		return nil
	}
	if root.service != "client" || parentOf(root).GetName() != "app" || root.Kind != tracepb.Span_SPAN_KIND_CLIENT {
		t.Errorf("router.Put: service %q parent %x kind %v", root.service, root.ParentSpanId, root.Kind)
	}
	leader := int64(lead)
	handler := find("kv.Put", leader, root)
	find("paxos.propose", leader, handler)
	value := find("paxos.value", leader, handler)
	if v, _ := attr(value.Span, string(tracing.Slot)); v.GetIntValue() < 1 {
		t.Errorf("paxos.value has no slot: %v", value.Attributes)
	}
	if v, _ := attr(value.Span, string(tracing.Commands)); v.GetIntValue() != 1 {
		t.Errorf("paxos.value commands: %v", v)
	}
	if !slices.ContainsFunc(value.Events, func(e *tracepb.Span_Event) bool { return e.Name == "chosen" }) {
		t.Errorf("paxos.value has no chosen event")
	}
	find("paxos.persist", leader, value)
	find("paxos.apply", leader, value)
	for id := range c.nodes {
		if int64(id) == leader {
			continue
		}
		var accept *receivedSpan
		for _, s := range trace {
			if v, _ := attr(s.Span, string(tracing.Peer)); s.Name == "paxos.accept" && parentOf(s) == value && v.GetIntValue() == int64(id) {
				accept = s
			}
		}
		if accept == nil {
			t.Fatalf("no paxos.accept span to node %d:\n%s", id, dumpSpans(spans))
		}
		acceptor := find("paxos.acceptor", int64(id), accept)
		find("paxos.persist", int64(id), acceptor)
		find("paxos.reply", int64(id), acceptor)
		if acceptor.EndTimeUnixNano > accept.EndTimeUnixNano+uint64(time.Second) {
			t.Errorf("node %d's acceptor ended long after the round trip to it", id)
		}
	}
	if t.Failed() {
		t.Logf("spans:\n%s", dumpSpans(spans))
	}
}

func dumpSpans(spans []receivedSpan) string {
	var b strings.Builder
	for _, s := range spans {
		fmt.Fprintf(&b, "  %s node=%d trace=%s span=%s parent=%s links=%d\n", s.Name, s.node,
			hex.EncodeToString(s.TraceId)[:8], hex.EncodeToString(s.SpanId)[:8], hex.EncodeToString(s.ParentSpanId), len(s.Links))
	}
	return b.String()
}

// TestTracingOffAllocatesNothing checks the price of tracing on the hot
// path of a node that traces nothing: every hook that a message, a write
// or a read passes through on a node, and the encoding of the messages
// (whose Trace stays empty) into a frame buffer, allocates nothing. An
// allocation per message here would cost every write of an untraced
// cluster.
func TestTracingOffAllocatesNothing(t *testing.T) {
	c := newTestCluster(t, 1, splitRanges(1, 1), nil)
	n := c.nodes[1]
	r := n.replica(1)
	msgs := make([]pb.Message, 64)
	for i := range msgs {
		msgs[i] = pb.Message{Type: pb.MsgAccept, Group: 1, From: 1, To: 2, Index: uint64(i + 1), LastIndex: uint64(i + 1),
			Entries: []pb.Entry{{Slot: uint64(i + 1), Type: pb.EntryNormal, Data: []byte("value")}}}
	}
	entries := []pb.Entry{{Slot: 1, Type: pb.EntryNormal}}
	reads := []*readRequest{{serve: func(error) {}}}
	done := func(*kvpb.PutResponse, error) {}
	header := &kvpb.RequestHeader{RangeId: 1}
	frame := make([]byte, 0, 64<<10)
	allocs := testing.AllocsPerRun(100, func() {
		frame = frame[:0]
		for i := range msgs {
			m := msgs[i]
			n.traceStep(r, &m)
			n.traceSend(r, &m)
			frame = m.Append(frame)
		}
		_, _ = traceRequest(n, "kv.Put", header, done)
		_ = n.tracePersisting(r, entries, nil)
		n.traceChosen(r)
		n.traceApply(r, 1)
		n.traceReads(r, reads)
		n.traceSent(r, time.Time{})
	})
	if allocs != 0 {
		t.Errorf("tracing off: %v allocations per cycle of %d messages, want 0", allocs, len(msgs))
	}
	for i := range msgs {
		if len(msgs[i].Trace) != 0 {
			t.Errorf("message %d carries a trace context: %q", i, msgs[i].Trace)
		}
	}
}

// waitFor polls cond until it holds, failing the test after d.
func waitFor(t *testing.T, d time.Duration, cond func() bool) {
	t.Helper()
	for deadline := time.Now().Add(d); !cond(); time.Sleep(5 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("condition not met within %v", d)
		}
	}
}
