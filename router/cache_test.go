package router

import (
	"testing"

	"github.com/shardd/shardd/kvpb"
)

func desc(id, gen uint64, start, end string) *kvpb.RangeDescriptor {
	d := &kvpb.RangeDescriptor{RangeId: id, Generation: gen, Replicas: []*kvpb.ReplicaDescriptor{{NodeId: 1}}}
	if start != "" {
		d.StartKey = []byte(start)
	}
	if end != "" {
		d.EndKey = []byte(end)
	}
	return d
}

func TestRangeCache(t *testing.T) {
	rc := newRangeCache()
	at := func(k string) uint64 {
		d, _ := rc.lookup([]byte(k))
		if d == nil {
			return 0
		}
		return d.RangeId
	}
	rc.install(desc(1, 1, "", "m"))
	rc.install(desc(2, 1, "m", ""))
	if at("") != 1 || at("a") != 1 || at("m") != 2 || at("zzz") != 2 {
		t.Fatalf("lookups: %d %d %d %d", at(""), at("a"), at("m"), at("zzz"))
	}
	// Range 1 splits at "f" (generation 2): the new halves replace it.
	if !rc.install(desc(3, 2, "f", "m")) {
		t.Fatal("new range not installed")
	}
	if at("a") != 0 || at("g") != 3 {
		t.Fatalf("after installing range 3: a in %d, g in %d", at("a"), at("g"))
	}
	if rc.install(desc(1, 1, "", "m")) {
		// Not older than anything cached under id 1, so it goes in and
		// evicts range 3: a Source answer wins over a missing entry.
		if at("g") != 1 {
			t.Fatalf("g in %d", at("g"))
		}
		rc.install(desc(3, 2, "f", "m"))
	}
	rc.install(desc(1, 2, "", "f"))
	if at("a") != 1 || at("g") != 3 || at("x") != 2 {
		t.Fatalf("after the split: %d %d %d", at("a"), at("g"), at("x"))
	}
	// An older generation of a cached range is ignored.
	if rc.install(desc(1, 1, "", "m")) || at("g") != 3 {
		t.Fatal("older generation installed")
	}
	// Leader hints: the same generation sets the leader only if unknown.
	h := desc(3, 2, "f", "m")
	h.LeaderNodeId = 7
	if rc.install(h) {
		t.Fatal("same generation installed")
	}
	if _, l := rc.lookup([]byte("g")); l != 7 {
		t.Fatalf("leader %d", l)
	}
	h.LeaderNodeId = 8
	if rc.install(h); func() uint64 { _, l := rc.lookup([]byte("g")); return l }() != 7 {
		t.Fatal("a same-generation hint replaced a known leader")
	}
	rc.forgetLeader(3, 7)
	if _, l := rc.lookup([]byte("g")); l != 0 {
		t.Fatalf("leader %d after forgetting", l)
	}
	rc.evict(3, 1) // wrong generation: kept
	if at("g") != 3 {
		t.Fatal("evicted at the wrong generation")
	}
	rc.evict(3, 2)
	if at("g") != 0 {
		t.Fatal("not evicted")
	}
	snap := rc.snapshot()
	if len(snap) != 2 || snap[0].RangeId != 1 || snap[1].RangeId != 2 {
		t.Fatalf("snapshot %v", snap)
	}
}
