package endpoint

import (
	"context"
	"testing"

	"github.com/shardd/shardd/internal/testutil"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/metric"
)

// TestEndpointExportsPrometheusNames checks what an operator's Prometheus
// sees: the names the exporter derives from the instruments' names and
// units, the labels that tell two providers of one process apart, and the
// Go runtime's series beside them.
func TestEndpointExportsPrometheusNames(t *testing.T) {
	e, err := Open("127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer e.Close()
	ctx := context.Background()
	for _, id := range []uint64{1, 2} {
		mp, err := e.Provider(NodeLabel(id))
		if err != nil {
			t.Fatal(err)
		}
		m := mp.Meter("test")
		c, _ := m.Int64Counter("shardd.test.proposals", metric.WithUnit("{value}"))
		h, _ := m.Float64Histogram("shardd.test.fsync.duration", metric.WithUnit("s"), metric.WithExplicitBucketBoundaries(0.001, 0.01))
		g, _ := m.Float64ObservableGauge("shardd.test.range.ops", metric.WithUnit("{op}/s"))
		b, _ := m.Int64ObservableCounter("shardd.test.sent", metric.WithUnit("By"))
		_, _ = m.RegisterCallback(func(_ context.Context, o metric.Observer) error {
			o.ObserveFloat64(g, 2.5, metric.WithAttributes(attribute.String("range", "7")))
			o.ObserveInt64(b, 100)
			return nil
		}, g, b)
		c.Add(ctx, int64(id))
		h.Record(ctx, 0.005)
	}
	got := testutil.Scrape(t, e.URL())
	for _, want := range []struct {
		name   string
		labels []string
		value  float64
	}{
		{"shardd_test_proposals_total", []string{"node", "1"}, 1},
		{"shardd_test_proposals_total", []string{"node", "2"}, 2},
		{"shardd_test_fsync_duration_seconds", []string{"node", "1"}, 1},
		{"shardd_test_range_ops_per_second", []string{"node", "2", "range", "7"}, 2.5},
		{"shardd_test_sent_bytes_total", []string{"node", "1"}, 100},
	} {
		if v, ok := got.Value(want.name, want.labels...); !ok || v != want.value {
			t.Errorf("%s%v = %v (found %v), want %v", want.name, want.labels, v, ok, want.value)
		}
	}
	if _, ok := got.Value("go_goroutines"); !ok {
		t.Errorf("no Go runtime series (go_goroutines)")
	}
	for name := range got {
		if name == "target_info" || name == "otel_scope_info" {
			t.Errorf("series %s: the endpoint exports neither target_info nor scope info", name)
		}
	}
}

// TestRecordAllocatesNothing guards the hot paths' cost: a histogram
// Record, with no attributes or with a set built once (the node's KV
// latency by method and code), allocates nothing.
func TestRecordAllocatesNothing(t *testing.T) {
	e := New()
	defer e.Close()
	mp, err := e.Provider(NodeLabel(1))
	if err != nil {
		t.Fatal(err)
	}
	h, err := mp.Meter("test").Float64Histogram("shardd.test.duration", metric.WithUnit("s"))
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	opts := []metric.RecordOption{metric.WithAttributeSet(attribute.NewSet(attribute.String("method", "get")))}
	h.Record(ctx, 1, opts...) // the series' first record creates it
	h.Record(ctx, 1)
	if a := testing.AllocsPerRun(1000, func() { h.Record(ctx, 0.5) }); a != 0 {
		t.Errorf("Record without attributes: %v allocations", a)
	}
	if a := testing.AllocsPerRun(1000, func() { h.Record(ctx, 0.5, opts...) }); a != 0 {
		t.Errorf("Record with a prebuilt attribute set: %v allocations", a)
	}
}

// TestNilEndpointIsOff checks that metrics turned off (--metrics-addr=)
// cost nothing and need no special case at the callers.
func TestNilEndpointIsOff(t *testing.T) {
	e, err := Open("")
	if err != nil || e != nil {
		t.Fatalf("Open(\"\") = %v, %v; want nil, nil", e, err)
	}
	if mp, err := e.Provider(NodeLabel(1)); mp != nil || err != nil {
		t.Errorf("nil Endpoint's Provider = %v, %v; want nil, nil", mp, err)
	}
	if e.URL() != "" || e.Close() != nil {
		t.Errorf("nil Endpoint's URL or Close does something")
	}
}
