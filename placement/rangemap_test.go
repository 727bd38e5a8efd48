package placement

import (
	"bytes"
	"strings"
	"testing"

	"google.golang.org/protobuf/proto"

	"github.com/shardd/shardd/kvpb"
)

func TestNewRangeMapValidation(t *testing.T) {
	v := voters(1, 2, 3)
	tests := []struct {
		name    string
		descs   []*kvpb.RangeDescriptor
		wantErr string // empty: accepted
	}{
		{"single full range", []*kvpb.RangeDescriptor{desc(1, "", "", v...)}, ""},
		{"three ranges out of order", []*kvpb.RangeDescriptor{
			desc(3, "m", "", v...), desc(1, "", "f", v...), desc(2, "f", "m", v...)}, ""},
		{"learner and leader", []*kvpb.RangeDescriptor{{RangeId: 1, LeaderNodeId: 2,
			Replicas: append(voters(1, 2), learner(3))}}, ""},
		{"empty", nil, "no ranges"},
		{"nil descriptor", []*kvpb.RangeDescriptor{nil}, "nil"},
		{"gap at start", []*kvpb.RangeDescriptor{desc(1, "a", "", v...)}, "gap"},
		{"gap at end", []*kvpb.RangeDescriptor{desc(1, "", "z", v...)}, "gap"},
		{"gap in middle", []*kvpb.RangeDescriptor{desc(1, "", "f", v...), desc(2, "g", "", v...)}, "gap"},
		{"overlap", []*kvpb.RangeDescriptor{desc(1, "", "g", v...), desc(2, "f", "", v...)}, "overlap"},
		{"two unbounded", []*kvpb.RangeDescriptor{desc(1, "", "", v...), desc(2, "f", "", v...)}, "overlap"},
		{"two at start", []*kvpb.RangeDescriptor{desc(1, "", "f", v...), desc(2, "", "", v...)}, "overlap"},
		{"duplicate id", []*kvpb.RangeDescriptor{desc(1, "", "f", v...), desc(1, "f", "", v...)}, "duplicate range id 1"},
		{"id zero", []*kvpb.RangeDescriptor{desc(0, "", "", v...)}, "range id 0"},
		{"empty range", []*kvpb.RangeDescriptor{desc(1, "", "f", v...), desc(2, "f", "f", v...), desc(3, "f", "", v...)}, "range 2 is empty or inverted"},
		{"no replicas", []*kvpb.RangeDescriptor{desc(1, "", "")}, "no voters"},
		{"only learners", []*kvpb.RangeDescriptor{desc(1, "", "", learner(1), learner(2))}, "no voters"},
		{"duplicate node", []*kvpb.RangeDescriptor{desc(1, "", "", append(voters(1, 2), learner(2))...)}, "node 2 holds two replicas"},
		{"node zero", []*kvpb.RangeDescriptor{desc(1, "", "", voters(0)...)}, "node 0"},
		{"bad role", []*kvpb.RangeDescriptor{desc(1, "", "", &kvpb.ReplicaDescriptor{NodeId: 1, Role: 7})}, "unknown role"},
		{"leader not voter", []*kvpb.RangeDescriptor{{RangeId: 1, LeaderNodeId: 3,
			Replicas: append(voters(1, 2), learner(3))}}, "leader 3 is not a voter"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			m, err := NewRangeMap(tc.descs)
			if tc.wantErr == "" {
				if err != nil {
					t.Fatalf("NewRangeMap: %v", err)
				}
				checkInvariants(t, m)
				if m.Len() != len(tc.descs) {
					t.Fatalf("Len = %d, want %d", m.Len(), len(tc.descs))
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
				t.Fatalf("NewRangeMap error = %v, want one containing %q", err, tc.wantErr)
			}
		})
	}
}

