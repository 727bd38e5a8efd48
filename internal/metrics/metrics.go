// Package metrics holds what the instrumented packages (node, engine,
// transport, placement/service) share about their OpenTelemetry metrics:
// the no-op default and the histogram buckets. Each package creates its
// own instruments from the metric.MeterProvider its Config gives it; the
// process exports them on a Prometheus /metrics endpoint (package
// endpoint), one provider per node so that each node's series carry its
// labels.
//
// Names follow Prometheus conventions once exported: an instrument
// "shardd.wal.fsync.duration" with unit "s" is the histogram
// shardd_wal_fsync_duration_seconds, a counter "shardd.paxos.proposals"
// is shardd_paxos_proposals_total. Units in braces ("{message}") are
// annotations and add no suffix.
//
// What a hot path records costs an atomic add or one histogram Record
// without attributes (or with an attribute set built once): no allocation
// per request or message. Gauges and most counters are observed at
// collection time from counters the packages keep anyway.
package metrics

import (
	"errors"

	"go.opentelemetry.io/otel/metric"
	"go.opentelemetry.io/otel/metric/noop"
)

// Meter returns the meter of the instrumentation scope from mp, or a no-op
// meter when mp is nil: metrics are off unless the process asks for them,
// and in-process tests pay nothing for them.
func Meter(mp metric.MeterProvider, scope string) metric.Meter {
	if mp == nil {
		mp = noop.NewMeterProvider()
	}
	return mp.Meter(scope)
}

// Builder makes a package's instruments from the meter of its scope and
// keeps their errors, so that the package's constructor checks them once
// (Err) rather than after each instrument.
type Builder struct {
	metric.Meter
	errs []error
}

// NewBuilder returns a Builder of the scope's instruments from mp (nil: no
// metrics; see Meter).
func NewBuilder(mp metric.MeterProvider, scope string) *Builder {
	return &Builder{Meter: Meter(mp, scope)}
}

// Check keeps err, the error of making an instrument, for Err.
func (b *Builder) Check(err error) {
	if err != nil {
		b.errs = append(b.errs, err)
	}
}

// ObservableCounter makes an int64 counter observed at collection time.
func (b *Builder) ObservableCounter(name, unit, desc string) metric.Int64ObservableCounter {
	c, err := b.Int64ObservableCounter(name, metric.WithUnit(unit), metric.WithDescription(desc))
	b.Check(err)
	return c
}

// ObservableGauge makes an int64 gauge observed at collection time.
func (b *Builder) ObservableGauge(name, unit, desc string) metric.Int64ObservableGauge {
	g, err := b.Int64ObservableGauge(name, metric.WithUnit(unit), metric.WithDescription(desc))
	b.Check(err)
	return g
}

// Err returns the errors kept, nil if every instrument was made.
func (b *Builder) Err() error { return errors.Join(b.errs...) }

// LatencyBuckets are the bounds, in seconds, of the latency histograms:
// from 50µs (an fsync on a fast NVMe disk, a read under the lease) to 10s
// (a client's usual timeout), about three per decade.
var LatencyBuckets = []float64{
	0.00005, 0.0001, 0.00025, 0.0005,
	0.001, 0.0025, 0.005, 0.01, 0.025, 0.05,
	0.1, 0.25, 0.5, 1, 2.5, 5, 10,
}

// CountBuckets are the bounds of the batch size histograms (commands per
// Paxos value, records per fsync, messages per frame): powers of two up to
// 8192, since batching grows with load by doublings.
var CountBuckets = []float64{1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024, 2048, 4096, 8192}
