package service

import (
	"context"

	"github.com/shardd/shardd/internal/metrics"
	"github.com/shardd/shardd/placementpb"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/metric"
)

// placementMetrics are the placement process's instruments (see package
// internal/metrics), beside those of its own node: the leader's map and
// nodes are observed when the metrics are collected; the operations and
// leader transfers are counted as they end. A process that does not lead
// reports shardd_placement_leader 0 and none of the leader's gauges.
type placementMetrics struct {
	operations metric.Int64Counter
	transfers  metric.Int64Counter
	reg        metric.Registration
}

// Operation kinds and outcomes, the labels of
// shardd_placement_operations_total.
const (
	opSplit = "split"
	opMove  = "move"

	opDone    = "done"
	opGivenUp = "given_up"
)

func (s *Server) newMetrics(mp metric.MeterProvider) error {
	b := metrics.NewBuilder(mp, "github.com/shardd/shardd/placement/service")
	m, check, gauge := b.Meter, b.Check, b.ObservableGauge
	var err error
	s.metrics.operations, err = m.Int64Counter("shardd.placement.operations", metric.WithUnit("{operation}"),
		metric.WithDescription("Range operations (splits, replica moves) this process ended while leading, by kind and result."))
	check(err)
	s.metrics.transfers, err = m.Int64Counter("shardd.placement.leader_transfers", metric.WithUnit("{transfer}"),
		metric.WithDescription("Leader transfers this process asked of the nodes (balancing, or asked for), by result."))
	check(err)
	leader := gauge("shardd.placement.leader", "{process}", "1 while this process leads the placement service, else 0.")
	revision := gauge("shardd.placement.revision", "{revision}", "The revision of the placement map: it grows by one with each change.")
	ranges := gauge("shardd.placement.ranges", "{range}", "Ranges in the placement map.")
	nodes := gauge("shardd.placement.nodes", "{node}", "Nodes registered with the placement service, live or down.")
	inProgress := gauge("shardd.placement.operations.in_progress", "{operation}", "Range operations under way.")
	live, down := metric.WithAttributes(attribute.String("state", "live")), metric.WithAttributes(attribute.String("state", "down"))
	s.metrics.reg, err = m.RegisterCallback(func(_ context.Context, o metric.Observer) error {
		s.mu.Lock()
		defer s.mu.Unlock()
		tm := s.term
		if tm == nil {
			o.ObserveInt64(leader, 0)
			return nil
		}
		o.ObserveInt64(leader, 1)
		o.ObserveInt64(revision, int64(tm.rev))
		if tm.rm != nil {
			o.ObserveInt64(ranges, int64(tm.rm.Len()))
		}
		up := len(s.liveNodesLocked(tm))
		o.ObserveInt64(nodes, int64(up), live)
		o.ObserveInt64(nodes, int64(len(tm.nodes)-up), down)
		o.ObserveInt64(inProgress, int64(len(tm.ops)))
		return nil
	}, leader, revision, ranges, nodes, inProgress)
	check(err)
	return b.Err()
}

// opEnded counts an operation that ended with result.
func (m *placementMetrics) opEnded(op *placementpb.RangeOperation, result string) {
	kind := opSplit
	if op.GetMove() != nil {
		kind = opMove
	}
	m.operations.Add(context.Background(), 1, metric.WithAttributes(attribute.String("kind", kind), attribute.String("result", result)))
}

// transferEnded counts a leader transfer that ended with err.
func (m *placementMetrics) transferEnded(err error) {
	result := "done"
	if err != nil {
		result = "failed"
	}
	m.transfers.Add(context.Background(), 1, metric.WithAttributes(attribute.String("result", result)))
}

// close stops observing the process.
func (m *placementMetrics) close() {
	if m.reg != nil {
		_ = m.reg.Unregister()
	}
}
