package service

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"slices"
	"sort"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/cockroachdb/pebble/v2/vfs"
	"github.com/shardd/shardd/internal/tracing"
	"github.com/shardd/shardd/internal/tracing/provider"
	"github.com/shardd/shardd/kvpb"
	"github.com/shardd/shardd/node"
	"github.com/shardd/shardd/placement"
	"github.com/shardd/shardd/placementpb"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/metric"
	"go.opentelemetry.io/otel/trace"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
)

// Config configures one placement process.
type Config struct {
	// ID is this process's id among the placement processes, never zero.
	ID uint64
	// ListenAddr serves the Placement API and the placement group's own
	// node traffic. The default value is "127.0.0.1:7000". A lone process
	// may use port 0 (a free port; see Server.Addr).
	ListenAddr string
	// DataDir holds the process's store; FS is its filesystem (default
	// vfs.Default).
	DataDir string
	FS      vfs.FS
	// Peers maps every placement process's id, this one's included, to its
	// ListenAddr. Its keys are the placement group's voters: 1 or 3 of
	// them. Empty means this process alone.
	Peers map[uint64]string

	// InitialRanges is the number of ranges to bootstrap, cut evenly over
	// keys SplitPrefix followed by SplitWidth decimal digits (see
	// placement.EvenSplitKeys). SplitKeys, if set, are the cuts instead.
	// The default value is one range.
	InitialRanges int
	SplitKeys     [][]byte
	// SplitPrefix and SplitWidth shape the even split keys. The default
	// values are "k" and 4 (wider if InitialRanges needs it), the key
	// space shardd's demo and bench use.
	SplitPrefix string
	SplitWidth  int
	// Replicas per range, on distinct nodes. The default value is 3.
	Replicas int
	// ExpectedNodes is how many nodes must register before the first
	// ranges are created. The default value is Replicas.
	ExpectedNodes int

	// HeartbeatTimeout is how long a node stays live after it last
	// registered. The default value is 5s.
	HeartbeatTimeout time.Duration
	// DeadAfter is how long a node must be silent (no heartbeat) before
	// its replicas are re-created on other nodes. The default value is
	// 1m: long enough for a restart, short enough that a lost machine's
	// ranges do not run on two replicas for long.
	DeadAfter time.Duration
	// MaxConcurrentMoves bounds the replica moves (repairs and balancing)
	// under way at once. The default value is 2.
	MaxConcurrentMoves int
	// SettleTime is how long a node that was down (no heartbeat for
	// HeartbeatTimeout) must be back before the balancer moves leaders or
	// replicas onto it: a node that flaps should not pull load to itself
	// each time. The default value is 10s.
	SettleTime time.Duration
	// BalanceInterval is how often the leader gathers leaders and spreads
	// them. The default value is 1s.
	BalanceInterval time.Duration
	// MaxTransfersPerRound and MaxTransfersInFlight bound the leader
	// transfers one balancing round issues, and at once. The default
	// values are 256 and 32.
	MaxTransfersPerRound, MaxTransfersInFlight int
	// SplitSize is the size of a range's data, in bytes as its leader
	// estimates it, from which the leader splits the range at the middle
	// of its bytes (autosplit.go). The default value is 64 MiB; a negative
	// value turns size splits off.
	SplitSize int64
	// SplitQPS is the load, in reads and writes per second that a range's
	// leader was sent over its load window, from which the leader splits
	// the range at the median of the keys requested. The default value is
	// defaultSplitQPS (see there why); a negative value turns load splits
	// off.
	SplitQPS float64
	// MaxConcurrentSplits bounds the splits under way at once, whoever
	// started them; automatic splits wait for a free one. The default
	// value is 4.
	MaxConcurrentSplits int
	// LoadThreshold is how far above the mean a node's load (the reads
	// and writes per second of the ranges it leads, as their leaders
	// measure them) may be, as a fraction of the mean, before the
	// balancer moves load off it (loadbalance.go). The default value is
	// 0.1; a negative value turns load balancing off.
	LoadThreshold float64
	// LoadFloor is the least excess over the mean load, in ops/s, that
	// the balancer acts on, whatever LoadThreshold says: a cluster whose
	// busiest node serves at most LoadFloor ops/s moves nothing for load.
	// The default value is 100; a negative value means no floor.
	LoadFloor float64
	// LoadCooldown is how long a range whose leader changed is not moved
	// for load, and counts at its new leader with the load it had at the
	// old one: a new leader measures a range afresh, which takes it one
	// or two of its load windows (node.Config.LoadWindow, 10s by
	// default), and until then reports too little. The default value is
	// 30s.
	LoadCooldown time.Duration
	// PollInterval is how often the process checks whether it leads. The
	// default value is 100ms.
	PollInterval time.Duration
	// RPCTimeout bounds every call the leader makes (to its store and to
	// nodes). The default value is 5s.
	RPCTimeout time.Duration
	// TickInterval is the placement group's tick (see node.Config). The
	// default value is 100ms.
	TickInterval time.Duration
	// Tracing configures the process's tracing (see package provider):
	// every split, move and leader transfer is a trace of its own, sampled
	// at Tracing.Sample, whose Admin calls to the nodes carry its context.
	// The default value traces nothing.
	Tracing provider.Config
	// Logger is where the process logs. The default value is slog.Default().
	Logger *slog.Logger
	// MeterProvider receives the process's metrics: the map's, the
	// operations' and its own node's (see metrics.go). The default value
	// is nil: no metrics.
	MeterProvider metric.MeterProvider
}

// maxInitialRanges keeps the bootstrap mutation, one batch, within the
// node's default batch limits (10,000 ops).
const maxInitialRanges = 9000

