// Package node is the runtime of a shardd process: it hosts thousands of
// Paxos group replicas over one engine, one transport and one scheduler,
// serves the KV API, and keeps node liveness. Nothing in it costs a
// goroutine, a timer, a connection or an fsync per group: the ticker, the
// liveness loop and the scheduler's workers are per node, the streams are
// per peer node, and an fsync covers a whole scheduling cycle.
package node

import (
	"context"
	crand "crypto/rand"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"net"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/shardd/shardd/batch"
	"github.com/shardd/shardd/engine"
	"github.com/shardd/shardd/group"
	"github.com/shardd/shardd/internal/tracing"
	"github.com/shardd/shardd/internal/tracing/provider"
	"github.com/shardd/shardd/kvpb"
	"github.com/shardd/shardd/liveness"
	"github.com/shardd/shardd/membership"
	pb "github.com/shardd/shardd/paxospb"
	"github.com/shardd/shardd/transport"
	"go.opentelemetry.io/otel/trace"
	"google.golang.org/grpc"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/keepalive"
)

// Node is one running shardd process.
type Node struct {
	cfg       Config
	log       *slog.Logger
	start     time.Time
	eng       *engine.Engine
	committer *engine.Committer
	trans     *transport.Transport
	live      *liveness.Liveness
	members   *membership.Membership
	server    *grpc.Server
	lis       net.Listener
	sched     *scheduler
	stats     batch.Stats
	// clockOffset is added to the time since start in Now: the
	// Config.ClockOffset, moved forward by the Fault service's JumpClock.
	clockOffset atomic.Int64
	// tracing is the node's tracer provider, tracer its tracer, and
	// traceRoots whether it samples requests that arrive untraced.
	tracing    *provider.Provider
	tracer     trace.Tracer
	traceRoots bool
	seq        atomic.Uint64 // command sequence numbers, within incarnation
	// incarnation numbers this process life of the node: persisted and
	// bumped at every start.
	incarnation uint64

	mu       sync.RWMutex
	replicas map[uint64]*replica
	peers    map[uint64]string
	// byStart indexes the initialized replicas by start key, for lookups
	// without a lock; indexMu orders its writers (reindex, index).
	byStart atomic.Pointer[[]*replica]
	indexMu sync.Mutex
	// active are the replicas that are not quiesced: the ticker's work, so
	// that an idle node ticks nothing, however many groups it hosts.
	activeMu sync.Mutex
	active   map[*replica]struct{}

	snapshotSlots chan struct{} // bounds concurrent outgoing snapshots
	snapshotRate  *byteRate     // bounds their bytes per second, together
	snapshotsMu   sync.Mutex
	snapshotsOut  map[snapshotTo]*outSnapshot // those in flight

	stopOnce sync.Once
	stopped  chan struct{}
	// ctx is canceled by Stop, ending the node's own outgoing work.
	ctx      context.Context
	cancel   context.CancelFunc
	bg       sync.WaitGroup
	fatalErr atomic.Pointer[error]
	// draining: see Drain. stopRequested: an operator asked the node to
	// stop (Admin Drain), so its stop is not a failure.
	draining, stopRequested atomic.Bool

	// identMu guards ident, the store's identity (see claimStore and
	// JoinCluster).
	identMu sync.Mutex
	ident   engine.StoreIdent
	// createMu serialises the creation of replicas (createEmpty,
	// CreateGroups): each checks that the group has no replica, persists
	// its meta and registers it, as one step. It guards tombstones, the
	// generation at which each group that left the node did (gc.go).
	createMu   sync.Mutex
	tombstones map[uint64]uint64

	// metrics are the node's instruments (metrics.go); commits and the
	// leadership changes are counted for them and for the log.
	metrics                            nodeMetrics
	commits                            atomic.Uint64
	leadershipsGained, leadershipsLost atomic.Uint64
	// health is the gRPC health service; ready and healthMu: see
	// health.go.
	health   *health.Server
	ready    atomic.Bool
	healthMu sync.Mutex
	// placementMu guards the contact with the placement service, as
	// Registered follows it.
	placementMu     sync.Mutex
	placementState  int
	placementLostAt time.Time
}

// Now is the node's monotonic clock in nanoseconds: leases and liveness
// are measured on it.
func (n *Node) Now() int64 { return int64(time.Since(n.start)) + n.clockOffset.Load() }