func TestNewRangeMapClonesInput(t *testing.T) {
	in := []*kvpb.RangeDescriptor{desc(1, "", "m", voters(1)...), desc(2, "m", "", voters(1)...)}
	m, err := NewRangeMap(in)
	if err != nil {
		t.Fatal(err)
	}
	in[0].EndKey[0] = 'z'
	in[1].Replicas[0].NodeId = 9
	if got := m.Lookup([]byte("n")); got.GetRangeId() != 2 || got.GetReplicas()[0].GetNodeId() != 1 {
		t.Fatalf("map changed with its input: %v", got)
	}
	// Results are clones too.
	got := m.Lookup(nil)
	got.EndKey = []byte("zzz")
	got2, _ := m.Get(1)
	got2.Replicas[0].NodeId = 7
	if d, _ := m.Get(1); string(d.GetEndKey()) != "m" || d.GetReplicas()[0].GetNodeId() != 1 {
		t.Fatalf("map changed through a returned descriptor: %v", d)
	}
}

func TestGet(t *testing.T) {
	m, err := NewRangeMap([]*kvpb.RangeDescriptor{desc(7, "", "m", voters(1)...), desc(3, "m", "", voters(1)...)})
	if err != nil {
		t.Fatal(err)
	}
	if d, ok := m.Get(3); !ok || string(d.GetStartKey()) != "m" {
		t.Fatalf("Get(3) = %v, %v", d, ok)
	}
	if d, ok := m.Get(4); ok || d != nil {
		t.Fatalf("Get(4) = %v, %v; want nil, false", d, ok)
	}
}

func TestLookupMatchesLinearScan(t *testing.T) {
	r := newRand(t)
	for range 200 {
		m := randMap(t, r)
		all := m.All()
		var probes [][]byte
		probes = append(probes, nil, []byte{}, []byte{0}, []byte{0xff, 0xff})
		for _, d := range all {
			probes = append(probes, d.GetStartKey(), d.GetEndKey(),
				append(bytes.Clone(d.GetStartKey()), 0))
		}
		for range 50 {
			probes = append(probes, randKey(r))
		}
		for _, k := range probes {
			got, want := m.Lookup(k), naiveLookup(all, k)
			if !proto.Equal(got, want) {
				t.Fatalf("Lookup(%q) = %s, want %s", k, descString(got), descString(want))
			}
		}
	}
}

func TestListPaginates(t *testing.T) {
	r := newRand(t)
	for range 100 {
		m := randMap(t, r)
		all := m.All()
		if len(all) != m.Len() {
			t.Fatalf("All returned %d ranges, Len = %d", len(all), m.Len())
		}
		for _, limit := range []int{0, -1, 1, 2, 3, 7, m.Len(), m.Len() + 1} {
			// Start from the beginning, or from inside a random range.
			var after []byte
			start := 0
			if r.IntN(2) == 0 {
				start = r.IntN(len(all))
				after = append(bytes.Clone(all[start].GetStartKey()), 0)
				if e := all[start].GetEndKey(); len(e) != 0 && bytes.Compare(after, e) >= 0 {
					after = all[start].GetStartKey()
				}
			}
			var got []*kvpb.RangeDescriptor
			pages := 0
			for {
				page, next := m.List(after, limit)
				pages++
				if limit > 0 && len(page) > limit {
					t.Fatalf("page of %d ranges with limit %d", len(page), limit)
				}
				if len(page) == 0 {
					t.Fatalf("empty page")
				}
				got = append(got, page...)
				if next == nil {
					break
				}
				if len(next) == 0 {
					t.Fatalf("next is empty but not nil")
				}
				if pages > len(all)+1 {
					t.Fatalf("too many pages")
				}
				after = next
			}
			want := all[start:]
			if len(got) != len(want) {
				t.Fatalf("limit %d from %d: listed %d ranges, want %d", limit, start, len(got), len(want))
			}
			for i := range got {
				if !proto.Equal(got[i], want[i]) {
					t.Fatalf("limit %d: range %d is %s, want %s", limit, i, descString(got[i]), descString(want[i]))
				}
			}
			if limit > 0 {
				if wantPages := max(1, (len(want)+limit-1)/limit); pages != wantPages {
					t.Fatalf("limit %d: %d pages, want %d", limit, pages, wantPages)
				}
			}
		}
	}
}
