package engine

import (
	"context"
	"errors"
	"time"

	"github.com/shardd/shardd/internal/metrics"
	"go.opentelemetry.io/otel/metric"
)

// engineMetrics are the engine's instruments (see package
// internal/metrics): every synced commit, one WAL fsync, records its
// latency and its records, the width of the group commit.
type engineMetrics struct {
	fsyncDuration metric.Float64Histogram
	fsyncRecords  metric.Int64Histogram
	reg           metric.Registration
}

func (e *Engine) newMetrics(mp metric.MeterProvider) error {
	m := metrics.Meter(mp, "github.com/shardd/shardd/engine")
	var errs [5]error
	var commits, bgErrors metric.Int64ObservableCounter
	e.metrics.fsyncDuration, errs[0] = m.Float64Histogram("shardd.wal.fsync.duration", metric.WithUnit("s"),
		metric.WithDescription("Latency of the store's synced commits, each one WAL fsync shared by every group whose records it carries."),
		metric.WithExplicitBucketBoundaries(metrics.LatencyBuckets...))
	e.metrics.fsyncRecords, errs[1] = m.Int64Histogram("shardd.wal.records_per_fsync", metric.WithUnit("{record}"),
		metric.WithDescription("Records carried by each synced commit: the width of the group commit."),
		metric.WithExplicitBucketBoundaries(metrics.CountBuckets...))
	commits, errs[2] = m.Int64ObservableCounter("shardd.engine.commits", metric.WithUnit("{commit}"),
		metric.WithDescription("Batches committed to the store, synced or not."))
	bgErrors, errs[3] = m.Int64ObservableCounter("shardd.engine.background_errors", metric.WithUnit("{error}"),
		metric.WithDescription("Errors of the store's flushes and compactions, which it retries; a growing count is a sick disk."))
	e.metrics.reg, errs[4] = m.RegisterCallback(func(_ context.Context, o metric.Observer) error {
		s := e.stats.snapshot()
		o.ObserveInt64(commits, int64(s.Commits))
		o.ObserveInt64(bgErrors, int64(s.BackgroundErrors))
		return nil
	}, commits, bgErrors)
	return errors.Join(errs[:]...)
}

// recordSync records one synced commit of records that took d. The zero
// engineMetrics (before Open made them) records nothing.
func (m *engineMetrics) recordSync(records int, d time.Duration) {
	if m.fsyncDuration == nil {
		return
	}
	ctx := context.Background()
	m.fsyncDuration.Record(ctx, d.Seconds())
	m.fsyncRecords.Record(ctx, int64(records))
}

// close stops observing the engine.
func (m *engineMetrics) close() {
	if m.reg != nil {
		_ = m.reg.Unregister()
	}
}
