package placement

import (
	"bytes"
	"fmt"
	"math/rand/v2"
	"os"
	"strconv"
	"testing"

	"google.golang.org/protobuf/proto"

	"github.com/shardd/shardd/kvpb"
)

// newRand returns a seeded generator and arranges for the seed to be
// printed if the test fails. The seed is random unless PLACEMENT_SEED is
// set, which replays a failure:
//
//	PLACEMENT_SEED=1234 go test -run TestName ./placement/
func newRand(t *testing.T) *rand.Rand {
	t.Helper()
	seed := rand.Uint64()
	if s := os.Getenv("PLACEMENT_SEED"); s != "" {
		v, err := strconv.ParseUint(s, 10, 64)
		if err != nil {
			t.Fatalf("PLACEMENT_SEED: %v", err)
		}
		seed = v
	}
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("random seed: %d", seed)
		}
	})
	return rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15))
}

// randKey returns a short key over a tiny alphabet, so random keys often
// collide with range boundaries. It may be empty.
func randKey(r *rand.Rand) []byte {
	k := make([]byte, r.IntN(4))
	for i := range k {
		k[i] = "abc"[r.IntN(3)]
	}
	return k
}

// randSplitKeys returns up to n distinct, non-empty, sorted keys.
func randSplitKeys(r *rand.Rand, n int) [][]byte {
	seen := map[string]bool{}
	for range n {
		if k := randKey(r); len(k) > 0 {
			seen[string(k)] = true
		}
	}
	keys := make([][]byte, 0, len(seen))
	for k := range seen {
		keys = append(keys, []byte(k))
	}
	sortKeys(keys)
	return keys
}

func sortKeys(keys [][]byte) {
	for i := 1; i < len(keys); i++ {
		for j := i; j > 0 && bytes.Compare(keys[j-1], keys[j]) > 0; j-- {
			keys[j-1], keys[j] = keys[j], keys[j-1]
		}
	}
}

// randMap returns a random valid map on nodes 1..5 with 1..3 replicas.
func randMap(t *testing.T, r *rand.Rand) *RangeMap {
	t.Helper()
	descs, err := InitialRanges(randSplitKeys(r, r.IntN(30)), []uint64{1, 2, 3, 4, 5}, 1+r.IntN(3))
	if err != nil {
		t.Fatal(err)
	}
	m, err := NewRangeMap(descs)
	if err != nil {
		t.Fatal(err)
	}
	return m
}

// naiveLookup finds the range containing key by a linear scan.
func naiveLookup(descs []*kvpb.RangeDescriptor, key []byte) *kvpb.RangeDescriptor {
	for _, d := range descs {
		if bytes.Compare(d.GetStartKey(), key) <= 0 &&
			(len(d.GetEndKey()) == 0 || bytes.Compare(key, d.GetEndKey()) < 0) {
			return d
		}
	}
	return nil
}

// checkInvariants fails the test if m breaks a RangeMap invariant.
func checkInvariants(t *testing.T, m *RangeMap) {
	t.Helper()
	if err := validateAll(m.descs); err != nil {
		t.Fatalf("invariant broken: %v", err)
	}
	if len(m.byID) != len(m.descs) {
		t.Fatalf("byID has %d entries for %d ranges", len(m.byID), len(m.descs))
	}
	for i, d := range m.descs {
		if m.byID[d.GetRangeId()] != i {
			t.Fatalf("byID[%d] = %d, want %d", d.GetRangeId(), m.byID[d.GetRangeId()], i)
		}
	}
}

func voters(nodes ...uint64) []*kvpb.ReplicaDescriptor {
	var rs []*kvpb.ReplicaDescriptor
	for _, n := range nodes {
		rs = append(rs, &kvpb.ReplicaDescriptor{NodeId: n, Role: kvpb.ReplicaRole_VOTER})
	}
	return rs
}

func learner(n uint64) *kvpb.ReplicaDescriptor {
	return &kvpb.ReplicaDescriptor{NodeId: n, Role: kvpb.ReplicaRole_LEARNER}
}

func desc(id uint64, start, end string, reps ...*kvpb.ReplicaDescriptor) *kvpb.RangeDescriptor {
	d := &kvpb.RangeDescriptor{RangeId: id, Generation: 1, Replicas: reps}
	if start != "" {
		d.StartKey = []byte(start)
	}
	if end != "" {
		d.EndKey = []byte(end)
	}
	return d
}

func descString(d *kvpb.RangeDescriptor) string {
	return fmt.Sprintf("r%d[%q,%q)g%d", d.GetRangeId(), d.GetStartKey(), d.GetEndKey(), d.GetGeneration())
}

func cloneDescs(ds []*kvpb.RangeDescriptor) []*kvpb.RangeDescriptor {
	out := make([]*kvpb.RangeDescriptor, len(ds))
	for i, d := range ds {
		out[i] = proto.Clone(d).(*kvpb.RangeDescriptor)
	}
	return out
}
