package placement

import (
	"bytes"
	"fmt"
	"slices"

	"google.golang.org/protobuf/proto"

	"github.com/shardd/shardd/kvpb"
)

// Change is one edit of a RangeMap: a Split, Merge, SetReplicas or
// SetLeader. The set of changes is closed; apply it with RangeMap.Apply.
type Change interface {
	// plan validates the change against m and returns the index range
	// [lo, hi) of m.descs it replaces and the descriptors that replace it.
	// It does not modify m.
	plan(m *RangeMap) (lo, hi int, repl []*kvpb.RangeDescriptor, err error)
	fmt.Stringer
}

// Apply validates c against the map and, if it is valid, applies it. The
// error names the problem; a failed Apply leaves the map unchanged. Every
// descriptor that c creates or alters gets a generation greater than that
// of every descriptor it replaces, except that SetLeader, which only moves
// the leader hint, keeps the generation.
func (m *RangeMap) Apply(c Change) error {
	if c == nil {
		return fmt.Errorf("placement: nil change")
	}
	lo, hi, repl, err := c.plan(m)
	if err != nil {
		return fmt.Errorf("placement: %v: %w", c, err)
	}
	descs := slices.Concat(m.descs[:lo], repl, m.descs[hi:])
	// Defence in depth: the change-specific checks above should make this
	// impossible to fail.
	if err := validateAll(descs); err != nil {
		return fmt.Errorf("placement: %v would break the map: %w", c, err)
	}
	m.descs = descs
	m.reindex()
	return nil
}

// lookupID returns the index of range id in m.descs.
func (m *RangeMap) lookupID(id uint64) (int, error) {
	i, ok := m.byID[id]
	if !ok {
		return 0, fmt.Errorf("no range %d", id)
	}
	return i, nil
}

// Split cuts range RangeID at Key: the left half [start, Key) keeps
// RangeID, the right half [Key, end) gets NewRangeID, which must be
// non-zero and unused. Key must lie strictly inside the range. Both halves
// keep the replicas and leader hint of the original and get its
// generation plus one.
type Split struct {
	RangeID, NewRangeID uint64
	Key                 []byte
}

// String describes the split.
func (s Split) String() string {
	return fmt.Sprintf("split range %d at %q into new range %d", s.RangeID, s.Key, s.NewRangeID)
}

func (s Split) plan(m *RangeMap) (int, int, []*kvpb.RangeDescriptor, error) {
	i, err := m.lookupID(s.RangeID)
	if err != nil {
		return 0, 0, nil, err
	}
	if s.NewRangeID == 0 {
		return 0, 0, nil, fmt.Errorf("new range id 0 is reserved")
	}
	if _, used := m.byID[s.NewRangeID]; used {
		return 0, 0, nil, fmt.Errorf("new range id %d is already in use", s.NewRangeID)
	}
	d := m.descs[i]
	if bytes.Compare(s.Key, d.GetStartKey()) <= 0 ||
		(len(d.GetEndKey()) != 0 && bytes.Compare(s.Key, d.GetEndKey()) >= 0) {
		return 0, 0, nil, fmt.Errorf("split key %q is not strictly inside [%q, %q)",
			s.Key, d.GetStartKey(), d.GetEndKey())
	}
	left := cloneDesc(d)
	left.EndKey = slices.Clone(s.Key)
	left.Generation++
	right := cloneDesc(d)
	right.RangeId = s.NewRangeID
	right.StartKey = slices.Clone(s.Key)
	right.Generation++
	return i, i + 1, []*kvpb.RangeDescriptor{left, right}, nil
}

// Merge joins range Right into range Left, which must be adjacent (Left
// ends where Right starts) and have the same replica set (nodes and
// roles). The merged range keeps Left's id and leader hint; its generation
// is one more than the larger of the two. Right's id leaves the map.
type Merge struct{ Left, Right uint64 }

// String describes the merge.
func (g Merge) String() string {
	return fmt.Sprintf("merge range %d into range %d", g.Right, g.Left)
}

