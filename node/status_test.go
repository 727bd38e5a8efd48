package node

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/shardd/shardd/kvpb"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
)

// TestStatusShowsLaggingReplica runs what an operator's status is for: a
// follower cut off from its leader while the range takes writes (its log
// truncated past what the follower has), then reconnected, must catch up
// through a snapshot slowed by the rate limit. Meanwhile its node's status
// lists the range as behind its leader, by how much, and the range's
// replicas report their chosen and applied points; once it caught up,
// nothing lags. The status also carries the node's build, lifetime, disk
// use and links.
func TestStatusShowsLaggingReplica(t *testing.T) {
	c := newTestCluster(t, 3, splitRanges(1, 3), func(cfg *Config) {
		cfg.SnapshotBytesPerSecond = 256 << 10 // 1 MiB takes seconds
		cfg.Knobs.LogRetention = 8
	})
	admin := map[uint64]kvpb.AdminClient{}
	for id, n := range c.nodes {
		conn, err := grpc.NewClient(n.Addr(), grpc.WithTransportCredentials(insecure.NewCredentials()))
		if err != nil {
			t.Fatal(err)
		}
		c.conns = append(c.conns, conn)
		admin[id] = kvpb.NewAdminClient(conn)
	}
	nodeStatus := func(id uint64) *kvpb.NodeStatusResponse {
		t.Helper()
		st, err := admin[id].NodeStatus(ctx(t), &kvpb.NodeStatusRequest{})
		if err != nil {
			t.Fatal(err)
		}
		return st
	}
	rangeStatus := func(id uint64) *kvpb.ReplicaStatus {
		t.Helper()
		rs, err := admin[id].RangeStatus(ctx(t), &kvpb.RangeStatusRequest{RangeId: 1})
		if err != nil {
			t.Fatal(err)
		}
		return rs.Replica
	}
	lead := c.leaderFor(1)
	var f uint64
	for id := range c.nodes {
		if id != lead {
			f = id
			break
		}
	}

	// 40 writes of 32 KiB: 40 slots, so the leader truncates its log past
	// what f has and must send it a snapshot of about 1.3 MiB, which
	// takes seconds at the rate limit.
	c.nodes[lead].trans.Faults().Cut(f)
	value := make([]byte, 32<<10)
	for i := range 40 {
		if err := c.do(1, func(kv kvpb.KVClient) error {
			_, err := kv.Put(ctx(t), &kvpb.PutRequest{Key: fmt.Appendf(nil, "k%03d", i), Value: value})
			return err
		}); err != nil {
			t.Fatal(err)
		}
	}
	c.nodes[lead].trans.Faults().Heal(f)

	var st *kvpb.NodeStatusResponse
	deadline := time.Now().Add(20 * time.Second)
	for st = nodeStatus(f); st.LaggingRanges == 0; st = nodeStatus(f) {
		if time.Now().After(deadline) {
			t.Fatalf("node %d never reported range 1 behind its leader; status %v", f, st)
		}
		time.Sleep(5 * time.Millisecond)
	}
	if len(st.Lagging) != 1 || st.Lagging[0].RangeId != 1 || st.Lagging[0].Applied >= st.Lagging[0].LeaderChosen {
		t.Fatalf("node %d reports lagging %v", f, st.Lagging)
	}
	behind := rangeStatus(f)
	ahead := rangeStatus(lead)
	if ahead.LeaderNodeId != lead || ahead.Chosen != ahead.LeaderChosen || ahead.Chosen < 40 || behind.Applied >= ahead.Chosen {
		t.Errorf("range 1 while node %d catches up: leader says %v, follower %v", f, ahead, behind)
	}
	t.Logf("node %d behind: %v; leader: %v", f, behind, ahead)

	deadline = time.Now().Add(30 * time.Second)
	for st = nodeStatus(f); st.LaggingRanges != 0; st = nodeStatus(f) {
		if time.Now().After(deadline) {
			t.Fatalf("node %d never caught up: %v", f, st.Lagging)
		}
		time.Sleep(20 * time.Millisecond)
	}

	st = nodeStatus(lead)
	if st.Version == "" || st.UptimeMillis == 0 || st.Incarnation == 0 || st.DiskBytes < 1<<20 || st.LeaderlessRanges != 0 {
		t.Errorf("leader's status lacks its build, uptime, incarnation, disk use, or sees no leader: %v", st)
	}
	if len(st.Peers) != 2 {
		t.Fatalf("leader's status lists links %v, want 2", st.Peers)
	}
	for _, p := range st.Peers {
		if !p.Connected || p.Addr != c.nodes[p.NodeId].Addr() || p.LostMillis != 0 {
			t.Errorf("link to node %d: %v, want connected to %s", p.NodeId, p, c.nodes[p.NodeId].Addr())
		}
	}
	if _, err := admin[lead].RangeStatus(context.Background(), &kvpb.RangeStatusRequest{RangeId: 99}); err == nil {
		t.Error("RangeStatus of a range the node does not host answered")
	}
}
