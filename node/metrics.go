package node

import (
	"cmp"
	"context"
	"slices"
	"strconv"
	"time"

	"github.com/shardd/shardd/internal/metrics"
	"github.com/shardd/shardd/kvpb"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/metric"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// The node's metrics (see package internal/metrics, and the README's list
// of series). The hot paths record what only they see: a Paxos value's
// commands, a KV request's latency, each one histogram Record with an
// attribute set built at start. Counts the node keeps anyway (proposals,
// commits, leadership changes) and the gauges (groups, leaders, leases,
// queues, range loads) are read when the metrics are collected, by one
// callback that walks the replicas once.

// kvMethod indexes the KV methods for their latency series.
type kvMethod int

const (
	kvGet kvMethod = iota
	kvPut
	kvDelete
	kvScan
	kvCAS
	kvBatch
	numKVMethods
)

var kvMethodNames = [numKVMethods]string{kvGet: "get", kvPut: "put", kvDelete: "delete", kvScan: "scan", kvCAS: "cas", kvBatch: "batch"}

// kvUnaryMethods maps the KV service's unary RPCs to their methods.
var kvUnaryMethods = map[string]kvMethod{
	kvpb.KV_Get_FullMethodName: kvGet, kvpb.KV_Put_FullMethodName: kvPut, kvpb.KV_Delete_FullMethodName: kvDelete,
	kvpb.KV_Scan_FullMethodName: kvScan, kvpb.KV_CompareAndSwap_FullMethodName: kvCAS, kvpb.KV_Batch_FullMethodName: kvBatch,
}

// kvMethodOf returns the method of a streamed request.
func kvMethodOf(req *kvpb.Request) kvMethod {
	switch req.Op.(type) {
	case *kvpb.Request_Put:
		return kvPut
	case *kvpb.Request_Delete:
		return kvDelete
	case *kvpb.Request_Scan:
		return kvScan
	case *kvpb.Request_Cas:
		return kvCAS
	case *kvpb.Request_Batch:
		return kvBatch
	default:
		return kvGet
	}
}

// numCodes is the number of gRPC status codes (OK to Unauthenticated).
const numCodes = int(codes.Unauthenticated) + 1

// rangeLoadSeries is how many ranges shardd_range_ops_per_second shows: the
// busiest this node leads. A node leads thousands of ranges; a series each
// would swamp Prometheus, and the few hottest are what an operator (and
// the balancer) acts on.
const rangeLoadSeries = 10

// nodeMetrics are the node's instruments.
type nodeMetrics struct {
	commandsPerValue metric.Int64Histogram
	kvDuration       metric.Float64Histogram
	// kvAttrs are the attribute sets of kvDuration by method and code,
	// made once: a Record with them allocates nothing.
	kvAttrs [numKVMethods][numCodes][]metric.RecordOption
	reg     metric.Registration
}

func (n *Node) newMetrics(mp metric.MeterProvider) error {
	b := metrics.NewBuilder(mp, "github.com/shardd/shardd/node")
	nm := &n.metrics
	m, check, counter, gauge := b.Meter, b.Check, b.ObservableCounter, b.ObservableGauge
	var err error
	nm.commandsPerValue, err = m.Int64Histogram("shardd.paxos.commands_per_value", metric.WithUnit("{command}"),
		metric.WithDescription("Client commands carried by each Paxos value this node proposed: the batching of writes into one slot."),
		metric.WithExplicitBucketBoundaries(metrics.CountBuckets...))
	check(err)
	nm.kvDuration, err = m.Float64Histogram("shardd.kv.request.duration", metric.WithUnit("s"),
		metric.WithDescription("Latency of the KV requests this node served, unary or streamed, by method and gRPC status code."),
		metric.WithExplicitBucketBoundaries(metrics.LatencyBuckets...))
	check(err)
	for meth, name := range kvMethodNames {
		for c := range numCodes {
			set := attribute.NewSet(attribute.String("method", name), attribute.String("code", codes.Code(c).String()))
			nm.kvAttrs[meth][c] = []metric.RecordOption{metric.WithAttributeSet(set)}
		}
	}
	proposals := counter("shardd.paxos.proposals", "{value}", "Paxos values proposed by the groups this node leads.")
	proposed := counter("shardd.paxos.proposed_commands", "{command}", "Client commands in the values proposed by the groups this node leads.")
	commits := counter("shardd.paxos.commits", "{value}", "Paxos values chosen and applied in the groups this node leads.")
	gained := counter("shardd.leaderships.gained", "{group}", "Groups whose leadership this node took.")
	lost := counter("shardd.leaderships.lost", "{group}", "Groups whose leadership this node lost or handed off.")
	groups := gauge("shardd.groups", "{group}", "Group replicas this node hosts.")
	leaders := gauge("shardd.leaders", "{group}", "Groups this node leads.")
	leases := gauge("shardd.leases", "{group}", "Groups this node leads with a valid lease (as of each group's last cycle), which serve reads locally.")
	quiesced := gauge("shardd.groups.quiesced", "{group}", "Group replicas that are quiesced: idle, and not ticked.")
	schedQueue := gauge("shardd.scheduler.queue", "{group}", "Groups ready and waiting for a scheduler worker.")
	mbWrites := gauge("shardd.mailbox.writes", "{command}", "Writes queued in the groups' mailboxes for their next Paxos value.")
	mbMessages := gauge("shardd.mailbox.messages", "{message}", "Peer messages queued in the groups' mailboxes for their next cycle.")
	rangeOps, err := m.Float64ObservableGauge("shardd.range.ops", metric.WithUnit("{op}/s"),
		metric.WithDescription("Reads and writes per second routed to each of the busiest ranges this node leads (the "+strconv.Itoa(rangeLoadSeries)+" busiest), over the load window."))
	check(err)
	ledOps, err := m.Float64ObservableGauge("shardd.node.ops", metric.WithUnit("{op}/s"),
		metric.WithDescription("Reads and writes per second routed to all the ranges this node leads, over the load window."))
	check(err)
	nm.reg, err = m.RegisterCallback(func(_ context.Context, o metric.Observer) error {
		o.ObserveInt64(proposals, n.stats.Values.Load())
		o.ObserveInt64(proposed, n.stats.Commands.Load())
		o.ObserveInt64(commits, int64(n.commits.Load()))
		o.ObserveInt64(gained, int64(n.leadershipsGained.Load()))
		o.ObserveInt64(lost, int64(n.leadershipsLost.Load()))
		g := n.gauges()
		o.ObserveInt64(groups, int64(g.groups))
		o.ObserveInt64(leaders, int64(len(g.led)))
		o.ObserveInt64(leases, int64(g.leases))
		o.ObserveInt64(quiesced, int64(g.quiesced))
		o.ObserveInt64(schedQueue, int64(n.sched.queueLen()))
		o.ObserveInt64(mbWrites, int64(g.mailboxWrites))
		o.ObserveInt64(mbMessages, int64(g.mailboxMessages))
		total := 0.0
		for _, rl := range g.rangeLoads(n) {
			total += rl.ops
			if rl.top {
				o.ObserveFloat64(rangeOps, rl.ops, metric.WithAttributes(attribute.String("range", strconv.FormatUint(rl.id, 10))))
			}
		}
		o.ObserveFloat64(ledOps, total)
		return nil
	}, proposals, proposed, commits, gained, lost, groups, leaders, leases, quiesced, schedQueue, mbWrites, mbMessages, rangeOps, ledOps)
	check(err)
	return b.Err()
}

// nodeGauges are the gauges of one collection.
type nodeGauges struct {
	groups, leases, quiesced       int
	mailboxWrites, mailboxMessages int
	led                            []*replica
}

// gauges walks the replicas once, outside n.mu: it takes their mailboxes'
// locks.
func (n *Node) gauges() nodeGauges {
	var g nodeGauges
	n.mu.RLock()
	all := make([]*replica, 0, len(n.replicas))
	for _, r := range n.replicas {
		all = append(all, r)
	}
	n.mu.RUnlock()
	g.groups = len(all)
	for _, r := range all {
		if !r.active.Load() {
			g.quiesced++
		}
		if r.leader.Load() == n.cfg.NodeID {
			g.led = append(g.led, r)
			if r.lease.Load() {
				g.leases++
			}
		}
		w, m := r.mb.depth()
		g.mailboxWrites += w
		g.mailboxMessages += m
	}
	return g
}

// rangeLoad is a led range's load; top marks the rangeLoadSeries busiest.
type rangeLoad struct {
	id  uint64
	ops float64
	top bool
}

// rangeLoads measures the led ranges' loads as Admin RangeLoad does
// (load.go), without their key samples.
func (g *nodeGauges) rangeLoads(n *Node) []rangeLoad {
	now := n.Now()
	out := make([]rangeLoad, 0, len(g.led))
	for _, r := range g.led {
		d := r.desc.Load()
		if len(d.GetReplicas()) == 0 {
			continue
		}
		out = append(out, rangeLoad{id: r.id, ops: r.load.rate(now, d.Generation, n.cfg.LoadWindow)})
	}
	slices.SortFunc(out, func(a, b rangeLoad) int {
		return cmp.Or(cmp.Compare(b.ops, a.ops), cmp.Compare(a.id, b.id))
	})
	for i := range min(rangeLoadSeries, len(out)) {
		out[i].top = out[i].ops > 0
	}
	return out
}

// kvDone records a KV request of method that started at start and ended
// with code.
func (m *nodeMetrics) kvDone(method kvMethod, start time.Time, code codes.Code) {
	if m.kvDuration == nil {
		return
	}
	if int(code) >= numCodes {
		code = codes.Unknown
	}
	m.kvDuration.Record(context.Background(), time.Since(start).Seconds(), m.kvAttrs[method][code]...)
}

// unaryInterceptor times the KV service's unary RPCs.
func (m *nodeMetrics) unaryInterceptor(ctx context.Context, req any, info *grpc.UnaryServerInfo, handler grpc.UnaryHandler) (any, error) {
	method, ok := kvUnaryMethods[info.FullMethod]
	if !ok {
		return handler(ctx, req)
	}
	start := time.Now()
	resp, err := handler(ctx, req)
	m.kvDone(method, start, status.Code(err))
	return resp, err
}

// proposed records a Paxos value of commands.
func (m *nodeMetrics) proposed(commands int) {
	if m.commandsPerValue != nil {
		m.commandsPerValue.Record(context.Background(), int64(commands))
	}
}

// close stops observing the node.
func (m *nodeMetrics) close() {
	if m.reg != nil {
		_ = m.reg.Unregister()
	}
}
