package service

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/shardd/shardd/internal/testutil"
	"github.com/shardd/shardd/kvpb"
	"github.com/shardd/shardd/node"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"
)

func testLogger() *slog.Logger {
	level := slog.LevelError
	switch os.Getenv("PLACEMENT_TEST_LOG") {
	case "":
	case "debug":
		level = slog.LevelDebug
	default:
		level = slog.LevelInfo
	}
	return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: level}))
}

// placementCluster is 1 or 3 placement processes.
type placementCluster struct {
	t       *testing.T
	servers map[uint64]*Server
	addrs   []string
	// cfgs are the processes' configs, to restart one on its store.
	cfgs map[uint64]Config
}

func startPlacement(t *testing.T, n int, tweak func(*Config)) *placementCluster {
	t.Helper()
	// The processes must know each other's addresses before they listen, so
	// the ports are picked free and then bound; if another process took one
	// in between, start over on fresh ports (a few times at most).
	for attempt := 1; ; attempt++ {
		pc, err := tryStartPlacement(t, n, tweak)
		if err == nil {
			t.Cleanup(func() {
				for _, s := range pc.servers {
					s.Stop()
				}
			})
			return pc
		}
		if !errors.Is(err, syscall.EADDRINUSE) || attempt == 3 {
			t.Fatal(err)
		}
		t.Logf("a picked port was taken (%v); again on fresh ports", err)
	}
}

func tryStartPlacement(t *testing.T, n int, tweak func(*Config)) (*placementCluster, error) {
	addrs := testutil.FreeAddrs(t, n)
	peers := map[uint64]string{}
	for i, a := range addrs {
		peers[uint64(i+1)] = a
	}
	pc := &placementCluster{t: t, servers: map[uint64]*Server{}, addrs: addrs, cfgs: map[uint64]Config{}}
	for id, addr := range peers {
		cfg := Config{ID: id, ListenAddr: addr, DataDir: t.TempDir(), Peers: peers, TickInterval: 20 * time.Millisecond,
			PollInterval: 20 * time.Millisecond, BalanceInterval: 200 * time.Millisecond, HeartbeatTimeout: 3 * time.Second,
			Logger: testLogger()}
		if tweak != nil {
			tweak(&cfg)
		}
		s, err := Start(cfg)
		if err != nil {
			for _, s := range pc.servers {
				s.Stop()
			}
			return nil, err
		}
		pc.servers[id] = s
		pc.cfgs[id] = cfg
	}
	return pc, nil
}

// stop stops process id, as a crash would: its store keeps what it wrote.
func (pc *placementCluster) stop(id uint64) {
	pc.servers[id].Stop()
	delete(pc.servers, id)
}

// restart starts the stopped process id again on its store and address.
func (pc *placementCluster) restart(id uint64) {
	pc.t.Helper()
	var err error
	for attempt := 1; attempt <= 50; attempt++ {
		var s *Server
		if s, err = Start(pc.cfgs[id]); err == nil {
			pc.servers[id] = s
			return
		}
		// The port may linger a moment after the process stopped.
		time.Sleep(20 * time.Millisecond)
	}
	pc.t.Fatalf("restart placement process %d: %v", id, err)
}

// leader waits (bounded) for a process to serve as leader.
func (pc *placementCluster) leader() uint64 {
	pc.t.Helper()
	var id uint64
	testutil.WaitFor(pc.t, 10*time.Second, "a placement leader", func() bool {
		for i, s := range pc.servers {
			if s.IsLeader() {
				id = i
				return true
			}
		}
		return false
	})
	return id
}

func (pc *placementCluster) client() *Client {
	pc.t.Helper()
	c, err := NewClient(pc.addrs)
	if err != nil {
		pc.t.Fatal(err)
	}
	pc.t.Cleanup(func() { c.Close() })
	return c
}

