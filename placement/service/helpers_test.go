package service

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"sync"
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
	if os.Getenv("PLACEMENT_TEST_LOG") != "" {
		level = slog.LevelInfo
	}
	return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: level}))
}

// placementCluster is 1 or 3 placement processes.
type placementCluster struct {
	t       *testing.T
	servers map[uint64]*Server
	addrs   []string
}

func startPlacement(t *testing.T, n int, tweak func(*Config)) *placementCluster {
	t.Helper()
	addrs := testutil.FreeAddrs(t, n)
	peers := map[uint64]string{}
	for i, a := range addrs {
		peers[uint64(i+1)] = a
	}
	pc := &placementCluster{t: t, servers: map[uint64]*Server{}, addrs: addrs}
	for id, addr := range peers {
		cfg := Config{ID: id, ListenAddr: addr, DataDir: t.TempDir(), Peers: peers, TickInterval: 20 * time.Millisecond,
			PollInterval: 20 * time.Millisecond, BalanceInterval: 200 * time.Millisecond, HeartbeatTimeout: 3 * time.Second,
			Logger: testLogger()}
		if tweak != nil {
			tweak(&cfg)
		}
		s, err := Start(cfg)
		if err != nil {
			t.Fatal(err)
		}
		pc.servers[id] = s
	}
	t.Cleanup(func() {
		for _, s := range pc.servers {
			s.Stop()
		}
	})
	return pc
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
	t     *testing.T
	nodes map[uint64]*node.Node
	conns map[uint64]*grpc.ClientConn
}

func startNodes(t *testing.T, n int, pc *placementCluster) *dataCluster {
	t.Helper()
	addrs := testutil.FreeAddrs(t, n)
	peers := map[uint64]string{}
	for i, a := range addrs {
		peers[uint64(i+1)] = a
	}
	dc := &dataCluster{t: t, nodes: map[uint64]*node.Node{}, conns: map[uint64]*grpc.ClientConn{}}
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	client := pc.client()
	for id, addr := range peers {
		nd, err := node.Start(node.Config{NodeID: id, Dir: t.TempDir(), ListenAddr: addr, Peers: peers,
			TickInterval: 50 * time.Millisecond, Logger: testLogger()})
		if err != nil {
			t.Fatal(err)
		}
		dc.nodes[id] = nd
		conn, err := grpc.NewClient(addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
		if err != nil {
			t.Fatal(err)
		}
		dc.conns[id] = conn
		wg.Add(1)
		go func() {
			defer wg.Done()
			Heartbeat(ctx, client, id, nd.Addr(), 200*time.Millisecond, func() (uint32, uint32) {
				st := nd.Stats()
				return uint32(st.Groups), uint32(st.Leaders)
			})
		}()
	}
	t.Cleanup(func() {
		cancel()
		wg.Wait()
		for _, c := range dc.conns {
			c.Close()
		}
		for _, nd := range dc.nodes {
			nd.Stop()
		}
	})
	return dc
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