// Start opens the node's store, reloads every group it hosts, and starts
// serving.
func Start(cfg Config) (*Node, error) {
	cfg.EnsureDefaults()
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	n := &Node{
		cfg:           cfg,
		log:           cfg.Logger.With("node", cfg.NodeID),
		start:         time.Now(),
		replicas:      make(map[uint64]*replica),
		active:        make(map[*replica]struct{}),
		peers:         make(map[uint64]string),
		sched:         newScheduler(),
		snapshotSlots: make(chan struct{}, 4),
		snapshotsOut:  make(map[snapshotTo]*outSnapshot),
		snapshotRate:  newByteRate(cfg.SnapshotBytesPerSecond, snapshotChunkBytes),
		stopped:       make(chan struct{}),
	}
	n.clockOffset.Store(int64(cfg.ClockOffset))
	n.ctx, n.cancel = context.WithCancel(context.Background())
	tcfg := cfg.Tracing
	tcfg.BufferSpans = max(tcfg.BufferSpans, 0)
	tcfg.Attributes = append(tcfg.Attributes[:len(tcfg.Attributes):len(tcfg.Attributes)], tracing.Node.Int64(int64(cfg.NodeID)))
	tp, err := provider.New(tcfg)
	if err != nil {
		return nil, fmt.Errorf("node: %w", err)
	}
	n.tracing, n.tracer, n.traceRoots = tp, tp.Tracer(tracerName), tp.SamplesRoots()
	for id, addr := range cfg.Peers {
		n.peers[id] = addr
	}
	eopts := engine.DefaultOptions()
	eopts.FS, eopts.Dir = cfg.FS, cfg.Dir
	if cfg.MemTableSize != 0 {
		eopts.MemTableSize = cfg.MemTableSize
	}
	if cfg.WALPreallocation != 0 {
		eopts.WALPreallocation = cfg.WALPreallocation
	}
	eopts.Logger = pebbleLogger{n.log.With("component", "pebble")}
	eopts.MeterProvider = cfg.MeterProvider
	eng, err := engine.Open(eopts)
	if err != nil {
		_ = tp.Shutdown(context.Background())
		return nil, fmt.Errorf("node: open store: %w", err)
	}
	n.eng = eng
	n.committer = engine.NewCommitter(eng)
	if err := n.claimStore(); err != nil {
		n.closeStore()
		return nil, err
	}
	incarnation, err := n.bumpIncarnation()
	if err != nil {
		n.closeStore()
		return nil, err
	}
	n.incarnation = incarnation
	n.live = liveness.New(liveness.Config{
		NodeID: cfg.NodeID, Incarnation: incarnation, Clock: n,
		SupportDuration: int64(cfg.LeaseDuration), Interval: int64(cfg.SupportInterval),
		MaxClockDrift: int64(cfg.MaxClockDrift),
	})
	for id := range n.peers {
		if id != cfg.NodeID {
			n.live.AddPeer(id)
		}
	}
	trcfg := transport.DefaultConfig()
	trcfg.NodeID = cfg.NodeID
	trcfg.Logger = cfg.Logger // the transport names the node itself
	trcfg.MeterProvider = cfg.MeterProvider
	if n.trans, err = transport.New(trcfg, resolver{n}, n); err != nil {
		n.closeStore()
		return nil, err
	}
	if err := n.loadTombstones(); err != nil {
		n.closeStore()
		return nil, err
	}
	if err := n.loadGroups(); err != nil {
		n.closeStore()
		return nil, err
	}
	if err := n.bootstrap(); err != nil {
		n.closeStore()
		return nil, err
	}
	if n.lis, err = net.Listen("tcp", cfg.ListenAddr); err != nil {
		n.closeStore()
		return nil, fmt.Errorf("node: listen on %s: %w", cfg.ListenAddr, err)
	}
	n.peers[cfg.NodeID] = n.lis.Addr().String()
	if err := n.newMetrics(cfg.MeterProvider); err != nil {
		n.lis.Close()
		n.closeStore()
		return nil, fmt.Errorf("node: metrics: %w", err)
	}
	faultOpts, registerFaults := n.faultInjection()
	n.server = grpc.NewServer(append([]grpc.ServerOption{grpc.MaxRecvMsgSize(64 << 20),
		// Admin calls of a traced placement operation join its trace.
		grpc.ChainUnaryInterceptor(tracing.UnaryServerInterceptor(n.tracer, isAdminMethod)),
		// Let routers probe idle connections, so a hung node is noticed.
		grpc.KeepaliveEnforcementPolicy(keepalive.EnforcementPolicy{MinTime: 10 * time.Second, PermitWithoutStream: true}),
		grpc.ChainUnaryInterceptor(n.metrics.unaryInterceptor)},
		faultOpts...)...)
	n.trans.Register(n.server)
	kvpb.RegisterKVServer(n.server, &kvServer{n: n})
	kvpb.RegisterAdminServer(n.server, &adminServer{n: n})
	provider.RegisterTraceService(n.server, tp.Buffer(), cfg.NodeID)
	n.health = n.newHealth()
	healthpb.RegisterHealthServer(n.server, n.health)
	registerFaults(n.server)
	if cfg.RegisterServices != nil {
		cfg.RegisterServices(n.server)
	}
	n.bg.Add(1)
	go func() {
		defer n.bg.Done()
		_ = n.server.Serve(n.lis)
	}()
	if cfg.GossipAddr != "" {
		if err := n.startGossip(); err != nil {
			n.Stop()
			return nil, err
		}
	}
	n.sched.start(cfg.Workers, cfg.MaxGroupsPerCycle, n.process)
	n.bg.Add(3)
	go n.tickLoop()
	go n.livenessLoop()
	go n.leadershipLog()
	n.log.Info("node started", "addr", n.Addr(), "groups", len(n.replicas))
	if !cfg.WaitReady {
		n.SetReady() // its groups are loaded
	}
	return n, nil
}

