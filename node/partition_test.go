package node

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/shardd/shardd/kvpb"
)

// isolate cuts every link between node id and the others, both ways, with
// the transport's fault hook.
func (c *testCluster) isolate(id uint64) {
	for other, n := range c.nodes {
		if other != id {
			n.trans.Faults().Cut(id)
			c.nodes[id].trans.Faults().Cut(other)
		}
	}
}

func (c *testCluster) healAll() {
	for _, n := range c.nodes {
		n.trans.Faults().HealAll()
	}
}

// TestPartitionedLeader cuts the leader of a range off from its followers.
// The majority elects a new leader and keeps writing; the old leader,
// alone, must not serve linearizable reads once its lease is gone; after
// healing it catches up with every write.
func TestPartitionedLeader(t *testing.T) {
	c := newTestCluster(t, 3, splitRanges(1, 3), nil)
	put(t, c, 1, "before", "1")
	old := c.leaderFor(1)
	c.isolate(old)

	// The majority side: a new leader that is not the old one.
	var lead uint64
	deadline := time.Now().Add(10 * time.Second)
	for lead == 0 || lead == old {
		if time.Now().After(deadline) {
			t.Fatal("the majority did not elect a new leader")
		}
		time.Sleep(10 * time.Millisecond)
		for id, n := range c.nodes {
			if id != old && n.replica(1).leader.Load() == id {
				lead = id
			}
		}
	}
	for i := range 20 {
		k := fmt.Sprintf("during%02d", i)
		if _, err := c.clients[lead].Put(ctx(t), &kvpb.PutRequest{Key: []byte(k), Value: []byte("2")}); err != nil {
			t.Fatalf("write on the majority side: %v", err)
		}
	}

	// The old leader may still think it leads, but it must not answer a
	// linearizable read: it can't have seen the writes above.
	rctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	resp, err := c.clients[old].Get(rctx, &kvpb.GetRequest{Key: []byte("during00")})
	if err == nil {
		t.Fatalf("the isolated old leader served a linearizable read: %+v", resp)
	}
	t.Logf("isolated old leader refused a read: %v", err)

	c.healAll()
	want := c.nodes[lead].replica(1).applied.Load()
	deadline = time.Now().Add(15 * time.Second)
	for c.nodes[old].replica(1).applied.Load() < want {
		if time.Now().After(deadline) {
			t.Fatalf("old leader at %d after healing, leader at %d", c.nodes[old].replica(1).applied.Load(), want)
		}
		time.Sleep(10 * time.Millisecond)
	}
	stale, err := c.clients[old].Get(ctx(t), &kvpb.GetRequest{Key: []byte("during19"),
		Header: &kvpb.RequestHeader{Consistency: kvpb.ReadConsistency_STALE}})
	if err != nil || string(stale.Value) != "2" {
		t.Fatalf("old leader after healing: %v %v", stale, err)
	}
}
