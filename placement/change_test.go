package placement

import (
	"bytes"
	"fmt"
	"math/rand/v2"
	"strings"
	"testing"

	"google.golang.org/protobuf/proto"

	"github.com/shardd/shardd/kvpb"
)

// threeRanges is [-inf,f) r1 on 1,2,3; [f,m) r2 on 1,2,3; [m,+inf) r3 on
// 1,2,4, each at generation 5 with leader 1.
func threeRanges(t *testing.T) *RangeMap {
	t.Helper()
	ds := []*kvpb.RangeDescriptor{
		desc(1, "", "f", voters(1, 2, 3)...),
		desc(2, "f", "m", voters(1, 2, 3)...),
		desc(3, "m", "", voters(1, 2, 4)...),
	}
	for _, d := range ds {
		d.Generation, d.LeaderNodeId = 5, 1
	}
	m, err := NewRangeMap(ds)
	if err != nil {
		t.Fatal(err)
	}
	return m
}

func TestApplyTable(t *testing.T) {
	tests := []struct {
		name    string
		c       Change
		wantErr string
		check   func(t *testing.T, m *RangeMap)
	}{
		{name: "split", c: Split{RangeID: 2, NewRangeID: 9, Key: []byte("h")}, check: func(t *testing.T, m *RangeMap) {
			l, _ := m.Get(2)
			r, _ := m.Get(9)
			if string(l.GetEndKey()) != "h" || string(r.GetStartKey()) != "h" || string(r.GetEndKey()) != "m" {
				t.Fatalf("halves %s %s", descString(l), descString(r))
			}
			if l.GetGeneration() != 6 || r.GetGeneration() != 6 {
				t.Fatalf("generations %d %d, want 6 6", l.GetGeneration(), r.GetGeneration())
			}
			if !sameReplicas(r.GetReplicas(), voters(1, 2, 3)) || r.GetLeaderNodeId() != 1 {
				t.Fatalf("right half replicas %v leader %d", r.GetReplicas(), r.GetLeaderNodeId())
			}
		}},
		{name: "split last range", c: Split{RangeID: 3, NewRangeID: 4, Key: []byte("zz")}},
		{name: "split at start", c: Split{RangeID: 2, NewRangeID: 9, Key: []byte("f")}, wantErr: "not strictly inside"},
		{name: "split at end", c: Split{RangeID: 2, NewRangeID: 9, Key: []byte("m")}, wantErr: "not strictly inside"},
		{name: "split outside", c: Split{RangeID: 2, NewRangeID: 9, Key: []byte("a")}, wantErr: "not strictly inside"},
		{name: "split first at empty key", c: Split{RangeID: 1, NewRangeID: 9, Key: nil}, wantErr: "not strictly inside"},
		{name: "split id in use", c: Split{RangeID: 2, NewRangeID: 3, Key: []byte("h")}, wantErr: "already in use"},
		{name: "split id zero", c: Split{RangeID: 2, NewRangeID: 0, Key: []byte("h")}, wantErr: "reserved"},
		{name: "split unknown range", c: Split{RangeID: 8, NewRangeID: 9, Key: []byte("h")}, wantErr: "no range 8"},
		{name: "merge", c: Merge{Left: 1, Right: 2}, check: func(t *testing.T, m *RangeMap) {
			d, _ := m.Get(1)
			if m.Len() != 2 || string(d.GetEndKey()) != "m" || d.GetGeneration() != 6 {
				t.Fatalf("merged %s, len %d", descString(d), m.Len())
			}
			if _, ok := m.Get(2); ok {
				t.Fatal("range 2 still in the map")
			}
		}},
		{name: "merge wrong order", c: Merge{Left: 2, Right: 1}, wantErr: "does not start where"},
		{name: "merge not adjacent", c: Merge{Left: 1, Right: 3}, wantErr: "does not start where"},
		{name: "merge different replicas", c: Merge{Left: 2, Right: 3}, wantErr: "different replica sets"},
		{name: "merge self", c: Merge{Left: 2, Right: 2}, wantErr: "does not start where"},
		{name: "add learner", c: SetReplicas{RangeID: 2, Replicas: append(voters(1, 2, 3), learner(4))}, check: func(t *testing.T, m *RangeMap) {
			if d, _ := m.Get(2); d.GetGeneration() != 6 || len(d.GetReplicas()) != 4 {
				t.Fatalf("got %v", d)
			}
		}},
		{name: "add voter", c: SetReplicas{RangeID: 2, Replicas: voters(1, 2, 3, 4)}},
		{name: "remove leader", c: SetReplicas{RangeID: 2, Replicas: voters(2, 3)}, check: func(t *testing.T, m *RangeMap) {
			if d, _ := m.Get(2); d.GetLeaderNodeId() != 0 || d.GetGeneration() != 6 {
				t.Fatalf("leader %d gen %d, want 0 6", d.GetLeaderNodeId(), d.GetGeneration())
			}
		}},
		{name: "demote and add learners", c: SetReplicas{RangeID: 2, Replicas: append(voters(1, 2), learner(3), learner(4), learner(5))}},
		{name: "replace voter", c: SetReplicas{RangeID: 2, Replicas: voters(1, 2, 4)}, wantErr: "changes 2 voters"},
		{name: "no voters", c: SetReplicas{RangeID: 2, Replicas: []*kvpb.ReplicaDescriptor{learner(1)}}, wantErr: "no voters"},
		{name: "duplicate node", c: SetReplicas{RangeID: 2, Replicas: append(voters(1, 2, 3), learner(3))}, wantErr: "two replicas"},
		{name: "unchanged replicas", c: SetReplicas{RangeID: 2, Replicas: voters(3, 2, 1)}, check: func(t *testing.T, m *RangeMap) {
			if !m.Equal(threeRanges(t)) {
				t.Fatal("a no-op SetReplicas changed the map")
			}
		}},
		{name: "set leader", c: SetLeader{RangeID: 3, Node: 4}, check: func(t *testing.T, m *RangeMap) {
			if d, _ := m.Get(3); d.GetLeaderNodeId() != 4 || d.GetGeneration() != 5 {
				t.Fatalf("leader %d gen %d, want 4 5", d.GetLeaderNodeId(), d.GetGeneration())
			}
		}},
		{name: "set leader non-voter", c: SetLeader{RangeID: 3, Node: 3}, wantErr: "not a voter"},
		{name: "nil change", c: nil, wantErr: "nil change"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			m := threeRanges(t)
			before := m.Clone()
			err := m.Apply(tc.c)
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("Apply error = %v, want one containing %q", err, tc.wantErr)
				}
				if !m.Equal(before) {
					t.Fatal("failed Apply changed the map")
				}
				return
			}
			if err != nil {
				t.Fatalf("Apply: %v", err)
			}
			checkInvariants(t, m)
			if tc.check != nil {
				tc.check(t, m)
			}
		})
	}
}