// TracerProvider returns the node's tracer provider, which a process
// hosting the node traces its own work with (the placement service).
func (n *Node) TracerProvider() trace.TracerProvider { return n.tracing.TracerProvider() }

// TraceBuffer returns the node's in-memory buffer of recent sampled spans
// (the Trace service's), or nil if it keeps none.
func (n *Node) TraceBuffer() *provider.Buffer { return n.tracing.Buffer() }

// Addr returns the node's gRPC address.
func (n *Node) Addr() string { return n.lis.Addr().String() }

// ID returns the node's id.
func (n *Node) ID() uint64 { return n.cfg.NodeID }

// Done is closed once the node has stopped, by Stop or a disk error.
func (n *Node) Done() <-chan struct{} { return n.stopped }

// Err returns the disk error that stopped the node, if any.
func (n *Node) Err() error {
	if p := n.fatalErr.Load(); p != nil {
		return *p
	}
	return nil
}

// Stop stops serving and closes the store. It is idempotent.
func (n *Node) Stop() {
	n.stopOnce.Do(func() {
		if n.health != nil {
			n.health.Shutdown() // NOT_SERVING, for good
		}
		close(n.stopped)
		n.cancel()
		if n.members != nil {
			_ = n.members.Leave(time.Second)
			_ = n.members.Shutdown()
		}
		if n.server != nil {
			n.server.Stop()
		}
		n.sched.stop()
		n.trans.Close()
		n.bg.Wait()
		n.metrics.close()
		n.closeStore()
		n.log.Info("node stopped")
	})
}

func (n *Node) closeStore() {
	n.committer.Close()
	_ = n.eng.Close()
	// Export the spans still queued, for at most a second.
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	_ = n.tracing.Shutdown(ctx)
}

// fatal stops the node after a disk error: after a failed fsync nothing
// the node believes about its own durable state can be trusted, so it must
// not acknowledge anything more (see package engine).
func (n *Node) fatal(err error) {
	if n.fatalErr.CompareAndSwap(nil, &err) {
		n.log.Error("disk error: stopping the node", "err", err)
		go n.Stop()
		if n.cfg.OnFatal != nil {
			n.cfg.OnFatal(err)
		}
	}
}

// incarnationGroup is no group: range ids start at 1. Its applied record
// holds the node's incarnation.
const incarnationGroup = engine.GroupID(0)

// bumpIncarnation persists and returns this process's incarnation, so that
// liveness epochs granted now exceed every epoch granted before a restart.
func (n *Node) bumpIncarnation() (uint64, error) {
	st, err := n.eng.LoadGroup(incarnationGroup)
	if err != nil {
		return 0, err
	}
	inc := st.Applied + 1
	b := n.eng.NewBatch()
	defer b.Close()
	b.SetApplied(incarnationGroup, inc)
	if err := b.Commit(true); err != nil {
		return 0, err
	}
	return inc, nil
}

// ErrIdentity is matched (errors.Is) by the error of a node that refuses a
// data directory created for another node, or a cluster other than the
// one its store joined.
var ErrIdentity = errors.New("node: store identity mismatch")

// identityError is a refusal that explains itself; it matches ErrIdentity.
type identityError string

func (e identityError) Error() string      { return string(e) }
func (identityError) Is(target error) bool { return target == ErrIdentity }

