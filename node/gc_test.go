package node

import (
	"fmt"
	"testing"

	"github.com/shardd/shardd/kvpb"
)

// TestUncovered: a removed replica deletes only the parts of its span
// that no other replica of the node holds, whatever the others' bounds
// (a stale descriptor may overlap), bounded or not.
func TestUncovered(t *testing.T) {
	rep := func(start, end string) *replica {
		r := &replica{}
		r.desc.Store(&kvpb.RangeDescriptor{StartKey: []byte(start), EndKey: []byte(end), Replicas: []*kvpb.ReplicaDescriptor{{NodeId: 1}}})
		return r
	}
	self := rep("c", "m")
	cases := []struct {
		others     []*replica // sorted by start key, as the index is
		start, end string     // "" end: unbounded
		want       string
	}{
		{nil, "c", "m", `[c,m)`},
		{nil, "c", "", `[c,∞)`},
		{[]*replica{rep("a", "c"), rep("m", "")}, "c", "m", `[c,m)`},
		{[]*replica{rep("a", "d"), rep("f", "g"), rep("k", "")}, "c", "m", `[d,f) [g,k)`},
		{[]*replica{rep("b", "z")}, "c", "m", ``},
		{[]*replica{rep("d", "e")}, "c", "", `[c,d) [e,∞)`},
		{[]*replica{rep("d", "")}, "c", "", `[c,d)`},
		{[]*replica{rep("", "e"), rep("x", "y")}, "c", "m", `[e,m)`},
	}
	for _, tc := range cases {
		n := &Node{}
		idx := append([]*replica{self}, tc.others...)
		n.byStart.Store(&idx)
		var end []byte
		if tc.end != "" {
			end = []byte(tc.end)
		}
		got := ""
		for i, s := range n.uncovered([]byte(tc.start), end, self) {
			if i > 0 {
				got += " "
			}
			e := "∞"
			if s.end != nil {
				e = string(s.end)
			}
			got += fmt.Sprintf("[%s,%s)", s.start, e)
		}
		if got != tc.want {
			t.Errorf("[%s,%s) beside %d others: got %q, want %q", tc.start, tc.end, len(tc.others), got, tc.want)
		}
	}
}