// dataCluster is shardd nodes that register with the placement service and
// heartbeat to it.
type dataCluster struct {
	t      *testing.T
	peers  map[uint64]string // every node's address, started or not
	client *Client
	ctx    context.Context // ends the heartbeats
	wg     sync.WaitGroup
	nodes  map[uint64]*node.Node
	dirs   map[uint64]string // every node's data dir, kept across restarts
	conns  map[uint64]*grpc.ClientConn
	beats  map[uint64]context.CancelFunc // ends one node's heartbeats
	// tweak, if set, adjusts each node's config before it starts.
	tweak func(*node.Config)
}

// startNodes starts n nodes (ids 1..n) that know each other's addresses.
func startNodes(t *testing.T, n int, pc *placementCluster) *dataCluster {
	t.Helper()
	dc := newDataCluster(t, n, pc)
	for id := uint64(1); id <= uint64(n); id++ {
		dc.start(id)
	}
	return dc
}

// newDataCluster picks addresses for n nodes (ids 1..n) and starts none.
func newDataCluster(t *testing.T, n int, pc *placementCluster) *dataCluster {
	t.Helper()
	dc := &dataCluster{t: t, peers: map[uint64]string{}, client: pc.client(),
		nodes: map[uint64]*node.Node{}, dirs: map[uint64]string{}, conns: map[uint64]*grpc.ClientConn{},
		beats: map[uint64]context.CancelFunc{}}
	for i, a := range testutil.FreeAddrs(t, n) {
		dc.peers[uint64(i+1)] = a
	}
	ctx, cancel := context.WithCancel(context.Background())
	dc.ctx = ctx
	t.Cleanup(func() {
		cancel()
		dc.wg.Wait()
		for _, c := range dc.conns {
			c.Close()
		}
		for _, nd := range dc.nodes {
			nd.Stop()
		}
	})
	return dc
}

// dir returns node id's data dir.
func (dc *dataCluster) dir(id uint64) string {
	if dc.dirs[id] == "" {
		dc.dirs[id] = dc.t.TempDir()
	}
	return dc.dirs[id]
}