// claimStore checks that the store was created for this node; at the
// store's first start it writes the store's identity first, synced: the
// node id and a random store id. A data directory started under another
// --id would otherwise serve with the wrong replica id in every group (and
// time out on every request), and a wiped one could not be told from the
// one it replaces (the placement service compares store ids).
func (n *Node) claimStore() error {
	id, ok, err := n.eng.StoreIdent()
	if err != nil {
		return fmt.Errorf("node: read the identity of the store in %s: %w", n.cfg.Dir, err)
	}
	if ok {
		if id.NodeID != n.cfg.NodeID {
			return identityError(fmt.Sprintf("node: data dir %s belongs to node %d, not node %d: start with --id %d or an empty directory",
				n.cfg.Dir, id.NodeID, n.cfg.NodeID, id.NodeID))
		}
		n.ident = id
		return nil
	}
	if inc, err := n.eng.LoadGroup(incarnationGroup); err != nil {
		return err
	} else if inc.HasApplied {
		n.log.Warn("the store has no identity (an older shardd wrote it): claiming it for this node", "dir", n.cfg.Dir)
	}
	id = engine.StoreIdent{NodeID: n.cfg.NodeID, StoreID: crand.Text()}
	b := n.eng.NewBatch()
	defer b.Close()
	b.SetStoreIdent(id)
	if err := b.Commit(true); err != nil {
		return fmt.Errorf("node: write the store identity: %w", err)
	}
	n.ident = id
	return nil
}

// StoreID returns the random id of the node's store, chosen when the store
// was created.
func (n *Node) StoreID() string {
	n.identMu.Lock()
	defer n.identMu.Unlock()
	return n.ident.StoreID
}

// ClusterID returns the id of the cluster the node's store joined, or ""
// before its first JoinCluster.
func (n *Node) ClusterID() string {
	n.identMu.Lock()
	defer n.identMu.Unlock()
	return n.ident.ClusterID
}

// JoinCluster records, durably, that the node's store belongs to cluster
// id, the first time it is called (the node's first registration with a
// placement service); later calls accept the same id and refuse any other
// with an error matching ErrIdentity: a node must not serve its promises
// to a cluster whose groups never heard of them.
func (n *Node) JoinCluster(id string) error {
	if id == "" {
		return errors.New("node: the cluster id is empty")
	}
	n.identMu.Lock()
	defer n.identMu.Unlock()
	switch n.ident.ClusterID {
	case id:
		return nil
	case "":
	default:
		return identityError(fmt.Sprintf("node: data dir %s belongs to cluster %s, but the placement service belongs to cluster %s: "+
			"point --placement at the placement service of cluster %s, or start with an empty directory",
			n.cfg.Dir, n.ident.ClusterID, id, n.ident.ClusterID))
	}
	joined := n.ident
	joined.ClusterID = id
	b := n.eng.NewBatch()
	defer b.Close()
	b.SetStoreIdent(joined)
	if err := n.committer.Commit(b, true); err != nil {
		n.fatal(err)
		return err
	}
	n.ident = joined
	n.log.Info("joined cluster", "cluster", id)
	return nil
}

// groupConfig is the template every hosted group uses.
func (n *Node) groupConfig() group.Config {
	c := group.DefaultConfig()
	c.ID = n.cfg.NodeID
	c.ElectionTicks = n.cfg.ElectionTicks
	c.HeartbeatTicks = n.cfg.HeartbeatTicks
	c.LeaseDuration = int64(n.cfg.LeaseDuration)
	c.MaxClockDrift = int64(n.cfg.MaxClockDrift)
	c.Clock = n
	c.Liveness = n.live
	if k := n.cfg.Knobs.LogRetention; k != 0 {
		c.LogRetention = k
	}
	return c
}

// loadGroups rebuilds every group from the store.
func (n *Node) loadGroups() error {
	ids, err := n.eng.Groups()
	if err != nil {
		return err
	}
	for _, g := range ids {
		if g == incarnationGroup {
			continue
		}
		st, err := n.eng.LoadGroup(g)
		if err != nil {
			return err
		}
		if st.Meta == nil {
			continue // never initialized; a snapshot will bring it
		}
		if _, err := n.openReplica(uint64(g), st); err != nil {
			return err
		}
	}
	n.reindex()
	return nil
}

// openReplica builds a replica from its durable state: the applied point
// is the truncation point (entries at or below it are not needed), the
// configuration at the applied point is in the group meta.
func (n *Node) openReplica(id uint64, st engine.GroupState) (*replica, error) {
	meta, err := unmarshalMeta(st.Meta)
	if err != nil {
		return nil, fmt.Errorf("group %d: %w", id, err)
	}
	gs, err := recoveredState(id, st, meta.Config)
	if err != nil {
		return nil, err
	}
	return n.newReplica(id, gs, meta, false)
}