func (c *Config) ensureDefaults() {
	if c.ListenAddr == "" {
		c.ListenAddr = "127.0.0.1:7000"
	}
	if c.FS == nil {
		c.FS = vfs.Default
	}
	if len(c.Peers) == 0 {
		c.Peers = map[uint64]string{c.ID: c.ListenAddr}
	}
	if c.InitialRanges == 0 && len(c.SplitKeys) == 0 {
		c.InitialRanges = 1
	}
	if c.SplitPrefix == "" {
		c.SplitPrefix = "k"
	}
	if c.SplitWidth == 0 {
		c.SplitWidth = max(4, len(strconv.Itoa(c.InitialRanges)))
	}
	if c.Replicas == 0 {
		c.Replicas = 3
	}
	if c.ExpectedNodes == 0 {
		c.ExpectedNodes = c.Replicas
	}
	if c.HeartbeatTimeout == 0 {
		c.HeartbeatTimeout = 5 * time.Second
	}
	if c.SettleTime == 0 {
		c.SettleTime = 10 * time.Second
	}
	if c.DeadAfter == 0 {
		c.DeadAfter = time.Minute
	}
	if c.MaxConcurrentMoves == 0 {
		c.MaxConcurrentMoves = 2
	}
	if c.BalanceInterval == 0 {
		c.BalanceInterval = time.Second
	}
	if c.MaxTransfersPerRound == 0 {
		c.MaxTransfersPerRound = 256
	}
	if c.MaxTransfersInFlight == 0 {
		c.MaxTransfersInFlight = 32
	}
	if c.SplitSize == 0 {
		c.SplitSize = defaultSplitSize
	}
	if c.SplitQPS == 0 {
		c.SplitQPS = defaultSplitQPS
	}
	if c.MaxConcurrentSplits == 0 {
		c.MaxConcurrentSplits = 4
	}
	if c.LoadThreshold == 0 {
		c.LoadThreshold = 0.1
	}
	if c.LoadFloor == 0 {
		c.LoadFloor = 100
	}
	if c.LoadCooldown == 0 {
		c.LoadCooldown = 30 * time.Second
	}
	if c.PollInterval == 0 {
		c.PollInterval = 100 * time.Millisecond
	}
	if c.RPCTimeout == 0 {
		c.RPCTimeout = 5 * time.Second
	}
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
}

// validate reports the first setting that is wrong, saying how to fix it.
func (c *Config) validate() error {
	switch {
	case c.ID == 0:
		return errors.New("placement: the process id must not be zero; give each placement process its own id, e.g. 1, 2, 3")
	case c.DataDir == "":
		return errors.New("placement: a data directory is required")
	case len(c.Peers) != 1 && len(c.Peers) != 3:
		return fmt.Errorf("placement: %d placement processes; run 1, or 3 to tolerate one failure", len(c.Peers))
	case c.Peers[c.ID] == "":
		return fmt.Errorf("placement: the peers do not list this process (id %d) with an address", c.ID)
	case c.InitialRanges < 0:
		return fmt.Errorf("placement: %d initial ranges; it must be at least 1", c.InitialRanges)
	case c.InitialRanges > 1 && len(c.SplitKeys) > 0:
		return errors.New("placement: give either a number of initial ranges or split keys, not both")
	case c.InitialRanges > maxInitialRanges || len(c.SplitKeys) >= maxInitialRanges:
		return fmt.Errorf("placement: at most %d initial ranges; split more later", maxInitialRanges)
	case c.Replicas < 1:
		return fmt.Errorf("placement: %d replicas per range; it must be at least 1", c.Replicas)
	case c.MaxConcurrentSplits < 0:
		return fmt.Errorf("placement: %d concurrent splits; it must be at least 1", c.MaxConcurrentSplits)
	case c.LoadCooldown < 0:
		return fmt.Errorf("placement: load cooldown %v; it must not be negative", c.LoadCooldown)
	case c.ExpectedNodes < c.Replicas:
		return fmt.Errorf("placement: %d expected nodes cannot hold %d replicas per range on distinct nodes; expect at least %d nodes",
			c.ExpectedNodes, c.Replicas, c.Replicas)
	}
	for id, addr := range c.Peers {
		if id == 0 || addr == "" {
			return fmt.Errorf("placement: peer %d=%q: every peer needs a non-zero id and an address", id, addr)
		}
	}
	if c.splitKeys() == nil && c.InitialRanges > 1 {
		return fmt.Errorf("placement: cannot cut %d ranges from keys of %d digits; widen the split keys", c.InitialRanges, c.SplitWidth)
	}
	if _, err := placement.InitialRanges(c.splitKeys(), seq(c.Replicas), c.Replicas); err != nil {
		return fmt.Errorf("placement: bad split keys: %w", err)
	}
	return nil
}

// splitKeys returns the cuts of the first map.
func (c *Config) splitKeys() [][]byte {
	if len(c.SplitKeys) > 0 {
		return c.SplitKeys
	}
	return placement.EvenSplitKeys(c.InitialRanges, c.SplitPrefix, c.SplitWidth)
}

// seq returns 1..n.
func seq(n int) []uint64 {
	s := make([]uint64, n)
	for i := range s {
		s[i] = uint64(i + 1)
	}
	return s
}