func (g Merge) plan(m *RangeMap) (int, int, []*kvpb.RangeDescriptor, error) {
	i, err := m.lookupID(g.Left)
	if err != nil {
		return 0, 0, nil, err
	}
	j, err := m.lookupID(g.Right)
	if err != nil {
		return 0, 0, nil, err
	}
	if j != i+1 {
		return 0, 0, nil, fmt.Errorf("range %d does not start where range %d ends", g.Right, g.Left)
	}
	l, r := m.descs[i], m.descs[j]
	if !sameReplicas(l.GetReplicas(), r.GetReplicas()) {
		return 0, 0, nil, fmt.Errorf("ranges %d and %d have different replica sets", g.Left, g.Right)
	}
	merged := cloneDesc(l)
	merged.EndKey = slices.Clone(r.GetEndKey())
	merged.Generation = max(l.GetGeneration(), r.GetGeneration()) + 1
	return i, j + 1, []*kvpb.RangeDescriptor{merged}, nil
}

// SetReplicas replaces the replica set of range RangeID. It is a
// single-step membership change: at most one voter may be added or removed
// (promoting a learner adds a voter, demoting a voter removes one), while
// learners may come and go freely. The new set needs at least one voter
// and no node twice. If the leader hint is no longer a voter it is cleared.
// The generation is bumped, unless the new set equals the current one
// (ignoring order), in which case nothing changes.
type SetReplicas struct {
	RangeID  uint64
	Replicas []*kvpb.ReplicaDescriptor
}

// String describes the replica change.
func (s SetReplicas) String() string {
	parts := make([]string, len(s.Replicas))
	for i, r := range s.Replicas {
		parts[i] = fmt.Sprintf("%d:%v", r.GetNodeId(), r.GetRole())
	}
	return fmt.Sprintf("set replicas of range %d to %v", s.RangeID, parts)
}

func (s SetReplicas) plan(m *RangeMap) (int, int, []*kvpb.RangeDescriptor, error) {
	i, err := m.lookupID(s.RangeID)
	if err != nil {
		return 0, 0, nil, err
	}
	if err := validateReplicas(s.RangeID, s.Replicas); err != nil {
		return 0, 0, nil, err
	}
	d := m.descs[i]
	if sameReplicas(d.GetReplicas(), s.Replicas) {
		return i, i + 1, []*kvpb.RangeDescriptor{d}, nil
	}
	oldV, newV := voterSet(d.GetReplicas()), voterSet(s.Replicas)
	changed := 0
	for n := range oldV {
		if !newV[n] {
			changed++
		}
	}
	for n := range newV {
		if !oldV[n] {
			changed++
		}
	}
	if changed > 1 {
		return 0, 0, nil, fmt.Errorf("changes %d voters; a single step may add or remove at most one", changed)
	}
	nd := cloneDesc(d)
	nd.Replicas = make([]*kvpb.ReplicaDescriptor, len(s.Replicas))
	for k, r := range s.Replicas {
		nd.Replicas[k] = proto.Clone(r).(*kvpb.ReplicaDescriptor)
	}
	if !newV[nd.GetLeaderNodeId()] {
		nd.LeaderNodeId = 0
	}
	nd.Generation++
	return i, i + 1, []*kvpb.RangeDescriptor{nd}, nil
}

// SetLeader records Node, which must be a voter, as the leader hint of
// range RangeID. The leader is only a hint for routing, so the generation
// does not change.
type SetLeader struct{ RangeID, Node uint64 }

// String describes the leader change.
func (s SetLeader) String() string {
	return fmt.Sprintf("set leader of range %d to node %d", s.RangeID, s.Node)
}

func (s SetLeader) plan(m *RangeMap) (int, int, []*kvpb.RangeDescriptor, error) {
	i, err := m.lookupID(s.RangeID)
	if err != nil {
		return 0, 0, nil, err
	}
	d := m.descs[i]
	if !isVoter(d.GetReplicas(), s.Node) {
		return 0, 0, nil, fmt.Errorf("node %d is not a voter of range %d", s.Node, s.RangeID)
	}
	nd := cloneDesc(d)
	nd.LeaderNodeId = s.Node
	return i, i + 1, []*kvpb.RangeDescriptor{nd}, nil
}

// sameReplicas reports whether a and b hold the same (node, role) pairs,
// ignoring order. Both are assumed to have no node twice.
func sameReplicas(a, b []*kvpb.ReplicaDescriptor) bool {
	if len(a) != len(b) {
		return false
	}
	roles := make(map[uint64]kvpb.ReplicaRole, len(a))
	for _, r := range a {
		roles[r.GetNodeId()] = r.GetRole()
	}
	for _, r := range b {
		if role, ok := roles[r.GetNodeId()]; !ok || role != r.GetRole() {
			return false
		}
	}
	return true
}
