package node

import (
	"context"
	"log/slog"
	"maps"
	"os"
	"slices"
	"testing"
	"time"

	"github.com/shardd/shardd/internal/testutil"
	"github.com/shardd/shardd/kvpb"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"
)

// testCluster is a few nodes in one process, talking over loopback gRPC.
type testCluster struct {
	t       testing.TB
	nodes   map[uint64]*Node
	dirs    map[uint64]string
	clients map[uint64]kvpb.KVClient
	conns   []*grpc.ClientConn
	ranges  []*kvpb.RangeDescriptor
	cfg     func(*Config)
}

func testLogger() *slog.Logger {
	if testing.Verbose() && os.Getenv("NODE_TEST_LOG") != "" {
		return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelError}))
}

// splitRanges returns n ranges over the key space, split at "k%04d"
// boundaries, replicated on nodes 1..replicas.
func splitRanges(n, replicas int) []*kvpb.RangeDescriptor {
	descs := testutil.Ranges(n, replicas)
	for _, d := range descs {
		d.LeaderNodeId = 0 // elections decide; tests that want a leader set one
	}
	return descs
}

func newTestCluster(t testing.TB, size int, ranges []*kvpb.RangeDescriptor, tweak func(*Config)) *testCluster {
	t.Helper()
	c := &testCluster{t: t, nodes: map[uint64]*Node{}, dirs: map[uint64]string{}, clients: map[uint64]kvpb.KVClient{},
		ranges: ranges, cfg: tweak}
	for id := uint64(1); id <= uint64(size); id++ {
		c.dirs[id] = t.TempDir()
		c.start(id, "127.0.0.1:0")
	}
	for _, n := range c.nodes {
		for id, m := range c.nodes {
			n.SetPeer(id, m.Addr())
		}
	}
	for _, d := range ranges {
		for _, rd := range d.Replicas {
			if err := c.nodes[rd.NodeId].CreateGroup(d); err != nil {
				t.Fatal(err)
			}
		}
	}
	t.Cleanup(c.stop)
	return c
}

func (c *testCluster) start(id uint64, addr string) {
	cfg := Config{NodeID: id, Dir: c.dirs[id], ListenAddr: addr, TickInterval: 20 * time.Millisecond, Logger: testLogger()}
	if c.cfg != nil {
		c.cfg(&cfg)
	}
	n, err := Start(cfg)
	if err != nil {
		c.t.Fatal(err)
	}
	c.nodes[id] = n
	conn, err := grpc.NewClient(n.Addr(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		c.t.Fatal(err)
	}
	c.conns = append(c.conns, conn)
	c.clients[id] = kvpb.NewKVClient(conn)
}

func (c *testCluster) stop() {
	for _, conn := range c.conns {
		conn.Close()
	}
	for _, n := range c.nodes {
		n.Stop()
	}
}

// leaderFor returns the node leading a range, waiting (bounded) for one.
// With among, only those nodes count: a stopped node still claims what it
// led.
func (c *testCluster) leaderFor(rangeID uint64, among ...uint64) uint64 {
	c.t.Helper()
	if len(among) == 0 {
		among = slices.Collect(maps.Keys(c.nodes))
	}
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		for _, id := range among {
			if r := c.nodes[id].replica(rangeID); r != nil && r.leader.Load() == id {
				return id
			}
		}
		time.Sleep(5 * time.Millisecond)
	}
	c.t.Fatalf("none of nodes %v leads range %d", among, rangeID)
	return 0
}

// do runs op against the range's leader, following not-leader errors, with
// a bounded number of attempts.
func (c *testCluster) do(rangeID uint64, op func(kvpb.KVClient) error) error {
	c.t.Helper()
	var err error
	for attempt := 0; attempt < 100; attempt++ {
		lead := c.leaderFor(rangeID)
		err = op(c.clients[lead])
		if st, ok := status.FromError(err); ok && (st.Code() == codes.FailedPrecondition || st.Code() == codes.Unavailable) {
			time.Sleep(10 * time.Millisecond)
			continue
		}
		return err
	}
	return err
}

func ctx(t *testing.T) context.Context {
	c, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	t.Cleanup(cancel)
	return c
}

func TestSmokePutGet(t *testing.T) {
	c := newTestCluster(t, 3, splitRanges(1, 3), nil)
	err := c.do(1, func(kv kvpb.KVClient) error {
		_, err := kv.Put(ctx(t), &kvpb.PutRequest{Key: []byte("a"), Value: []byte("1")})
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	var got *kvpb.GetResponse
	err = c.do(1, func(kv kvpb.KVClient) (err error) {
		got, err = kv.Get(ctx(t), &kvpb.GetRequest{Key: []byte("a")})
		return err
	})
	if err != nil || !got.Found || string(got.Value) != "1" {
		t.Fatalf("get: %v %v", got, err)
	}
}