// Server is one placement process.
type Server struct {
	cfg   Config
	log   *slog.Logger
	node  atomic.Pointer[node.Node]
	store store
	conn  *grpc.ClientConn // to the process's own node
	nodes *connPool        // to shardd nodes
	// tracer traces the operations (startOp).
	tracer trace.Tracer

	ctx    context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup

	// mutMu serialises mutations, held across the store write; mu guards
	// the fields below and is never held across a call.
	mutMu sync.Mutex
	mu    sync.Mutex
	term  *term // nil: not leading
	// heartbeats are the leader's soft state: when each node last
	// registered, and the load it reported. A new leader starts without;
	// nodes re-register within their heartbeat interval.
	heartbeats map[uint64]heartbeat
	lastBal    time.Time
	// skipped counts balancing rounds skipped in a row because the nodes'
	// reported leader counts were balanced; see balance.
	skipped int
	// retryAt delays the next bootstrap step after a failed one.
	retryAt time.Time
	// autoSplitting are the ranges automatic splits are starting or
	// driving (autosplit.go).
	autoSplitting map[uint64]bool
	// loads is the load balancer's memory (loadbalance.go); only the
	// control loop touches it.
	loads loadMemory
	// decisions are the balancer's latest decisions, oldest first, at
	// most maxDecisions, for ListOperations.
	decisions []string
	// metrics are the process's instruments (metrics.go).
	metrics placementMetrics
}

type heartbeat struct {
	at                time.Time
	replicas, leaders uint32
	draining          bool
	// lostPeers are the nodes this node last said it lost.
	lostPeers []uint64
	// upSince is when the node came back after being down, as this leader
	// saw it (zero: it was not seen down).
	upSince time.Time
}

// lostGrace is how long a node may be silent, while a peer says it lost
// it, before the service takes it for down: a few of shardd's heartbeat
// intervals (250 ms), so that one late heartbeat does not count.
const lostGrace = 750 * time.Millisecond

// term is the state of one stretch of leadership: the placement state as
// of rev, and the watch history this leader committed.
type term struct {
	rm           *placement.RangeMap // nil until bootstrapped
	nodes        map[uint64]*placementpb.NodeRecord
	rev          uint64
	bootstrapped bool
	created      bool
	nextRangeID  uint64
	clusterID    string
	// pending are the nodes that were down when the first ranges were
	// created, and have not created their replicas since.
	pending map[uint64]bool
	// ops are the operations under way, by range (see ops.go), and
	// driving those a goroutine of this term is carrying out.
	ops     map[uint64]*placementpb.RangeOperation
	driving map[uint64]bool
	// started is when this term began: a node silent since then for
	// DeadAfter is dead, though this leader never heard from it.
	started time.Time
	// history holds the events of the last revisions this term committed,
	// oldest first, at most maxHistory.
	history []*placementpb.WatchEvent
	// changed is closed (and replaced) on every commit; done when the term
	// ends.
	changed chan struct{}
	done    chan struct{}
}

const maxHistory = 4096

// storeMemTableSize sizes the memtables of a placement process's store. It
// holds the range map and the node records, a few MB at most even for
// thousands of ranges, so small memtables do (the WAL files on disk are
// about as large).
const storeMemTableSize = 4 << 20

// Start opens the process's store, starts its node and serves.
func Start(cfg Config) (*Server, error) {
	cfg.ensureDefaults()
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	s := &Server{cfg: cfg, log: cfg.Logger.With("placement", cfg.ID), heartbeats: map[uint64]heartbeat{}, nodes: newConnPool()}
	s.ctx, s.cancel = context.WithCancel(context.Background())
	voters := slices.Sorted(maps.Keys(cfg.Peers))
	desc := &kvpb.RangeDescriptor{RangeId: placementRangeID, Generation: 1, LeaderNodeId: voters[0]}
	for _, id := range voters {
		desc.Replicas = append(desc.Replicas, &kvpb.ReplicaDescriptor{NodeId: id, Role: kvpb.ReplicaRole_VOTER})
	}
	if err := s.newMetrics(cfg.MeterProvider); err != nil {
		return nil, fmt.Errorf("placement: metrics: %w", err)
	}
	tcfg := cfg.Tracing
	if tcfg.ServiceName == "" {
		tcfg.ServiceName = "placement"
	}
	n, err := node.Start(node.Config{
		NodeID: cfg.ID, Dir: cfg.DataDir, FS: cfg.FS, ListenAddr: cfg.ListenAddr, Peers: cfg.Peers,
		TickInterval: cfg.TickInterval, Bootstrap: []*kvpb.RangeDescriptor{desc}, MemTableSize: storeMemTableSize, Tracing: tcfg,
		Logger:           cfg.Logger.With("placement", cfg.ID),
		RegisterServices: func(g *grpc.Server) { placementpb.RegisterPlacementServer(g, &api{s: s}) },
		MeterProvider:    cfg.MeterProvider,
		// SERVING once the placement group has a leader (see step).
		WaitReady: true,
	})
	if err != nil {
		s.metrics.close()
		return nil, err
	}
	if len(cfg.Peers) == 1 {
		// A lone process may listen on port 0; its hints name the port it got.
		s.cfg.Peers = map[uint64]string{cfg.ID: n.Addr()}
	}
	s.node.Store(n)
	s.tracer = n.TracerProvider().Tracer("github.com/shardd/shardd/placement/service")
	if s.conn, err = grpc.NewClient(n.Addr(), grpc.WithTransportCredentials(insecure.NewCredentials())); err != nil {
		n.Stop()
		return nil, err
	}
	s.store = store{kv: kvpb.NewKVClient(s.conn)}
	s.wg.Add(1)
	go s.run()
	s.log.Info("placement process started", "addr", n.Addr(), "peers", len(cfg.Peers))
	return s, nil
}

// Addr returns the process's gRPC address.
func (s *Server) Addr() string { return s.node.Load().Addr() }

// Stop ends the process: it stops leading (ending watch streams) and
// closes its node. It is idempotent.
func (s *Server) Stop() {
	s.cancel()
	s.wg.Wait()
	s.mu.Lock()
	s.endTermLocked()
	s.mu.Unlock()
	s.node.Load().Stop()
	if s.conn != nil {
		_ = s.conn.Close()
	}
	s.nodes.close()
	s.metrics.close()
}

