package node

import (
	"errors"
	"fmt"
	"log/slog"
	"runtime"
	"time"

	"github.com/cockroachdb/pebble/v2/vfs"
	"github.com/shardd/shardd/internal/tracing/provider"
	"github.com/shardd/shardd/kvpb"
	pb "github.com/shardd/shardd/paxospb"
	"go.opentelemetry.io/otel/metric"
	"google.golang.org/grpc"
)

// Config configures a node. Durations are wall-clock.
type Config struct {
	// NodeID is this node's id, unique in the cluster and never zero. It
	// is also the replica id of every replica the node hosts.
	NodeID uint64
	// Dir holds the node's Pebble store. FS is the filesystem (tests use
	// an in-memory one); the default value is vfs.Default.
	Dir string
	FS  vfs.FS
	// ListenAddr is the gRPC address for clients and peers. The default
	// value is "127.0.0.1:7100"; port 0 picks a free port.
	ListenAddr string
	// Peers maps node ids to gRPC addresses known up front. Membership
	// adds the ones it learns.
	Peers map[uint64]string
	// GossipAddr, if set, starts memberlist on that host:port, joining
	// Seeds. Empty disables gossip (tests with static Peers).
	GossipAddr string
	Seeds      []string
	// TickInterval is the node's one logical tick. The default value is
	// 100ms (etcd's), so a 10-tick lease is a second.
	TickInterval time.Duration
	// ElectionTicks and HeartbeatTicks are the groups' timeouts in ticks.
	// The default values are 10 and 2.
	ElectionTicks, HeartbeatTicks int
	// LeaseDuration is a leader's lease; it also bounds node support. The
	// default value is ElectionTicks ticks.
	LeaseDuration time.Duration
	// MaxClockDrift is subtracted from every lease. The default value is
	// LeaseDuration/10.
	MaxClockDrift time.Duration
	// ClockOffset is added to the node's clock (Node.Now), on which its
	// leases and liveness are measured, and the Fault service's JumpClock
	// adds to it at run time: a test hook. A constant offset changes
	// nothing, since no node reads another's clock; what the drift margin
	// must absorb is a clock that moves while a lease runs, which
	// JumpClock does. It must not be negative. The default value is 0.
	ClockOffset time.Duration
	// SupportInterval is how often the node asks each peer for liveness
	// support. The default value is 2 ticks.
	SupportInterval time.Duration
	// Workers is the size of the scheduler's worker pool. The default
	// value is GOMAXPROCS*2.
	Workers int
	// MaxGroupsPerCycle bounds the groups one worker persists in one
	// synced batch. The default value is 256.
	MaxGroupsPerCycle int
	// MaxValueBytes bounds the commands coalesced into one Paxos value.
	// The default value is 1 MiB.
	MaxValueBytes int
	// MaxHeldWriteBytes bounds the writes a replica holds, rather than
	// refuses, while a leader transfer that involves it completes (a few
	// round trips; see group.Replica.Transferring), so that its writers
	// see no error: past it they are refused as at any other time, with
	// the leader hint. The default value is 4 MiB.
	MaxHeldWriteBytes int
	// LoadWindow is the window over which the node measures the requests
	// to each range it leads, for load-based splits (Admin RangeLoad): a
	// range's rate covers its last one or two windows. The default value
	// is 10s, long enough that a burst of a second does not split a range.
	LoadWindow time.Duration
	// MemTableSize is the size in bytes of the store's memtables (see
	// engine.Options.MemTableSize). The estimate of a range's size counts
	// a write once its memtable is flushed. The default value is the
	// engine's.
	MemTableSize uint64
	// WALPreallocation is how many bytes of a WAL file the store keeps
	// preallocated ahead of its writes (see engine.Options.WALPreallocation;
	// a negative value leaves it to Pebble, which preallocates 110% of
	// MemTableSize per file). The default value is the engine's.
	WALPreallocation int64
	// SnapshotBytesPerSecond bounds the bytes per second of all the
	// snapshots the node sends at once (replicas moved to other nodes,
	// followers that fell behind the log), so that a move does not take
	// the disk and network the node's other groups need. A snapshot
	// streams in chunks of 1 MiB, and the first chunk leaves at once. The
	// default value is 32 MiB/s; a negative value means no limit.
	SnapshotBytesPerSecond int64
	// Limits bounds client requests. The zero value means the defaults.
	Limits kvpb.Limits
	// Bootstrap lists the ranges of a new cluster. On a node whose store
	// holds no range yet, Start creates its replicas of those listing it,
	// before it serves: a peer's message can then never find the range
	// missing and create an empty replica in its place.
	Bootstrap []*kvpb.RangeDescriptor
	// RegisterServices, if set, registers more gRPC services on the node's
	// server before it serves (the placement service shares its node's
	// listener this way).
	RegisterServices func(*grpc.Server)
	// EnableFaultInjection serves the Fault service (kvpb/fault.proto), a
	// test hook through which other processes cut this node's links to
	// given peers, either way, and to its clients, and make its clock
	// jump (ClockOffset). Multi-process tests use it to partition real
	// processes; it must stay off in production. The default value is
	// false.
	EnableFaultInjection bool
	// Tracing configures the node's OpenTelemetry tracing (see package
	// provider): where spans are exported, the fraction of untraced
	// requests the node samples itself, and the spans kept in memory for
	// `shardd trace`. The node adds its id to the resource. The default
	// value exports nothing, samples no request its client did not, and
	// keeps DefaultTraceBufferSpans spans; a negative BufferSpans keeps
	// none.
	Tracing provider.Config
	// Logger is where the node logs. The default value is slog.Default().
	Logger *slog.Logger
	// MeterProvider receives the node's metrics, its store's and its
	// transport's (see metrics.go and package internal/metrics/endpoint).
	// The default value is nil: no metrics.
	MeterProvider metric.MeterProvider
	// WaitReady keeps the node's gRPC health NOT_SERVING after Start until
	// SetReady is called (see health.go): shardd start --placement calls it
	// once the node registered. The default value is false: the node is
	// SERVING once Start has loaded its groups.
	WaitReady bool
	// OnFatal is called once if the node stops because of a disk error.
	// The default value logs; cmd/shardd exits.
	OnFatal func(error)
	// Knobs are hooks for tests; production leaves them nil.
	Knobs TestingKnobs
}

