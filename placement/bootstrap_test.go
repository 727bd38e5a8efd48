package placement

import (
	"fmt"
	"slices"
	"strings"
	"testing"

	"github.com/shardd/shardd/kvpb"
)

func TestEvenSplitKeys(t *testing.T) {
	tests := []struct {
		n      int
		prefix string
		width  int
		want   []string
	}{
		{4, "k", 4, []string{"k2500", "k5000", "k7500"}},
		{2, "", 1, []string{"5"}},
		{3, "user/", 2, []string{"user/33", "user/66"}},
		{10, "k", 1, []string{"k1", "k2", "k3", "k4", "k5", "k6", "k7", "k8", "k9"}},
		{8, "k", 3, []string{"k125", "k250", "k375", "k500", "k625", "k750", "k875"}},
		{3, "k", 30, []string{"k" + strings.Repeat("3", 30), "k" + strings.Repeat("6", 30)}},
		{1, "k", 4, nil},
		{0, "k", 4, nil},
		{4, "k", 0, nil},
		{11, "k", 1, nil},
	}
	for _, tc := range tests {
		t.Run(fmt.Sprintf("%d_%q_%d", tc.n, tc.prefix, tc.width), func(t *testing.T) {
			var got []string
			for _, k := range EvenSplitKeys(tc.n, tc.prefix, tc.width) {
				got = append(got, string(k))
			}
			if !slices.Equal(got, tc.want) {
				t.Fatalf("got %q, want %q", got, tc.want)
			}
		})
	}
	// Keys are always strictly increasing and usable by InitialRanges.
	keys := EvenSplitKeys(1000, "k", 4)
	if len(keys) != 999 {
		t.Fatalf("got %d keys", len(keys))
	}
	if _, err := InitialRanges(keys, []uint64{1}, 1); err != nil {
		t.Fatal(err)
	}
}

// counts returns the replicas and leaderships per node.
func counts(descs []*kvpb.RangeDescriptor) (replicas, leaders map[uint64]int) {
	replicas, leaders = map[uint64]int{}, map[uint64]int{}
	for _, d := range descs {
		for _, r := range d.GetReplicas() {
			replicas[r.GetNodeId()]++
		}
		leaders[d.GetLeaderNodeId()]++
	}
	return replicas, leaders
}

func spread(m map[uint64]int) int {
	lo, hi := -1, 0
	for _, c := range m {
		if lo < 0 || c < lo {
			lo = c
		}
		hi = max(hi, c)
	}
	return hi - lo
}

func TestInitialRangesThreeNodes(t *testing.T) {
	descs, err := InitialRanges(EvenSplitKeys(1000, "k", 4), []uint64{3, 1, 2}, 3)
	if err != nil {
		t.Fatal(err)
	}
	if len(descs) != 1000 {
		t.Fatalf("%d ranges, want 1000", len(descs))
	}
	m, err := NewRangeMap(descs)
	if err != nil {
		t.Fatalf("InitialRanges output is not a valid map: %v", err)
	}
	checkInvariants(t, m)
	for i, d := range descs {
		if d.GetRangeId() != uint64(i+1) || d.GetGeneration() != 1 {
			t.Fatalf("range %d: id %d generation %d", i, d.GetRangeId(), d.GetGeneration())
		}
		if !sameReplicas(d.GetReplicas(), voters(1, 2, 3)) {
			t.Fatalf("range %d replicas %v", i, d.GetReplicas())
		}
	}
	_, leaders := counts(descs)
	want := map[uint64]int{1: 334, 2: 333, 3: 333}
	for n, c := range want {
		if leaders[n] != c {
			t.Fatalf("leaders %v, want %v", leaders, want)
		}
	}
}

func TestInitialRangesBalanced(t *testing.T) {
	for _, tc := range []struct{ ranges, nodes, replicas int }{
		{1000, 5, 3}, {1, 5, 3}, {2, 5, 3}, {7, 5, 3}, {13, 7, 3}, {100, 4, 1}, {10, 3, 2}, {64, 6, 5}, {999, 9, 9},
	} {
		t.Run(fmt.Sprintf("%d_ranges_%d_nodes_%d_replicas", tc.ranges, tc.nodes, tc.replicas), func(t *testing.T) {
			var nodes []uint64
			for n := range tc.nodes {
				nodes = append(nodes, uint64(10*(n+1)))
			}
			descs, err := InitialRanges(EvenSplitKeys(tc.ranges, "k", 6), nodes, tc.replicas)
			if err != nil {
				t.Fatal(err)
			}
			if _, err := NewRangeMap(descs); err != nil {
				t.Fatalf("not a valid map: %v", err)
			}
			reps, leaders := counts(descs)
			for _, d := range descs {
				if len(d.GetReplicas()) != tc.replicas {
					t.Fatalf("range %d has %d replicas", d.GetRangeId(), len(d.GetReplicas()))
				}
			}
			perNode := map[uint64]int{}
			for _, n := range nodes {
				perNode[n] = reps[n] // zero for a node with no replicas
			}
			if spread(perNode) > 1 {
				t.Fatalf("replica counts %v differ by more than 1", perNode)
			}
			// Leaders: every node that could lead is within one of its fair share.
			total := 0
			for _, c := range leaders {
				total += c
			}
			if total != tc.ranges {
				t.Fatalf("leader counts %v", leaders)
			}
			for _, n := range nodes {
				if c := leaders[n]; c > (tc.ranges+tc.nodes-1)/tc.nodes+1 {
					t.Fatalf("node %d leads %d of %d ranges: %v", n, c, tc.ranges, leaders)
				}
			}
		})
	}
}

func TestInitialRangesErrors(t *testing.T) {
	k := func(ss ...string) [][]byte {
		var out [][]byte
		for _, s := range ss {
			out = append(out, []byte(s))
		}
		return out
	}
	tests := []struct {
		name     string
		keys     [][]byte
		nodes    []uint64
		replicas int
		wantErr  string
	}{
		{"empty key", k("a", ""), []uint64{1}, 1, "empty"},
		{"unsorted", k("b", "a"), []uint64{1}, 1, "strictly increasing"},
		{"duplicate key", k("a", "a"), []uint64{1}, 1, "strictly increasing"},
		{"too many replicas", nil, []uint64{1, 2}, 3, "cannot place 3"},
		{"zero replicas", nil, []uint64{1, 2}, 0, "cannot place 0"},
		{"no nodes", nil, nil, 1, "cannot place"},
		{"duplicate node", nil, []uint64{1, 1}, 1, "listed twice"},
		{"node zero", nil, []uint64{0, 1}, 1, "reserved"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := InitialRanges(tc.keys, tc.nodes, tc.replicas)
			if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
				t.Fatalf("error = %v, want one containing %q", err, tc.wantErr)
			}
		})
	}
	// No split keys: one range covering everything.
	descs, err := InitialRanges(nil, []uint64{1}, 1)
	if err != nil || len(descs) != 1 {
		t.Fatalf("InitialRanges(nil) = %v, %v", descs, err)
	}
	if _, err := NewRangeMap(descs); err != nil {
		t.Fatal(err)
	}
}