// IsLeader reports whether this process currently serves as the leader.
func (s *Server) IsLeader() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.term != nil
}

// leaderHint returns the placement process this one believes leads.
func (s *Server) leaderHint() (uint64, string) {
	n := s.node.Load()
	if n == nil {
		return 0, ""
	}
	id, _ := n.RangeLeader(placementRangeID)
	return id, s.cfg.Peers[id]
}

// run is the process's control loop: it follows the placement group's
// leadership and, while leading, does the control work. Each step is
// bounded by RPCTimeout.
func (s *Server) run() {
	defer s.wg.Done()
	t := time.NewTicker(s.cfg.PollInterval)
	defer t.Stop()
	for {
		select {
		case <-s.ctx.Done():
			return
		case <-t.C:
		}
		s.step()
	}
}

func (s *Server) step() {
	lead, _ := s.leaderHint()
	if lead != 0 {
		// The service answers, or names its leader: it is up (health).
		s.node.Load().SetReady()
	}
	s.mu.Lock()
	leading := s.term != nil
	if leading && lead != s.cfg.ID {
		s.log.Info("placement leadership lost", "leader hint", lead)
		s.endTermLocked()
		leading = false
	}
	s.mu.Unlock()
	if lead != s.cfg.ID {
		return
	}
	if !leading {
		if err := s.takeOver(); err != nil {
			s.log.Debug("cannot take over yet", "err", err)
			return
		}
	}
	tm := s.currentTerm()
	if tm == nil {
		return
	}
	s.mu.Lock()
	boot, created, registered := tm.bootstrapped, tm.created, len(tm.nodes)
	s.mu.Unlock()
	switch {
	case (!boot || !created) && time.Now().Before(s.retryAt):
		// The last attempt failed: wait a balancing interval, rather than a
		// poll, before the next, so that a node that is down costs one
		// attempt and one log line per interval.
	case !boot && registered >= s.cfg.ExpectedNodes:
		if err := s.bootstrap(); err != nil {
			s.retryAt = time.Now().Add(s.cfg.BalanceInterval)
			s.log.Warn("bootstrap failed; retrying", "err", err)
		}
	case boot && !created:
		if err := s.createRanges(); err != nil {
			s.retryAt = time.Now().Add(s.cfg.BalanceInterval)
			s.log.Info("creating the first ranges on the nodes; retrying", "err", err)
		} else {
			// The first ranges are spread evenly: the first balancing round
			// is a whole interval later, not at the next poll, so that a
			// node joining just after creation is balanced onto on the
			// interval's schedule, as every later one is.
			s.lastBal = time.Now()
		}
	case boot && created && time.Since(s.lastBal) >= s.cfg.BalanceInterval:
		s.lastBal = time.Now()
		s.resumeOps()
		s.moveReplicas()
		reports := s.gatherLoad()
		s.autoSplit(reports)
		s.heal()
		moved, err := s.balance()
		switch {
		case err != nil:
			s.log.Info("leader balancing round failed", "err", err)
		case moved == 0:
			// Load moves plan from the leaders the reports name: not in a
			// round that moved leaders to even out their counts.
			s.balanceLoad(reports)
		}
	}
}

func (s *Server) currentTerm() *term {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.term
}

// takeOver loads the placement state and starts a term.
func (s *Server) takeOver() error {
	ctx, cancel := context.WithTimeout(s.ctx, s.cfg.RPCTimeout)
	defer cancel()
	s.mutMu.Lock()
	defer s.mutMu.Unlock()
	st, err := s.store.load(ctx)
	if err != nil {
		return err
	}
	if st.clusterID == "" {
		// A new placement state: this leader names the cluster, fenced
		// like every mutation, so that of two processes that both think
		// they lead, one id wins and the other takes over again.
		id := rand.Text()
		m := &mutation{}
		m.put(keyCluster, []byte(id))
		if err := s.store.commit(ctx, st.rev, m); err != nil {
			return fmt.Errorf("create the cluster id: %w", err)
		}
		st.rev, st.clusterID = st.rev+1, id
		s.log.Info("created the cluster", "cluster", id)
	}
	tm := &term{nodes: st.nodes, rev: st.rev, bootstrapped: st.bootstrapped, created: st.created,
		nextRangeID: st.nextRangeID, clusterID: st.clusterID, pending: st.pending,
		ops: st.ops, driving: map[uint64]bool{}, started: time.Now(),
		changed: make(chan struct{}), done: make(chan struct{})}
	if st.bootstrapped {
		if tm.rm, err = placement.NewRangeMap(st.descs); err != nil {
			return fmt.Errorf("placement state is corrupt: %w", err)
		}
	}
	s.mu.Lock()
	s.term = tm
	s.mu.Unlock()
	s.log.Info("placement leadership taken", "revision", st.rev, "ranges", len(st.descs), "nodes", len(st.nodes))
	return nil
}

// endTermLocked ends the current term, if any: watchers get Unavailable.
func (s *Server) endTermLocked() {
	if s.term != nil {
		close(s.term.done)
		s.term = nil
	}
}

// errNotLeading is what a mutation returns when the term it started in is
// over.
var errNotLeading = errors.New("placement: not the leader any more")

