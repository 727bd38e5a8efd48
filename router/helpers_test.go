package router

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"testing"
	"time"

	"github.com/shardd/shardd/internal/testutil"
	"github.com/shardd/shardd/kvpb"
	"github.com/shardd/shardd/node"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
)

// cluster is a few shardd nodes in this process, on loopback.
type cluster struct {
	t      testing.TB
	nodes  map[uint64]*node.Node
	dirs   map[uint64]string
	ranges []*kvpb.RangeDescriptor
}

func testLogger() *slog.Logger {
	level := slog.LevelError + 4 // quiet: stopping nodes on purpose logs errors
	if os.Getenv("ROUTER_TEST_LOG") != "" {
		level = slog.LevelDebug
	}
	return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: level}))
}

// splitRanges returns n ranges over the key space split at "k%04d"
// boundaries, at generation gen, replicated on nodes 1..replicas, with
// their first leaders spread over the nodes.
func splitRanges(n, replicas int, gen uint64) []*kvpb.RangeDescriptor {
	descs := testutil.Ranges(n, replicas)
	for _, d := range descs {
		d.Generation = gen
	}
	return descs
}

func newCluster(t testing.TB, size int, ranges []*kvpb.RangeDescriptor) *cluster {
	t.Helper()
	c := &cluster{t: t, nodes: map[uint64]*node.Node{}, dirs: map[uint64]string{}, ranges: ranges}
	// Cleanups run last registered first: the nodes must stop before
	// their directories are removed, or a compaction running meanwhile
	// finds its files gone and the engine stops the process as corrupt.
	for id := uint64(1); id <= uint64(size); id++ {
		c.dirs[id] = t.TempDir()
	}
	t.Cleanup(c.stop)
	for id := uint64(1); id <= uint64(size); id++ {
		n, err := node.Start(node.Config{NodeID: id, Dir: c.dirs[id], ListenAddr: "127.0.0.1:0",
			TickInterval: 20 * time.Millisecond, Logger: testLogger()})
		if err != nil {
			t.Fatal(err)
		}
		c.nodes[id] = n
	}
	for _, n := range c.nodes {
		for id, m := range c.nodes {
			n.SetPeer(id, m.Addr())
		}
	}
	for id, n := range c.nodes {
		var mine []*kvpb.RangeDescriptor
		for _, d := range ranges {
			for _, r := range d.Replicas {
				if r.NodeId == id {
					mine = append(mine, d)
				}
			}
		}
		if err := n.CreateGroups(mine); err != nil {
			t.Fatal(err)
		}
	}
	return c
}

func (c *cluster) stop() {
	for _, n := range c.nodes {
		n.Stop()
	}
}

func (c *cluster) seeds() []string {
	var s []string
	for id := uint64(1); id <= uint64(len(c.nodes)); id++ {
		s = append(s, c.nodes[id].Addr())
	}
	return s
}

// leaderOf returns the node that says it leads range id, waiting for one.
func (c *cluster) leaderOf(id uint64) uint64 {
	c.t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		for nid, n := range c.nodes {
			select {
			case <-n.Done():
				continue
			default:
			}
			if c.claims(n.Addr(), nid, id) {
				return nid
			}
		}
		time.Sleep(10 * time.Millisecond)
	}
	c.t.Fatalf("no leader for range %d", id)
	return 0
}

func (c *cluster) claims(addr string, nid, rangeID uint64) bool {
	cc, err := grpc.NewClient(addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		c.t.Fatal(err)
	}
	defer cc.Close()
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	resp, err := kvpb.NewAdminClient(cc).Ranges(ctx, &kvpb.RangesRequest{})
	if err != nil {
		return false
	}
	for _, d := range resp.Ranges {
		if d.RangeId == rangeID && d.LeaderNodeId == nid {
			return true
		}
	}
	return false
}

// client returns a Client of the cluster, closed at the end of the test.
func (c *cluster) client(cfg Config) *Client {
	c.t.Helper()
	if cfg.Source == nil && cfg.Seeds == nil {
		cfg.Seeds = c.seeds()
	}
	cl, err := New(testCtx(c.t), cfg)
	if err != nil {
		c.t.Fatal(err)
	}
	c.t.Cleanup(func() { cl.Close() })
	return cl
}

func testCtx(t testing.TB) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	t.Cleanup(cancel)
	return ctx
}

// key returns the i-th key of the "k%04d" space, with a suffix.
func key(i int, suffix string) []byte { return fmt.Appendf(nil, "k%04d%s", i, suffix) }
