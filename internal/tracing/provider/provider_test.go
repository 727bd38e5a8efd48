package provider

import (
	"context"
	"testing"

	"github.com/shardd/shardd/internal/tracing"
	"go.opentelemetry.io/otel/trace"
)

func TestTraceparentRoundTrip(t *testing.T) {
	p, err := New(Config{Sample: 1, BufferSpans: 16})
	if err != nil {
		t.Fatal(err)
	}
	_, span := p.Tracer("t").Start(context.Background(), "op")
	sc := span.SpanContext()
	tp := tracing.Traceparent(sc)
	if len(tp) != 55 || string(tp[:3]) != "00-" || string(tp[52:]) != "-01" {
		t.Fatalf("traceparent %q", tp)
	}
	got, ok := tracing.ParseTraceparent(tp)
	if !ok || got.TraceID() != sc.TraceID() || got.SpanID() != sc.SpanID() || !got.IsSampled() || !got.IsRemote() {
		t.Fatalf("parsed %v from %q, want %v", got, tp, sc)
	}
	for _, bad := range []string{"", "01" + string(tp[2:]), string(tp[:54]), string(tp[:10]) + "zz" + string(tp[12:]),
		"00-00000000000000000000000000000000-0000000000000000-01"} {
		if _, ok := tracing.ParseTraceparent([]byte(bad)); ok {
			t.Errorf("parsed %q", bad)
		}
	}
	if tracing.Traceparent(trace.SpanContext{}) != nil {
		t.Error("an unsampled context has a traceparent")
	}
}

// TestStartShared: a span serving one request is its child; one serving
// several is a root linked to each, and sampled because they are, though
// the provider samples no root of its own.
func TestStartShared(t *testing.T) {
	client, _ := New(Config{Sample: 1})
	node, _ := New(Config{BufferSpans: 64})
	var reqs []trace.SpanContext
	for range 40 {
		_, s := client.Tracer("t").Start(context.Background(), "req")
		reqs = append(reqs, s.SpanContext())
	}
	_, one := tracing.StartShared(node.Tracer("t"), "value", reqs[:1])
	if one.SpanContext().TraceID() != reqs[0].TraceID() || !one.SpanContext().IsSampled() {
		t.Errorf("a value of one request is not its child")
	}
	one.End()
	_, many := tracing.StartShared(node.Tracer("t"), "value", reqs)
	many.End()
	if many.SpanContext().TraceID() == reqs[0].TraceID() || !many.SpanContext().IsSampled() {
		t.Fatalf("a value of many requests: trace %v sampled %v", many.SpanContext().TraceID(), many.SpanContext().IsSampled())
	}
	// The buffer finds the shared span from any of the requests' traces.
	found := node.Buffer().Trace(reqs[5].TraceID())
	if len(found) != 1 || !found[0].SpanContext().Equal(many.SpanContext()) || len(found[0].Links()) != tracing.MaxLinks {
		t.Fatalf("the trace of request 5 holds %d spans", len(found))
	}
	if p := ToProto(found[0]); len(p.Links) != tracing.MaxLinks || p.Attributes[0].Value != "40" {
		t.Errorf("wire form: %d links, attributes %v", len(p.Links), p.Attributes)
	}
	_, root := node.Tracer("t").Start(context.Background(), "untraced")
	if root.IsRecording() {
		t.Error("a provider with Sample 0 sampled a root")
	}
}

func TestFromEnv(t *testing.T) {
	env := func(kv ...string) func(string) string {
		return func(k string) string {
			for i := 0; i < len(kv); i += 2 {
				if kv[i] == k {
					return kv[i+1]
				}
			}
			return ""
		}
	}
	for _, c := range []struct {
		env      func(string) string
		endpoint string
		sample   float64
		err      bool
	}{
		{env(), "", 0, false},
		{env("OTEL_EXPORTER_OTLP_ENDPOINT", "http://jaeger:4317"), "http://jaeger:4317", 0, false},
		{env("OTEL_EXPORTER_OTLP_ENDPOINT", "a:1", "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "b:2"), "b:2", 0, false},
		{env("OTEL_TRACES_SAMPLER", "parentbased_traceidratio", "OTEL_TRACES_SAMPLER_ARG", "0.01"), "", 0.01, false},
		{env("OTEL_TRACES_SAMPLER", "traceidratio"), "", 1, false},
		{env("OTEL_TRACES_SAMPLER", "always_on"), "", 1, false},
		{env("OTEL_TRACES_SAMPLER", "always_on", "OTEL_SDK_DISABLED", "true", "OTEL_EXPORTER_OTLP_ENDPOINT", "a:1"), "", 0, false},
		{env("OTEL_TRACES_SAMPLER", "traceidratio", "OTEL_TRACES_SAMPLER_ARG", "2"), "", 0, true},
		{env("OTEL_TRACES_SAMPLER", "jaeger_remote"), "", 0, true},
	} {
		cfg, err := FromEnv(Config{}, c.env)
		if (err != nil) != c.err || (err == nil && (cfg.Endpoint != c.endpoint || cfg.Sample != c.sample)) {
			t.Errorf("FromEnv: %+v %v, want endpoint %q sample %v error %v", cfg, err, c.endpoint, c.sample, c.err)
		}
	}
}