// start starts node id, which registers and heartbeats until the test ends.
func (dc *dataCluster) start(id uint64) {
	t := dc.t
	t.Helper()
	var nd *node.Node
	for attempt := 1; ; attempt++ {
		var err error
		cfg := node.Config{NodeID: id, Dir: dc.dir(id), ListenAddr: dc.peers[id], Peers: dc.peers,
			TickInterval: 50 * time.Millisecond, Logger: testLogger()}
		if dc.tweak != nil {
			dc.tweak(&cfg)
		}
		nd, err = node.Start(cfg)
		if err == nil {
			break
		}
		if !errors.Is(err, syscall.EADDRINUSE) || attempt == 3 {
			t.Fatal(err)
		}
		// The picked port was taken meanwhile: move to a fresh one and
		// tell the nodes already running.
		dc.peers[id] = testutil.FreeAddrs(t, 1)[0]
		for _, other := range dc.nodes {
			other.SetPeer(id, dc.peers[id])
		}
	}
	addr := dc.peers[id]
	dc.nodes[id] = nd
	if old := dc.conns[id]; old != nil {
		old.Close() // a restarted node's
	}
	conn, err := grpc.NewClient(addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	dc.conns[id] = conn
	ctx, cancel := context.WithCancel(dc.ctx)
	dc.beats[id] = cancel
	dc.wg.Go(func() {
		err := Heartbeat(ctx, dc.client, nd, 200*time.Millisecond, func() Load {
			st := nd.Stats()
			return Load{Replicas: uint32(st.Groups), Leaders: uint32(st.Leaders), Draining: nd.Draining(), LostPeers: nd.LostPeers()}
		})
		if err != nil {
			t.Errorf("node %d: %v", id, err)
		}
	})
}

// stop stops node id and its heartbeats, as a crash would.
func (dc *dataCluster) stop(id uint64) {
	dc.beats[id]()
	dc.nodes[id].Stop()
}

func (dc *dataCluster) admin(id uint64) kvpb.AdminClient { return kvpb.NewAdminClient(dc.conns[id]) }
func (dc *dataCluster) kv(id uint64) kvpb.KVClient       { return kvpb.NewKVClient(dc.conns[id]) }

// leaderCounts asks every node which ranges it leads.
func (dc *dataCluster) leaderCounts(t *testing.T) map[uint64]int {
	t.Helper()
	counts := map[uint64]int{}
	for id := range dc.nodes {
		resp, err := dc.admin(id).Ranges(tctx(t), &kvpb.RangesRequest{})
		if err != nil {
			t.Fatal(err)
		}
		counts[id] += 0
		for _, d := range resp.Ranges {
			if d.LeaderNodeId == id {
				counts[id]++
			}
		}
	}
	return counts
}

// leaders asks every node which ranges it leads: range id -> node.
func (dc *dataCluster) leaders(t *testing.T) map[uint64]uint64 {
	t.Helper()
	out := map[uint64]uint64{}
	for id := range dc.nodes {
		resp, err := dc.admin(id).Ranges(tctx(t), &kvpb.RangesRequest{})
		if err != nil {
			t.Fatal(err)
		}
		for _, d := range resp.Ranges {
			if d.LeaderNodeId == id {
				out[d.RangeId] = id
			}
		}
	}
	return out
}

// hostedRanges returns how many initialized ranges a node hosts.
func (dc *dataCluster) hostedRanges(t *testing.T, id uint64) int {
	resp, err := dc.admin(id).Ranges(tctx(t), &kvpb.RangesRequest{})
	if err != nil {
		t.Fatal(err)
	}
	return len(resp.Ranges)
}

// put writes through the range's leader, following NotLeader hints, with
// a bounded number of attempts.
func (dc *dataCluster) put(t *testing.T, d *kvpb.RangeDescriptor, key, value string) {
	t.Helper()
	target := d.LeaderNodeId
	if target == 0 {
		target = d.Replicas[0].NodeId
	}
	var err error
	for range 200 {
		_, err = dc.kv(target).Put(tctx(t), &kvpb.PutRequest{Header: &kvpb.RequestHeader{RangeId: d.RangeId},
			Key: []byte(key), Value: []byte(value)})
		if err == nil {
			return
		}
		st := status.Convert(err)
		if st.Code() != codes.FailedPrecondition && st.Code() != codes.Unavailable {
			break
		}
		for _, det := range st.Details() {
			if nl, ok := det.(*kvpb.NotLeader); ok && nl.LeaderNodeId != 0 {
				target = nl.LeaderNodeId
			}
		}
		time.Sleep(20 * time.Millisecond)
	}
	t.Fatalf("put %q in range %d: %v", key, d.RangeId, err)
}

func tctx(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	t.Cleanup(cancel)
	return ctx
}

// waitCreated waits until every node hosts its share of n ranges of
// 3 replicas over 3 nodes, and the service recorded it.
func waitCreated(t *testing.T, pc *placementCluster, dc *dataCluster, n int) {
	t.Helper()
	testutil.WaitFor(t, 15*time.Second, fmt.Sprintf("%d ranges created on every node", n), func() bool {
		for id := range dc.nodes {
			if dc.hostedRanges(t, id) != n {
				return false
			}
		}
		return true
	})
	testutil.WaitFor(t, 10*time.Second, "the service to record the creation", func() bool {
		for _, s := range pc.servers {
			s.mu.Lock()
			done := s.term != nil && s.term.created
			s.mu.Unlock()
			if done {
				return true
			}
		}
		return false
	})
}

// fakeNode registers as a node that runs nowhere: an id, an address and a
// store id.
type fakeNode struct {
	id          uint64
	addr, store string
	// refuse makes JoinCluster refuse every cluster.
	refuse bool

	mu      sync.Mutex
	cluster string
}

func (f *fakeNode) ID() uint64      { return f.id }
func (f *fakeNode) Addr() string    { return f.addr }
func (f *fakeNode) StoreID() string { return f.store }

func (f *fakeNode) ClusterID() string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.cluster
}

func (f *fakeNode) JoinCluster(id string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.refuse || (f.cluster != "" && f.cluster != id) {
		return fmt.Errorf("fake node %d refuses cluster %s", f.id, id)
	}
	f.cluster = id
	return nil
}