// EnsureDefaults fills every zero field that has a default.
func (c *Config) EnsureDefaults() {
	if c.FS == nil {
		c.FS = vfs.Default
	}
	if c.ListenAddr == "" {
		c.ListenAddr = "127.0.0.1:7100"
	}
	if c.TickInterval == 0 {
		c.TickInterval = 100 * time.Millisecond
	}
	if c.ElectionTicks == 0 {
		c.ElectionTicks = 10
	}
	if c.HeartbeatTicks == 0 {
		c.HeartbeatTicks = 2
	}
	if c.LeaseDuration == 0 {
		c.LeaseDuration = time.Duration(c.ElectionTicks) * c.TickInterval
	}
	if c.MaxClockDrift == 0 {
		c.MaxClockDrift = c.LeaseDuration / 10
	}
	if c.SupportInterval == 0 {
		c.SupportInterval = 2 * c.TickInterval
	}
	if c.Workers == 0 {
		c.Workers = 2 * runtime.GOMAXPROCS(0)
	}
	if c.MaxGroupsPerCycle == 0 {
		c.MaxGroupsPerCycle = 256
	}
	if c.MaxValueBytes == 0 {
		c.MaxValueBytes = 1 << 20
	}
	if c.MaxHeldWriteBytes == 0 {
		c.MaxHeldWriteBytes = 4 << 20
	}
	if c.LoadWindow == 0 {
		c.LoadWindow = 10 * time.Second
	}
	if c.SnapshotBytesPerSecond == 0 {
		c.SnapshotBytesPerSecond = 32 << 20
	}
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
	if c.Tracing.BufferSpans == 0 {
		c.Tracing.BufferSpans = DefaultTraceBufferSpans
	}
}

// DefaultTraceBufferSpans is the default of Config.Tracing.BufferSpans:
// the spans of a few hundred traced writes.
const DefaultTraceBufferSpans = 4096

// Validate reports the first field that is missing or in conflict.
func (c *Config) Validate() error {
	switch {
	case c.NodeID == 0:
		return errors.New("node: NodeID must not be zero")
	case c.Dir == "":
		return errors.New("node: Dir is required")
	case c.SupportInterval*2 > c.LeaseDuration:
		return fmt.Errorf("node: SupportInterval (%v) must fit twice in LeaseDuration (%v)", c.SupportInterval, c.LeaseDuration)
	case c.LoadWindow < 0:
		return fmt.Errorf("node: LoadWindow (%v) must not be negative", c.LoadWindow)
	case c.MaxClockDrift >= c.LeaseDuration:
		return fmt.Errorf("node: MaxClockDrift (%v) must be below LeaseDuration (%v)", c.MaxClockDrift, c.LeaseDuration)
	case c.ClockOffset < 0:
		return fmt.Errorf("node: ClockOffset (%v) must not be negative", c.ClockOffset)
	case c.Tracing.Sample < 0 || c.Tracing.Sample > 1:
		return fmt.Errorf("node: Tracing.Sample (%v) must be a fraction from 0 to 1", c.Tracing.Sample)
	}
	return nil
}

// TestingKnobs let tests stop a node at chosen points of its cycle, in the
// manner of CockroachDB's testing knobs. Each runs on a scheduler worker.
type TestingKnobs struct {
	// BeforeApply is called with a group's chosen entries just before the
	// worker applies them into the cycle's batch: nothing of the cycle is
	// committed or sent yet.
	BeforeApply func(group uint64, entries []pb.Entry)
	// BeforeCommit is called once per cycle after the leaders' SendFirst
	// accepts were handed to the transport and before the cycle's batch is
	// committed: peers may accept what this node has not persisted.
	BeforeCommit func()
	// AfterPersist is called once per cycle after its batch is committed
	// (synced if it holds promises or accepted entries) and before any of
	// its Messages is sent or any client answered.
	AfterPersist func()
	// AfterSend is called at the end of every cycle: its clients were
	// answered, its groups advanced, and its Messages handed to the
	// transport.
	AfterSend func()
	// BeforeIngest and AfterIngest are called on the group's worker around
	// the ingest of a received snapshot (SnapshotWriter.Finish): before,
	// its data is staged on disk; after, it is ingested, and the group has
	// not yet heard of it.
	BeforeIngest, AfterIngest func(group uint64)
	// AfterScan is called by a scan once its engine scan returned and
	// before its response is built, on the goroutine serving it: the
	// engine's iterator is closed by then, so a test can reuse what it
	// lent the scan, as another request's scan may.
	AfterScan func()
	// LogRetention, if not zero, replaces every group's
	// group.Config.LogRetention, so a test can make leaders truncate past
	// a stopped replica after a few writes.
	LogRetention uint64
}