// recoveredState is the state a group restarts from, given its durable
// records and the configuration at its applied point.
//
// The log keeps the applied entries the replica retained (LogRetention),
// so that a restarted leader can still send them to a peer that lags: a
// log that started at the applied point would make every such peer need a
// snapshot, and a peer that skips a split with a snapshot of the left
// half never builds the right half from it. The configuration is only
// known at the applied point, so the retained entries are kept only when
// none of them changed it.
func recoveredState(id uint64, st engine.GroupState, conf pb.Config) (group.State, error) {
	gs := group.State{Applied: st.Applied, Meta: pb.Meta{Index: st.Applied, Config: conf}}
	if st.HardState != nil {
		if err := gs.HardState.Unmarshal(st.HardState); err != nil {
			return group.State{}, fmt.Errorf("group %d hard state: %w", id, err)
		}
	}
	var applied []pb.Entry
	for _, e := range st.Entries {
		var pe pb.Entry
		if err := pe.Unmarshal(e.Data); err != nil {
			return group.State{}, fmt.Errorf("group %d entry %d: %w", id, e.Slot, err)
		}
		if e.Slot <= st.Applied {
			applied = append(applied, pe)
		} else {
			gs.Entries = append(gs.Entries, pe)
		}
	}
	if keep := retainedApplied(applied, st.Applied); len(keep) > 0 {
		gs.Meta.Index = keep[0].Slot - 1
		gs.Entries = append(keep, gs.Entries...)
	}
	return gs, nil
}

// retainedApplied returns the applied entries a restarted replica keeps in
// its log: the run that ends at the applied point, if none of it is a
// configuration change.
func retainedApplied(applied []pb.Entry, at uint64) []pb.Entry {
	if len(applied) == 0 || applied[len(applied)-1].Slot != at {
		return nil
	}
	i := len(applied) - 1
	for i > 0 && applied[i-1].Slot == applied[i].Slot-1 {
		i--
	}
	keep := applied[i:]
	for _, e := range keep {
		if e.Type == pb.EntryConfChange {
			return nil
		}
	}
	return keep
}

// newGroup builds the Paxos replica of group id starting from st: the one
// place that configures a group and seeds its randomness.
func (n *Node) newGroup(id uint64, st group.State) (*group.Replica, error) {
	cfg := n.groupConfig()
	cfg.Rand = rand.New(rand.NewPCG(n.cfg.NodeID, id))
	return group.New(cfg, st)
}

// newReplica builds replica id of the range meta describes, its group
// starting from st, and hosts it: every way a node comes to hold a replica
// (recovery, bootstrap, a peer's message, a split) goes through here. Its
// callers never race to create one group: loadGroups runs before the node
// serves, and the others check for an existing replica and register a new
// one under createMu. A held replica is registered as if a worker were
// processing it: what reaches it waits until its creator releases it
// (scheduler.release), once the batch that creates it is durable.
func (n *Node) newReplica(id uint64, st group.State, meta groupMeta, held bool) (*replica, error) {
	rn, err := n.newGroup(id, st)
	if err != nil {
		return nil, err
	}
	r := &replica{
		id:                 id,
		mb:                 newMailbox(),
		rn:                 rn,
		appliedConfig:      meta.Config,
		readsAwaitingIndex: make(map[uint64][]*readRequest),
		proposed:           make(map[uint64]struct{}),
	}
	if held {
		r.sched = schedProcessing
	}
	r.setDesc(meta.Desc)
	r.active.Store(true)
	n.mu.Lock()
	n.replicas[id] = r
	n.mu.Unlock()
	n.activeMu.Lock()
	n.active[r] = struct{}{}
	n.activeMu.Unlock()
	return r, nil
}

// post hands inputs to a replica's mailbox and schedules it.
func (n *Node) post(r *replica, add func(in *inputs)) {
	r.mb.post(add)
	n.sched.enqueue(r)
}

// setActive records whether a replica needs ticks; only a change costs a
// lock.
func (n *Node) setActive(r *replica, active bool) {
	if r.active.Load() == active {
		return
	}
	r.active.Store(active)
	n.activeMu.Lock()
	if active {
		n.active[r] = struct{}{}
	} else {
		delete(n.active, r)
	}
	n.activeMu.Unlock()
}