// randChange returns a random change against m, valid or not.
func randChange(r *rand.Rand, m *RangeMap, nextID *uint64) Change {
	d := m.descs[r.IntN(len(m.descs))]
	id := d.GetRangeId()
	if r.IntN(20) == 0 {
		id = 1000 + r.Uint64N(5) // probably unknown
	}
	switch r.IntN(4) {
	case 0:
		newID := *nextID
		if r.IntN(10) == 0 {
			newID = m.descs[r.IntN(len(m.descs))].GetRangeId() // in use
		} else {
			*nextID++
		}
		key := randKey(r)
		if r.IntN(2) == 0 {
			key = append(bytes.Clone(d.GetStartKey()), "abc"[r.IntN(3)])
		}
		return Split{RangeID: id, NewRangeID: newID, Key: key}
	case 1:
		i := m.byID[d.GetRangeId()]
		if i+1 < len(m.descs) && r.IntN(8) != 0 {
			return Merge{Left: id, Right: m.descs[i+1].GetRangeId()}
		}
		return Merge{Left: id, Right: m.descs[r.IntN(len(m.descs))].GetRangeId()}
	case 2:
		reps := cloneDescs([]*kvpb.RangeDescriptor{d})[0].GetReplicas()
		for range 1 + r.IntN(2) {
			n := 1 + r.Uint64N(6)
			found := false
		scan:
			for k, rep := range reps {
				if rep.GetNodeId() != n {
					continue
				}
				found = true
				switch r.IntN(3) {
				case 0:
					reps = append(reps[:k], reps[k+1:]...)
				case 1:
					rep.Role = kvpb.ReplicaRole_LEARNER
				default:
					rep.Role = kvpb.ReplicaRole_VOTER
				}
				break scan
			}
			if !found {
				reps = append(reps, &kvpb.ReplicaDescriptor{NodeId: n, Role: kvpb.ReplicaRole(r.IntN(2))})
			}
		}
		return SetReplicas{RangeID: id, Replicas: reps}
	default:
		return SetLeader{RangeID: id, Node: 1 + r.Uint64N(6)}
	}
}