// mutate commits one change: build returns the writes and the in-memory
// effect (applied to the term under mu after the write succeeded) from the
// term's current state, or nil if there is nothing to do. Any failure to
// write ends the term: the next one reloads what is durable.
func (s *Server) mutate(ctx context.Context, build func(tm *term) (*mutation, func(tm *term) *placementpb.WatchEvent, error)) error {
	s.mutMu.Lock()
	defer s.mutMu.Unlock()
	s.mu.Lock()
	tm := s.term
	var (
		m     *mutation
		apply func(*term) *placementpb.WatchEvent
		err   error
		rev   uint64
	)
	if tm != nil {
		m, apply, err = build(tm)
		rev = tm.rev
	}
	s.mu.Unlock()
	switch {
	case tm == nil:
		return errNotLeading
	case err != nil:
		return err
	case m == nil:
		return nil
	}
	ctx, cancel := context.WithTimeout(ctx, s.cfg.RPCTimeout)
	defer cancel()
	if err := s.store.commit(ctx, rev, m); err != nil {
		s.mu.Lock()
		if s.term == tm {
			s.log.Warn("placement write failed: ending the term to reload the state", "revision", rev, "err", err)
			s.endTermLocked()
		}
		s.mu.Unlock()
		return err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.term != tm {
		return errNotLeading // ended meanwhile; the write stands, the next term loads it
	}
	ev := apply(tm)
	if ev == nil {
		ev = &placementpb.WatchEvent{}
	}
	tm.rev = rev + 1
	ev.Revision = tm.rev
	tm.history = append(tm.history, ev)
	if len(tm.history) > maxHistory {
		tm.history = slices.Clone(tm.history[len(tm.history)-maxHistory:])
	}
	close(tm.changed)
	tm.changed = make(chan struct{})
	return nil
}

// refusedError is a registration the service refuses for good (see
// placementpb.RegistrationRefused).
type refusedError struct{ reason string }

func (e *refusedError) Error() string { return "registration refused: " + e.reason }

// status is the answer to the node.
func (e *refusedError) status() error {
	st, err := status.New(codes.FailedPrecondition, e.Error()).
		WithDetails(&placementpb.RegistrationRefused{Reason: e.reason})
	if err != nil {
		return status.Error(codes.FailedPrecondition, e.Error())
	}
	return st.Err()
}

// refusalLocked returns why req must be refused, or nil: a node of another
// cluster, or a known node with another store than the one it registered
// with (its data directory was lost: it must not rejoin as an acceptor
// that forgot its promises).
func refusalLocked(tm *term, req *placementpb.RegisterNodeRequest) error {
	if req.ClusterId != "" && req.ClusterId != tm.clusterID {
		return &refusedError{fmt.Sprintf("node %d belongs to cluster %s, but this placement service runs cluster %s: "+
			"point the node's --placement at its own cluster's placement service, or start it with an empty data directory to join this one",
			req.NodeId, req.ClusterId, tm.clusterID)}
	}
	if old := tm.nodes[req.NodeId]; old != nil && old.StoreId != "" && old.StoreId != req.StoreId {
		return &refusedError{fmt.Sprintf("node %d registered with store %s, but now comes with store %s: its data directory was wiped or replaced, "+
			"and a node that lost its state must not rejoin as if it had it. Restore the node's data directory, "+
			"or start it with a new --id and an empty data directory and replace node %d's replicas",
			req.NodeId, old.StoreId, req.StoreId, req.NodeId)}
	}
	return nil
}

// register records a node's heartbeat and, the first time or when its
// address changed, persists it, after checking that the node may join.
func (s *Server) register(ctx context.Context, req *placementpb.RegisterNodeRequest) (*placementpb.RegisterNodeResponse, error) {
	s.mu.Lock()
	if s.term != nil {
		// Checked before the heartbeat counts the node as live.
		if err := refusalLocked(s.term, req); err != nil {
			s.mu.Unlock()
			return nil, err
		}
	}
	hb := heartbeat{at: time.Now(), replicas: req.Replicas, leaders: req.Leaders, draining: req.Draining, lostPeers: req.LostPeers}
	if prev, ok := s.heartbeats[req.NodeId]; ok {
		hb.upSince = prev.upSince
		if !s.liveLocked(req.NodeId, prev, hb.at) {
			hb.upSince = hb.at
			s.log.Info("node is back; it settles before the balancer moves anything onto it", "node", req.NodeId, "settle", s.cfg.SettleTime)
		}
		if req.Draining && !prev.draining {
			s.log.Info("node is draining; the balancer moves nothing onto it", "node", req.NodeId)
		}
	}
	s.heartbeats[req.NodeId] = hb
	s.mu.Unlock()
	err := s.mutate(ctx, func(tm *term) (*mutation, func(*term) *placementpb.WatchEvent, error) {
		if err := refusalLocked(tm, req); err != nil {
			return nil, nil, err
		}
		if old := tm.nodes[req.NodeId]; old != nil && old.Addr == req.Addr && old.StoreId == req.StoreId {
			return nil, nil, nil
		}
		rec := &placementpb.NodeRecord{NodeId: req.NodeId, Addr: req.Addr, RegisteredUnixNanos: time.Now().UnixNano(),
			StoreId: req.StoreId}
		if old := tm.nodes[req.NodeId]; old != nil {
			rec.RegisteredUnixNanos = old.RegisteredUnixNanos
		}
		m := &mutation{}
		m.putNode(rec)
		return m, func(tm *term) *placementpb.WatchEvent {
			tm.nodes[rec.NodeId] = rec
			return nil
		}, nil
	})
	if err != nil {
		return nil, err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.term == nil {
		return nil, errNotLeading
	}
	return &placementpb.RegisterNodeResponse{Revision: s.term.rev, Bootstrapped: s.term.bootstrapped,
		ClusterId: s.term.clusterID}, nil
}

// settling reports whether hb's node came back from being down less than
// the settle time ago.
func (s *Server) settling(hb heartbeat) bool {
	return !hb.upSince.IsZero() && time.Since(hb.upSince) < s.cfg.SettleTime
}

// balanceTargetsLocked returns the live nodes the balancer may move
// leaders and replicas onto: not draining, not settling.
func (s *Server) balanceTargetsLocked(tm *term) []uint64 {
	var out []uint64
	for _, id := range s.liveNodesLocked(tm) {
		if hb := s.heartbeats[id]; !hb.draining && !s.settling(hb) {
			out = append(out, id)
		}
	}
	return out
}

// liveNodes returns the registered nodes that are up (see liveLocked).
func (s *Server) liveNodesLocked(tm *term) []uint64 {
	var live []uint64
	now := time.Now()
	for id := range tm.nodes {
		if hb, ok := s.heartbeats[id]; ok && s.liveLocked(id, hb, now) {
			live = append(live, id)
		}
	}
	slices.Sort(live)
	return live
}

// liveLocked reports whether node id, whose last heartbeat is hb, is up at
// now: it heartbeated within the heartbeat timeout, unless it has been
// silent for lostGrace while a peer that heartbeated since says it lost
// its connection to it (a process killed is seen down in about a second,
// not after the whole timeout).
func (s *Server) liveLocked(id uint64, hb heartbeat, now time.Time) bool {
	quiet := now.Sub(hb.at)
	if quiet >= s.cfg.HeartbeatTimeout {
		return false
	}
	if quiet < lostGrace {
		return true
	}
	for other, ohb := range s.heartbeats {
		if other != id && ohb.at.After(hb.at) && slices.Contains(ohb.lostPeers, id) {
			return false
		}
	}
	return true
}

// bootstrap builds and persists the first map over the live registered
// nodes.
func (s *Server) bootstrap() error {
	return s.mutate(s.ctx, func(tm *term) (*mutation, func(*term) *placementpb.WatchEvent, error) {
		if tm.bootstrapped {
			return nil, nil, nil
		}
		live := s.liveNodesLocked(tm)
		if len(live) < s.cfg.ExpectedNodes {
			return nil, nil, fmt.Errorf("%d of %d expected nodes are live", len(live), s.cfg.ExpectedNodes)
		}
		descs, err := placement.InitialRanges(s.cfg.splitKeys(), live, s.cfg.Replicas)
		if err != nil {
			return nil, nil, err
		}
		rm, err := placement.NewRangeMap(descs)
		if err != nil {
			return nil, nil, err
		}
		m := &mutation{}
		for _, d := range descs {
			m.putDesc(d)
		}
		next := uint64(len(descs) + 1)
		m.put(keyNextID, encUint(next))
		m.put(keyBoot, valTrue)
		s.log.Info("bootstrapping the cluster", "ranges", len(descs), "nodes", live, "replicas", s.cfg.Replicas)
		return m, func(tm *term) *placementpb.WatchEvent {
			tm.rm, tm.bootstrapped, tm.nextRangeID = rm, true, next
			return &placementpb.WatchEvent{Full: true, Updated: rm.All()}
		}, nil
	})
}

// createRanges asks every node of the map to create its replicas, then
// records that they did. A node that is not live (it died after it
// registered) is skipped if every range keeps a majority of its replicas
// on nodes that did create theirs: those ranges work without it. It is
// recorded as pending, and heal creates its replicas when it is back. A
// live node that fails is retried at the next step.
func (s *Server) createRanges() error {
	s.mu.Lock()
	tm := s.term
	if tm == nil || tm.rm == nil {
		s.mu.Unlock()
		return errNotLeading
	}
	byNode, addrs := replicasByNodeLocked(tm)
	live, all := s.liveNodesLocked(tm), tm.rm.All()
	s.mu.Unlock()
	failed := s.createOn(byNode, addrs)
	var skipped []uint64
	for id, err := range failed {
		if slices.Contains(live, id) {
			return fmt.Errorf("node %d: %w", id, err)
		}
		skipped = append(skipped, id)
	}
	for _, d := range all {
		created := 0
		for _, r := range d.Replicas {
			if failed[r.NodeId] == nil {
				created++
			}
		}
		if 2*created <= len(d.Replicas) {
			return fmt.Errorf("range %d has no majority of created replicas while nodes %v are down", d.RangeId, skipped)
		}
	}
	slices.Sort(skipped)
	if len(skipped) > 0 {
		s.log.Warn("creating the first ranges without nodes that are down; they get their replicas when they are back", "nodes", skipped)
	}
	return s.mutate(s.ctx, func(tm *term) (*mutation, func(*term) *placementpb.WatchEvent, error) {
		m := &mutation{}
		m.put(keyCreated, valTrue)
		for _, id := range skipped {
			m.put(idKey(pendingPrefix, id), valTrue)
		}
		return m, func(tm *term) *placementpb.WatchEvent {
			tm.created = true
			for _, id := range skipped {
				tm.pending[id] = true
			}
			return nil
		}, nil
	})
}

// heal creates the replicas of the pending nodes that are live again. Only
// nodes that never created their replicas qualify: a node that created
// them and then lost its store must not come back with an empty one, as
// an acceptor that forgot its promises; it needs its replicas replaced.
// The replicas start from the first map's descriptors, which is what the
// group's log starts from.
func (s *Server) heal() {
	s.mu.Lock()
	tm := s.term
	if tm == nil || tm.rm == nil || len(tm.pending) == 0 {
		s.mu.Unlock()
		return
	}
	byNode, addrs := replicasByNodeLocked(tm)
	back := map[uint64][]*kvpb.RangeDescriptor{}
	for _, id := range s.liveNodesLocked(tm) {
		if !tm.pending[id] {
			continue
		}
		for _, d := range byNode[id] {
			if d.Generation != 1 {
				continue // changed since the first map: not this node's to start from scratch
			}
			d = proto.Clone(d).(*kvpb.RangeDescriptor)
			d.LeaderNodeId = 0 // the group has a leader; a newcomer must not campaign
			back[id] = append(back[id], d)
		}
	}
	s.mu.Unlock()
	failed := s.createOn(back, addrs)
	for id := range back {
		if err := failed[id]; err != nil {
			s.log.Info("cannot create a pending node's replicas; retrying", "node", id, "err", err)
			continue
		}
		err := s.mutate(s.ctx, func(tm *term) (*mutation, func(*term) *placementpb.WatchEvent, error) {
			m := &mutation{}
			m.del(idKey(pendingPrefix, id))
			return m, func(tm *term) *placementpb.WatchEvent { delete(tm.pending, id); return nil }, nil
		})
		if err == nil {
			s.log.Info("a node that was down at bootstrap created its replicas", "node", id)
		}
	}
}

// replicasByNodeLocked returns each node's ranges in the map, and the
// addresses of those nodes.
func replicasByNodeLocked(tm *term) (map[uint64][]*kvpb.RangeDescriptor, map[uint64]string) {
	byNode := map[uint64][]*kvpb.RangeDescriptor{}
	for _, d := range tm.rm.All() {
		for _, r := range d.Replicas {
			byNode[r.NodeId] = append(byNode[r.NodeId], d)
		}
	}
	addrs := map[uint64]string{}
	for id := range byNode {
		if rec := tm.nodes[id]; rec != nil {
			addrs[id] = rec.Addr
		}
	}
	return byNode, addrs
}

// createOn calls CreateRanges on every node of byNode at once, and returns
// the nodes that failed.
func (s *Server) createOn(byNode map[uint64][]*kvpb.RangeDescriptor, addrs map[uint64]string) map[uint64]error {
	var wg sync.WaitGroup
	var mu sync.Mutex
	failed := map[uint64]error{}
	for id, descs := range byNode {
		wg.Go(func() {
			err := s.callNode(addrs[id], func(ctx context.Context, c kvpb.AdminClient) error {
				_, err := c.CreateRanges(ctx, &kvpb.CreateRangesRequest{Ranges: descs})
				return err
			})
			if err != nil {
				mu.Lock()
				failed[id] = err
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	return failed
}

// startOp starts the span of a placement operation on range id: a root,
// or the child of the operation it serves (a move's leader transfer).
func (s *Server) startOp(ctx context.Context, name string, id uint64, attrs ...attribute.KeyValue) (context.Context, trace.Span) {
	return s.tracer.Start(ctx, name, trace.WithAttributes(append(attrs, tracing.Range.Int64(int64(id)), attribute.Int64("shardd.placement", int64(s.cfg.ID)))...))
}

// callNode runs one Admin call on a shardd node, bounded by RPCTimeout.
func (s *Server) callNode(addr string, call func(context.Context, kvpb.AdminClient) error) error {
	return s.callNodeCtx(s.ctx, addr, call)
}

// callNodeCtx is callNode on behalf of a caller whose ctx bounds it too.
func (s *Server) callNodeCtx(ctx context.Context, addr string, call func(context.Context, kvpb.AdminClient) error) error {
	if addr == "" {
		return status.Error(codes.Unavailable, "the node has no known address")
	}
	conn, err := s.nodes.get(addr)
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(ctx, s.cfg.RPCTimeout)
	defer cancel()
	return call(ctx, kvpb.NewAdminClient(conn))
}

// balance is one leader-spreading round: learn who leads what from the
// live nodes, record it as hints, and ask leaders to hand off where the
// plan says so. It returns the number of transfers it asked for.
func (s *Server) balance() (int, error) {
	s.mu.Lock()
	tm := s.term
	if tm == nil || tm.rm == nil {
		s.mu.Unlock()
		return 0, errNotLeading
	}
	live := s.liveNodesLocked(tm)
	// Asking every node which ranges it leads costs in proportion to the
	// ranges, every round. When the counts the nodes report in their
	// heartbeats already add up to every range and are balanced, skip it;
	// but gather now and then anyway, to refresh the map's leader hints.
	if s.skipped < hintRefreshRounds && s.reportedBalancedLocked(tm, live) {
		s.skipped++
		s.mu.Unlock()
		return 0, nil
	}
	s.skipped = 0
	addrs := map[uint64]string{}
	for _, id := range live {
		addrs[id] = tm.nodes[id].Addr
	}
	s.mu.Unlock()

	// actual[range] is the node that says it leads the range; reported
	// the freshest descriptor a node holds of each range.
	actual := map[uint64]uint64{}
	reported := map[uint64]*kvpb.RangeDescriptor{}
	var mu sync.Mutex
	var wg sync.WaitGroup
	for _, id := range live {
		wg.Add(1)
		go func() {
			defer wg.Done()
			err := s.callNode(addrs[id], func(ctx context.Context, c kvpb.AdminClient) error {
				resp, err := c.Ranges(ctx, &kvpb.RangesRequest{})
				if err != nil {
					return err
				}
				mu.Lock()
				defer mu.Unlock()
				for _, d := range resp.Ranges {
					if d.LeaderNodeId == id {
						actual[d.RangeId] = id
					}
					if r := reported[d.RangeId]; r == nil || r.Generation < d.Generation {
						reported[d.RangeId] = d
					}
				}
				return nil
			})
			if err != nil {
				s.log.Info("leader balancing: cannot learn which ranges a node leads; it is left out of this round", "node", id, "err", err)
			}
		}()
	}
	wg.Wait()

	s.adoptReportedSplits(reported)
	// Record the leaders as hints, in one mutation.
	if _, _, err := s.recordLeaders(s.ctx, actual); err != nil {
		return 0, err
	}

	s.mu.Lock()
	if s.term == nil {
		s.mu.Unlock()
		return 0, errNotLeading
	}
	all := s.term.rm.All()
	targets := s.balanceTargetsLocked(s.term)
	s.mu.Unlock()
	descs := make(map[uint64]*kvpb.RangeDescriptor, len(all))
	for _, d := range all {
		descs[d.RangeId] = d
	}
	plan := placement.PlanLeaderBalance(all, targets)
	var todo []placement.Transfer
	for _, t := range plan {
		// A range whose leader is unknown has nobody to ask; one whose
		// hint is stale waits for the next round's fresh hints.
		if t.From != 0 && actual[t.RangeID] == t.From && len(todo) < s.cfg.MaxTransfersPerRound {
			todo = append(todo, t)
		}
	}
	if len(todo) == 0 {
		return 0, nil
	}
	s.log.Info("moving leaders", "transfers", len(todo), "planned", len(plan))
	s.noteDecision(fmt.Sprintf("leader counts: %d leader transfers (%d planned) to even out the leaders per node", len(todo), len(plan)))
	return len(todo), s.transferLeaders(todo, descs, addrs)
}

// transferLeaders hands over the leaderships of todo, at most
// MaxTransfersInFlight at once, and records where they went. descs are
// the ranges by id, whose leader hints say whom to ask first.
func (s *Server) transferLeaders(todo []placement.Transfer, descs map[uint64]*kvpb.RangeDescriptor, addrs map[uint64]string) error {
	slots := make(chan struct{}, s.cfg.MaxTransfersInFlight)
	var failed atomic.Int64
	var mu sync.Mutex
	var wg sync.WaitGroup
	var firstErr atomic.Pointer[error]
	moved := map[uint64]uint64{}
	for _, t := range todo {
		slots <- struct{}{}
		wg.Add(1)
		go func() {
			defer func() { <-slots; wg.Done() }()
			// The node answers once the target leads.
			if err := s.transferLeader(s.ctx, descs[t.RangeID], t.To, addrs); err != nil {
				failed.Add(1)
				err = fmt.Errorf("range %d from node %d to node %d: %w", t.RangeID, t.From, t.To, err)
				firstErr.CompareAndSwap(nil, &err)
				s.log.Debug("leader transfer failed", "err", err)
				return
			}
			mu.Lock()
			moved[t.RangeID] = t.To
			mu.Unlock()
		}()
	}
	wg.Wait()
	// Record the moves now, not at the next round's gathering: each
	// transfer answered once its target led.
	if _, _, err := s.recordLeaders(s.ctx, moved); err != nil {
		return err
	}
	if f := failed.Load(); f > 0 {
		// One line a round (logged by step) rather than one a transfer,
		// with a reason to act on.
		return fmt.Errorf("%d of %d leader transfers failed, the next round retries; the first: %w", f, len(todo), *firstErr.Load())
	}
	return nil
}

// hintRefreshRounds bounds the balancing rounds skipped in a row (see
// balance): at the default interval the map's leader hints are at most
// about half a minute old.
const hintRefreshRounds = 30

// reportedBalancedLocked reports whether the leader counts the live nodes
// holding replicas last reported cover every range of the map and are
// balanced.
func (s *Server) reportedBalancedLocked(tm *term, live []uint64) bool {
	counts := make([]int, 0, len(live))
	total := 0
	for _, id := range live {
		hb := s.heartbeats[id]
		if hb.replicas == 0 {
			continue // holds no range: not one to lead any (see PlanLeaderBalance)
		}
		counts = append(counts, int(hb.leaders))
		total += int(hb.leaders)
	}
	return total == tm.rm.Len() && placement.LeadersBalanced(counts)
}

// nodeInfos lists the registered nodes, by id.
func (s *Server) nodeInfosLocked(tm *term) []*placementpb.NodeInfo {
	replicas, leaders := map[uint64]uint32{}, map[uint64]uint32{}
	if tm.rm != nil {
		for _, d := range tm.rm.All() {
			for _, r := range d.Replicas {
				replicas[r.NodeId]++
			}
			if d.LeaderNodeId != 0 {
				leaders[d.LeaderNodeId]++
			}
		}
	}
	out := make([]*placementpb.NodeInfo, 0, len(tm.nodes))
	for _, rec := range tm.nodes {
		ni := &placementpb.NodeInfo{NodeId: rec.NodeId, Addr: rec.Addr, RegisteredUnixNanos: rec.RegisteredUnixNanos,
			Replicas: replicas[rec.NodeId], Leaders: leaders[rec.NodeId]}
		if hb, ok := s.heartbeats[rec.NodeId]; ok {
			ni.LastHeartbeatUnixNanos = hb.at.UnixNano()
			ni.Live = s.liveLocked(rec.NodeId, hb, time.Now())
			ni.ReportedReplicas, ni.ReportedLeaders = hb.replicas, hb.leaders
			ni.Draining, ni.Settling = hb.draining, ni.Live && s.settling(hb)
		}
		out = append(out, ni)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].NodeId < out[j].NodeId })
	return out
}

// connPool keeps one client connection per shardd node address.
type connPool struct {
	mu    sync.Mutex
	conns map[string]*grpc.ClientConn
}

func newConnPool() *connPool { return &connPool{conns: map[string]*grpc.ClientConn{}} }

func (p *connPool) get(addr string) (*grpc.ClientConn, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if c := p.conns[addr]; c != nil {
		return c, nil
	}
	// Admin calls carry the trace context of the operation they serve.
	c, err := grpc.NewClient(addr, grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.WithUnaryInterceptor(tracing.UnaryClientInterceptor()))
	if err != nil {
		return nil, err
	}
	p.conns[addr] = c
	return c, nil
}

func (p *connPool) close() {
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, c := range p.conns {
		_ = c.Close()
	}
	clear(p.conns)
}