// bootstrap creates the node's replicas of Config.Bootstrap if the store
// holds no range yet.
func (n *Node) bootstrap() error {
	if len(n.cfg.Bootstrap) == 0 {
		return nil
	}
	held := 0
	if idx := n.byStart.Load(); idx != nil {
		held = len(*idx)
	}
	if held > 0 || len(n.tombstones) > 0 {
		// A store whose every replica left (moved away) must not take the
		// cluster's first ranges back.
		n.log.Info("store already holds or held ranges: ignoring the bootstrap ranges", "ranges", held, "left", len(n.tombstones))
		return nil
	}
	var mine []*kvpb.RangeDescriptor
	for _, d := range n.cfg.Bootstrap {
		if slices.Contains(votersOf(d).Voters, n.cfg.NodeID) {
			mine = append(mine, d)
		}
	}
	if err := n.CreateGroups(mine); err != nil {
		return err
	}
	n.log.Info("bootstrapped ranges", "ranges", len(mine))
	return nil
}

// CreateGroups bootstraps this node's replicas of new ranges whose voters
// are the descriptors', with one synced batch for all of them. Ranges the
// node already hosts are skipped. The replica on a descriptor's
// LeaderNodeId campaigns at once, so a new cluster has leaders where its
// creator wants them without waiting for election timeouts.
func (n *Node) CreateGroups(descs []*kvpb.RangeDescriptor) error {
	// From the check for an existing replica to the registration of the
	// new ones: see createEmpty.
	n.createMu.Lock()
	defer n.createMu.Unlock()
	b := n.eng.NewBatch()
	defer b.Close()
	var metas []groupMeta
	for _, desc := range descs {
		meta := groupMeta{Desc: desc, Config: votersOf(desc)}
		if !slices.Contains(meta.Config.Voters, n.cfg.NodeID) {
			return fmt.Errorf("node: range %d does not list node %d as a voter", desc.RangeId, n.cfg.NodeID)
		}
		if !n.mayCreate(desc.RangeId, desc.Generation) {
			return fmt.Errorf("node: range %d left node %d at generation %d: it is not created again at generation %d",
				desc.RangeId, n.cfg.NodeID, n.tombstones[desc.RangeId], desc.Generation)
		}
		if r := n.replica(desc.RangeId); r != nil {
			// A peer's message may have created an empty replica first;
			// its worker initializes it (see initialize).
			if len(r.desc.Load().GetReplicas()) == 0 {
				n.post(r, func(in *inputs) { in.initWith = &meta })
			}
			continue
		}
		b.SetGroupMeta(engine.GroupID(desc.RangeId), meta.marshal())
		metas = append(metas, meta)
	}
	if len(metas) == 0 {
		return nil
	}
	if err := n.committer.Commit(b, true); err != nil {
		n.fatal(err)
		return err
	}
	defer n.reindex()
	for _, meta := range metas {
		r, err := n.newReplica(meta.Desc.RangeId, group.BootstrapState(meta.Config.Voters...), meta, false)
		if err != nil {
			return err
		}
		n.post(r, func(in *inputs) { in.campaign = meta.Desc.LeaderNodeId == n.cfg.NodeID })
	}
	return nil
}

// CreateGroup bootstraps one range; see CreateGroups.
func (n *Node) CreateGroup(desc *kvpb.RangeDescriptor) error {
	return n.CreateGroups([]*kvpb.RangeDescriptor{desc})
}

func (n *Node) replica(id uint64) *replica {
	n.mu.RLock()
	defer n.mu.RUnlock()
	return n.replicas[id]
}

// resolver is the transport's view of the node's address book.
type resolver struct{ n *Node }

func (r resolver) Addr(id uint64) (string, bool) { return r.n.addrOf(id) }

// addrOf returns a node's gRPC address: static peers first, then gossip.
func (n *Node) addrOf(id uint64) (string, bool) {
	n.mu.RLock()
	a, ok := n.peers[id]
	n.mu.RUnlock()
	if ok {
		return a, true
	}
	if n.members != nil {
		return n.members.Addr(id)
	}
	return "", false
}

// SetPeer records a peer's address (from a bootstrap file or membership).
func (n *Node) SetPeer(id uint64, addr string) {
	n.mu.Lock()
	n.peers[id] = addr
	n.mu.Unlock()
	if id != n.cfg.NodeID {
		n.live.AddPeer(id)
	}
}

// tickLoop is the node's one ticker. It ticks only groups that are not
// quiesced, so an idle node does O(active groups) work per tick.
func (n *Node) tickLoop() {
	defer n.bg.Done()
	t := time.NewTicker(n.cfg.TickInterval)
	defer t.Stop()
	var active []*replica
	for {
		select {
		case <-n.stopped:
			return
		case <-t.C:
		}
		active = active[:0]
		n.activeMu.Lock()
		for r := range n.active {
			active = append(active, r)
		}
		n.activeMu.Unlock()
		for _, r := range active {
			if r.mb.tick() {
				n.sched.enqueue(r)
			}
		}
	}
}

