package service

import (
	"context"
	"errors"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/shardd/shardd/internal/testutil"
	"github.com/shardd/shardd/node"
	"github.com/shardd/shardd/placementpb"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// refusedReason returns the reason of a RegistrationRefused answer, or
// fails the test.
func refusedReason(t *testing.T, err error) string {
	t.Helper()
	st := status.Convert(err)
	for _, d := range st.Details() {
		if r, ok := d.(*placementpb.RegistrationRefused); ok && st.Code() == codes.FailedPrecondition {
			return r.Reason
		}
	}
	t.Fatalf("want FailedPrecondition with a RegistrationRefused detail, got %v", err)
	return ""
}

// TestRegistrationIdentity: the service names its cluster when its state is
// created and keeps that name across a restart; it refuses a node of
// another cluster and a known node id with another store (a wiped data
// dir), records neither, and says what to do (issue 9, defect 4).
func TestRegistrationIdentity(t *testing.T) {
	pc := startPlacement(t, 1, nil)
	s := pc.servers[pc.leader()]
	c := pc.client()
	register := func(id uint64, store, cluster string) (*placementpb.RegisterNodeResponse, error) {
		return c.RegisterNode(tctx(t), &placementpb.RegisterNodeRequest{NodeId: id, Addr: "127.0.0.1:1",
			StoreId: store, ClusterId: cluster})
	}
	resp, err := register(1, "store-1", "")
	if err != nil {
		t.Fatal(err)
	}
	cluster := resp.ClusterId
	if cluster == "" {
		t.Fatal("no cluster id in the registration's answer")
	}
	if resp, err := register(1, "store-1", cluster); err != nil || resp.ClusterId != cluster {
		t.Fatalf("the same node again: %v, %v", resp, err)
	}

	// A wiped data dir: node 1 with a new store.
	_, err = register(1, "store-1b", cluster)
	reason := refusedReason(t, err)
	for _, want := range []string{"node 1 registered with store store-1, but now comes with store store-1b",
		"wiped", "Restore the node's data directory", "new --id"} {
		if !strings.Contains(reason, want) {
			t.Errorf("refusal %q does not say %q", reason, want)
		}
	}
	// A node of another cluster.
	_, err = register(2, "store-2", "another-cluster")
	reason = refusedReason(t, err)
	if !strings.Contains(reason, "node 2 belongs to cluster another-cluster, but this placement service runs cluster "+cluster) {
		t.Errorf("refusal %q does not name both clusters", reason)
	}
	nodes, err := c.ListNodes(tctx(t))
	if err != nil {
		t.Fatal(err)
	}
	if len(nodes.Nodes) != 1 || nodes.Nodes[0].NodeId != 1 {
		t.Fatalf("nodes after the refusals: %v", nodes.Nodes)
	}
	if v, _, err := s.store.get(tctx(t), idKey(nodePrefix, 1)); err != nil || !strings.Contains(string(v), "store-1") ||
		strings.Contains(string(v), "store-1b") {
		t.Fatalf("node 1's record: %q, %v", v, err)
	}

	// The cluster id is durable placement state.
	cfg := s.cfg
	s.Stop()
	delete(pc.servers, cfg.ID)
	s2, err := Start(cfg)
	if err != nil {
		t.Fatal(err)
	}
	pc.servers[cfg.ID] = s2
	pc.leader()
	if resp, err := register(1, "store-1", cluster); err != nil || resp.ClusterId != cluster {
		t.Fatalf("after a restart: %v, %v; want cluster %s", resp, err, cluster)
	}
	if _, err := register(1, "store-1b", cluster); status.Code(err) != codes.FailedPrecondition {
		t.Fatalf("after a restart a new store of node 1 is not refused: %v", err)
	}

	// Another placement state is another cluster.
	other := startPlacement(t, 1, nil)
	other.leader()
	resp, err = other.client().RegisterNode(tctx(t), &placementpb.RegisterNodeRequest{NodeId: 1, Addr: "127.0.0.1:1", StoreId: "s"})
	if err != nil || resp.ClusterId == "" || resp.ClusterId == cluster {
		t.Fatalf("a second placement service answers %v, %v; want a cluster id other than %s", resp, err, cluster)
	}
}

// TestHeartbeatStopsOnRefusal runs real nodes: a node joins its cluster
// at its first registration; the same node pointed at another placement
// service, and a node started again with a wiped data dir, get an error
// from Heartbeat that matches ErrRefused and says why; so does a node
// that refuses the service's cluster itself.
func TestHeartbeatStopsOnRefusal(t *testing.T) {
	pcA, pcB := startPlacement(t, 1, nil), startPlacement(t, 1, nil)
	pcA.leader()
	pcB.leader()
	dir := t.TempDir()
	start := func(dir string) *node.Node {
		t.Helper()
		n, err := node.Start(node.Config{NodeID: 1, Dir: dir, ListenAddr: "127.0.0.1:0", Logger: testLogger()})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(n.Stop)
		return n
	}
	// heartbeat runs Heartbeat until it returns or the timeout.
	heartbeat := func(c *Client, r Registrant, timeout time.Duration) error {
		ctx, cancel := context.WithTimeout(context.Background(), timeout)
		defer cancel()
		return Heartbeat(ctx, c, r, 50*time.Millisecond, nil)
	}

	n := start(filepath.Join(dir, "node1"))
	cA := pcA.client()
	// Heartbeat until node 1 joined cluster A, however long that takes
	// within the bound; it stops without error when canceled.
	ctx, cancel := context.WithCancel(context.Background())
	first := make(chan error, 1)
	go func() { first <- Heartbeat(ctx, cA, n, 50*time.Millisecond, nil) }()
	testutil.WaitFor(t, 10*time.Second, "node 1 to join cluster A", func() bool { return n.ClusterID() != "" })
	cancel()
	if err := <-first; err != nil {
		t.Fatalf("first registration: %v", err)
	}

	err := heartbeat(pcB.client(), n, 10*time.Second)
	if !errors.Is(err, ErrRefused) || !strings.Contains(err.Error(), "node 1 belongs to cluster "+n.ClusterID()) {
		t.Fatalf("node of cluster A registering with B: %v", err)
	}

	n.Stop()
	wiped := start(filepath.Join(dir, "node1-wiped"))
	err = heartbeat(cA, wiped, 10*time.Second)
	if !errors.Is(err, ErrRefused) || !strings.Contains(err.Error(), "wiped") {
		t.Fatalf("node 1 with a wiped data dir: %v", err)
	}

	err = heartbeat(cA, &fakeNode{id: 5, addr: "127.0.0.1:5", store: "s5", refuse: true}, 10*time.Second)
	if !errors.Is(err, ErrRefused) || !strings.Contains(err.Error(), "refuses cluster") {
		t.Fatalf("a node that refuses the cluster: %v", err)
	}
}