// overlaps reports whether [a.start, a.end) and [b.start, b.end) share a key.
func overlaps(a, b *kvpb.RangeDescriptor) bool {
	aEndsBefore := len(a.GetEndKey()) != 0 && bytes.Compare(a.GetEndKey(), b.GetStartKey()) <= 0
	bEndsBefore := len(b.GetEndKey()) != 0 && bytes.Compare(b.GetEndKey(), a.GetStartKey()) <= 0
	return !aEndsBefore && !bEndsBefore
}

func TestApplyRandomSequences(t *testing.T) {
	r := newRand(t)
	applied := map[string]int{}
	failed := 0
	for range 30 {
		m := randMap(t, r)
		nextID := uint64(m.Len() + 1)
		for range 150 {
			c := randChange(r, m, &nextID)
			before := m.Clone()
			if err := m.Apply(c); err != nil {
				failed++
				if !m.Equal(before) {
					t.Fatalf("failed %v (%v) changed the map", c, err)
				}
				continue
			}
			applied[fmt.Sprintf("%T", c)]++
			checkInvariants(t, m)
			for _, d := range m.descs {
				old, ok := before.Get(d.GetRangeId())
				if ok && proto.Equal(old, d) {
					continue
				}
				if ok {
					// Same id, different descriptor: only a leader change may
					// keep the generation.
					o2 := cloneDescs([]*kvpb.RangeDescriptor{old})[0]
					o2.LeaderNodeId = d.GetLeaderNodeId()
					if proto.Equal(o2, d) {
						if _, isLeader := c.(SetLeader); !isLeader {
							t.Fatalf("%v changed only the leader of %s", c, descString(d))
						}
						continue
					}
				}
				for _, o := range before.descs {
					if overlaps(o, d) && d.GetGeneration() <= o.GetGeneration() {
						t.Fatalf("after %v: %s has generation not above that of %s", c, descString(d), descString(o))
					}
				}
			}
		}
	}
	t.Logf("applied %v, rejected %d", applied, failed)
	for _, kind := range []string{"placement.Split", "placement.Merge", "placement.SetReplicas", "placement.SetLeader"} {
		if applied[kind] < 30 {
			t.Errorf("only %d successful %q changes; the generator needs work", applied[kind], kind)
		}
	}
	if failed < 100 {
		t.Errorf("only %d rejected changes", failed)
	}
}

func TestCloneIsIndependent(t *testing.T) {
	m := threeRanges(t)
	c := m.Clone()
	if err := c.Apply(Split{RangeID: 1, NewRangeID: 9, Key: []byte("b")}); err != nil {
		t.Fatal(err)
	}
	if m.Len() != 3 || c.Len() != 4 || m.Equal(c) {
		t.Fatalf("clone shares state: %d %d", m.Len(), c.Len())
	}
	checkInvariants(t, m)
	checkInvariants(t, c)
}