// livenessLoop sends the node's support requests and wakes the quiesced
// groups whose leases or leaders depended on support that lapsed.
func (n *Node) livenessLoop() {
	defer n.bg.Done()
	t := time.NewTicker(min(n.cfg.SupportInterval, n.cfg.TickInterval))
	defer t.Stop()
	for {
		select {
		case <-n.stopped:
			return
		case <-t.C:
		}
		msgs, lapses := n.live.Tick()
		n.trans.SendBatch(msgs)
		if len(lapses.NotSupporting)+len(lapses.NotSupported)+len(lapses.Regained) > 0 {
			n.wakeFor(lapses)
		}
	}
}

// wakeFor wakes the groups led by a node we stopped supporting (so they can
// elect a new leader), and the groups we lead with a replica on a node
// that stopped supporting us (so they renew their lease the ordinary way)
// or supports us again (it is back, perhaps behind: catch it up).
func (n *Node) wakeFor(l liveness.Lapses) {
	n.mu.RLock()
	var wake []*replica
	for _, r := range n.replicas {
		if r.active.Load() {
			continue
		}
		lead := r.leader.Load()
		if slices.Contains(l.NotSupporting, lead) {
			wake = append(wake, r)
			continue
		}
		if lead == n.cfg.NodeID {
			for _, rd := range r.desc.Load().GetReplicas() {
				if slices.Contains(l.NotSupported, rd.NodeId) || slices.Contains(l.Regained, rd.NodeId) {
					wake = append(wake, r)
					break
				}
			}
		}
	}
	n.mu.RUnlock()
	for _, r := range wake {
		n.post(r, func(in *inputs) { in.wake = true })
	}
}

// HandleMessages implements transport.Handler: it queues each message for
// its group and schedules the group. Liveness messages are answered here.
func (n *Node) HandleMessages(from uint64, msgs []pb.Message) {
	var replies []pb.Message
	var unknown []uint64
	for _, m := range msgs {
		if m.Group != 0 && n.replica(m.Group) == nil {
			unknown = append(unknown, m.Group)
		}
	}
	if len(unknown) > 0 {
		// Messages for groups we don't host yet: we are being added to
		// them. Their replicas start empty and learn from a snapshot; one
		// synced batch creates those of the whole frame. Groups that left
		// the node are not created again (see gc.go).
		if err := n.createEmpty(0, unknown...); err != nil {
			return
		}
	}
	for _, m := range msgs {
		if m.Group == 0 {
			if resp, ok := n.live.Handle(m); ok {
				replies = append(replies, resp)
			}
			continue
		}
		r := n.replica(m.Group)
		if r == nil {
			replies = append(replies, n.answerAsRemoved(m)...)
			continue
		}
		n.post(r, func(in *inputs) { in.msgs = append(in.msgs, m) })
	}
	if len(replies) > 0 {
		n.trans.SendBatch(replies)
	}
}

// createEmpty creates uninitialized replicas for groups this node is
// joining, those of ids it does not host yet, with one synced batch for
// all of them. gen is the descriptor generation that asks for them, zero
// for messages: a group that left the node at gen or later is skipped
// (mayCreate). They have no configuration, so they never campaign, and no
// range, so they serve nothing until their first snapshot arrives.
//
// A replica's meta is durable before the replica is registered: once
// registered, any message can reach it, and whatever it promises or
// accepts is persisted in its cycles; had the meta not been durable by
// then, a crash would leave that hard state behind a group that loadGroups
// skips (no meta), and the next message would create an empty replica
// that forgot its promises. createMu, which CreateGroups holds too, keeps
// the empty meta from overwriting the one of a range CreateGroups is
// creating: whoever comes second finds the replica registered.
func (n *Node) createEmpty(gen uint64, ids ...uint64) error {
	n.createMu.Lock()
	defer n.createMu.Unlock()
	b := n.eng.NewBatch()
	defer b.Close()
	var fresh []uint64
	for _, id := range ids {
		if n.replica(id) == nil && !slices.Contains(fresh, id) && n.mayCreate(id, gen) {
			fresh = append(fresh, id)
			meta := emptyMeta(id)
			b.SetGroupMeta(engine.GroupID(id), meta.marshal())
		}
	}
	if len(fresh) == 0 {
		return nil // created while we waited
	}
	if err := n.committer.Commit(b, true); err != nil {
		n.fatal(err)
		return err
	}
	for _, id := range fresh {
		if _, err := n.newReplica(id, group.State{}, emptyMeta(id), false); err != nil {
			return err
		}
	}
	return nil
}

// emptyMeta is the meta of a replica that knows nothing of its range yet.
func emptyMeta(id uint64) groupMeta {
	return groupMeta{Desc: &kvpb.RangeDescriptor{RangeId: id}}
}

// initialize turns an empty replica, created by a peer's message before
// the node bootstrapped the range or applied the split that creates it,
// into the bootstrapped one (or the split's right half, with split). It
// runs on the replica's worker, between cycles, so the group's durable
// state is all there is: the same acceptor, now knowing its configuration.
// What it writes joins the cycle's batch b, which is synced before the
// group sends anything: thousands of replicas initialized at a cluster's
// start share their workers' fsyncs rather than paying one each.
func (n *Node) initialize(r *replica, meta *groupMeta, split *splitOrigin, b *engine.Batch) (written bool, err error) {
	if len(r.desc.Load().GetReplicas()) > 0 {
		return false, nil // a snapshot initialized it meanwhile
	}
	g := engine.GroupID(r.id)
	st, err := n.eng.LoadGroup(g)
	if err != nil {
		n.fatal(err)
		return false, err
	}
	gs, err := recoveredState(r.id, st, meta.Config)
	if err != nil {
		return false, err
	}
	campaign := meta.Desc.LeaderNodeId == n.cfg.NodeID
	if split != nil {
		// The acceptor keeps whatever it promised while empty, if higher
		// (an empty replica accepts nothing, so its log is empty).
		promised := gs.HardState.Promised
		gs = group.SplitState(meta.Config, split.ballot)
		if split.ballot.Less(promised) {
			gs.HardState.Promised = promised
		}
		campaign = split.ballot.Node == n.cfg.NodeID
	}
	rn, err := n.newGroup(r.id, gs)
	if err != nil {
		return false, err
	}
	if split != nil {
		// The parent's session records must be in the store, not only in
		// this cycle's batch, before the group applies anything: the
		// state machine loads a session from what was committed. A rare
		// path (a split whose right half a peer's message created first),
		// so it pays its own commit.
		sb := n.eng.NewBatch()
		defer sb.Close()
		sb.SetGroupMeta(g, meta.marshal())
		sb.SetHardState(g, gs.HardState.Marshal())
		sb.SetApplied(g, gs.Applied)
		split.write(sb, g)
		if err := n.committer.Commit(sb, true); err != nil {
			n.fatal(err)
			return false, err
		}
		r.syncedPromise = gs.HardState.Promised
	} else {
		b.SetGroupMeta(g, meta.marshal())
		written = true
	}
	r.rn, r.appliedConfig = rn, meta.Config
	r.setDesc(meta.Desc)
	n.index(r)
	if campaign {
		rn.Campaign()
	}
	return written, nil
}

// Stats are the node's batching and transport figures.
type Stats struct {
	CommandsPerValue float64
	// Syncs counts the WAL fsyncs of the node's store (the committer's
	// synced rounds, each shared by the cycles of every worker that were
	// ready), and RecordsPerSync the records each carried on average.
	RecordsPerSync float64
	Syncs          int64
	Transport      transport.Stats
	// Groups counts the node's replicas, Active those not quiesced and
	// Leaders those that lead their group.
	Groups, Active, Leaders int
}

// LostPeers returns the nodes whose connection from this node broke and
// could not be opened again.
func (n *Node) LostPeers() []uint64 { return n.trans.Lost() }

// Stats returns the node's counters.
func (n *Node) Stats() Stats {
	cs := n.committer.Stats()
	s := Stats{
		CommandsPerValue: n.stats.CommandsPerValue(),
		Syncs:            int64(cs.Syncs),
		Transport:        n.trans.Stats(),
	}
	if cs.Syncs > 0 {
		s.RecordsPerSync = float64(cs.SyncedRecords) / float64(cs.Syncs)
	}
	n.mu.RLock()
	s.Groups = len(n.replicas)
	for _, r := range n.replicas {
		if r.leader.Load() == n.cfg.NodeID {
			s.Leaders++
		}
	}
	n.mu.RUnlock()
	n.activeMu.Lock()
	s.Active = len(n.active)
	n.activeMu.Unlock()
	return s
}

var errStopped = errors.New("node: stopped")

// pebbleLogger routes Pebble's log lines through slog at debug level;
// errors stay errors. The engine itself fails and stops on a Fatalf after
// logging it here.
type pebbleLogger struct{ l *slog.Logger }

func (p pebbleLogger) Infof(format string, args ...any)  { p.l.Debug(fmt.Sprintf(format, args...)) }
func (p pebbleLogger) Errorf(format string, args ...any) { p.l.Error(fmt.Sprintf(format, args...)) }
func (p pebbleLogger) Fatalf(format string, args ...any) { p.l.Error(fmt.Sprintf(format, args...)) }
