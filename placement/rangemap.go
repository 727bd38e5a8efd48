package placement

import (
	"bytes"
	"errors"
	"fmt"
	"slices"
	"sort"

	"google.golang.org/protobuf/proto"

	"github.com/shardd/shardd/kvpb"
)

// RangeMap is the authoritative map from key ranges to descriptors: sorted
// by start key, non-overlapping, covering the whole key space [-inf, +inf).
// The zero RangeMap is not valid; build one with NewRangeMap. A RangeMap is
// not safe for concurrent use; the caller serialises access.
type RangeMap struct {
	// descs is sorted by start key; descs[0] starts at the empty key and
	// the last one ends at the empty key.
	descs []*kvpb.RangeDescriptor
	// byID maps a range id to its index in descs.
	byID map[uint64]int
}

// NewRangeMap builds a RangeMap from descs, which may come in any order.
// It checks that the descriptors cover the whole key space with no gaps and
// no overlaps, that range ids are unique and non-zero, and that every range
// is valid on its own (see validateDesc). The map keeps clones, so the
// caller may go on using descs.
func NewRangeMap(descs []*kvpb.RangeDescriptor) (*RangeMap, error) {
	cl := make([]*kvpb.RangeDescriptor, len(descs))
	for i, d := range descs {
		if d == nil {
			return nil, fmt.Errorf("placement: descriptor %d is nil", i)
		}
		cl[i] = cloneDesc(d)
	}
	sort.SliceStable(cl, func(i, j int) bool {
		return bytes.Compare(cl[i].GetStartKey(), cl[j].GetStartKey()) < 0
	})
	if err := validateAll(cl); err != nil {
		return nil, err
	}
	m := &RangeMap{descs: cl}
	m.reindex()
	return m, nil
}

// reindex rebuilds byID from descs.
func (m *RangeMap) reindex() {
	m.byID = make(map[uint64]int, len(m.descs))
	for i, d := range m.descs {
		m.byID[d.GetRangeId()] = i
	}
}

// Len returns the number of ranges in the map.
func (m *RangeMap) Len() int { return len(m.descs) }

// Lookup returns a clone of the descriptor of the range that contains key.
// Because the map covers the whole key space, there always is one; the
// empty key belongs to the first range.
func (m *RangeMap) Lookup(key []byte) *kvpb.RangeDescriptor {
	return cloneDesc(m.descs[m.indexOf(key)])
}

// indexOf returns the index of the range that contains key: the last range
// whose start key is at most key.
func (m *RangeMap) indexOf(key []byte) int {
	// i is the first range whose start key is greater than key; descs[0]
	// starts at the empty key, so i >= 1.
	i := sort.Search(len(m.descs), func(i int) bool {
		return bytes.Compare(m.descs[i].GetStartKey(), key) > 0
	})
	return i - 1
}

// Get returns a clone of the descriptor of range id, and whether the map
// has such a range.
func (m *RangeMap) Get(id uint64) (*kvpb.RangeDescriptor, bool) {
	i, ok := m.byID[id]
	if !ok {
		return nil, false
	}
	return cloneDesc(m.descs[i]), true
}

// List returns clones of up to limit descriptors in key order, starting
// with the range that contains after (nil or empty: the first range). A
// limit of zero or less means no limit. next is the start key of the first
// range not returned, or nil when the list reaches the end of the key
// space; pass it as after to get the next page. next is never empty when
// there is more to come, since only the first range starts at the empty
// key.
func (m *RangeMap) List(after []byte, limit int) (ranges []*kvpb.RangeDescriptor, next []byte) {
	i := m.indexOf(after)
	end := len(m.descs)
	if limit > 0 && i+limit < end {
		end = i + limit
	}
	ranges = make([]*kvpb.RangeDescriptor, 0, end-i)
	for _, d := range m.descs[i:end] {
		ranges = append(ranges, cloneDesc(d))
	}
	if end < len(m.descs) {
		next = slices.Clone(m.descs[end].GetStartKey())
	}
	return ranges, next
}

// All returns clones of every descriptor in key order.
func (m *RangeMap) All() []*kvpb.RangeDescriptor {
	r, _ := m.List(nil, 0)
	return r
}

// Clone returns a deep copy of the map.
func (m *RangeMap) Clone() *RangeMap {
	c := &RangeMap{descs: make([]*kvpb.RangeDescriptor, len(m.descs))}
	for i, d := range m.descs {
		c.descs[i] = cloneDesc(d)
	}
	c.reindex()
	return c
}

// Equal reports whether m and o hold equal descriptors.
func (m *RangeMap) Equal(o *RangeMap) bool {
	if len(m.descs) != len(o.descs) {
		return false
	}
	for i := range m.descs {
		if !proto.Equal(m.descs[i], o.descs[i]) {
			return false
		}
	}
	return true
}

// cloneDesc returns a deep copy of d.
func cloneDesc(d *kvpb.RangeDescriptor) *kvpb.RangeDescriptor {
	return proto.Clone(d).(*kvpb.RangeDescriptor)
}

// validateAll checks descs, sorted by start key, against every invariant
// of a RangeMap.
func validateAll(descs []*kvpb.RangeDescriptor) error {
	if len(descs) == 0 {
		return errors.New("placement: no ranges: the map must cover the whole key space")
	}
	ids := make(map[uint64]bool, len(descs))
	for i, d := range descs {
		if err := validateDesc(d); err != nil {
			return err
		}
		if ids[d.GetRangeId()] {
			return fmt.Errorf("placement: duplicate range id %d", d.GetRangeId())
		}
		ids[d.GetRangeId()] = true
		if i == 0 {
			if len(d.GetStartKey()) != 0 {
				return fmt.Errorf("placement: gap: no range covers the keys before %q (range %d starts there)",
					d.GetStartKey(), d.GetRangeId())
			}
			continue
		}
		prev := descs[i-1]
		if len(prev.GetEndKey()) == 0 {
			return fmt.Errorf("placement: overlap: range %d runs to the end of the key space but range %d starts at %q",
				prev.GetRangeId(), d.GetRangeId(), d.GetStartKey())
		}
		switch c := bytes.Compare(prev.GetEndKey(), d.GetStartKey()); {
		case c < 0:
			return fmt.Errorf("placement: gap: no range covers [%q, %q) between ranges %d and %d",
				prev.GetEndKey(), d.GetStartKey(), prev.GetRangeId(), d.GetRangeId())
		case c > 0:
			return fmt.Errorf("placement: overlap: range %d ends at %q after range %d starts at %q",
				prev.GetRangeId(), prev.GetEndKey(), d.GetRangeId(), d.GetStartKey())
		}
	}
	if last := descs[len(descs)-1]; len(last.GetEndKey()) != 0 {
		return fmt.Errorf("placement: gap: no range covers the keys from %q on (range %d ends there)",
			last.GetEndKey(), last.GetRangeId())
	}
	return nil
}

// validateDesc checks one descriptor on its own: a non-zero id, a
// non-empty key span, valid replicas (see validateReplicas), and a leader
// hint that is zero or one of the voters.
func validateDesc(d *kvpb.RangeDescriptor) error {
	if d.GetRangeId() == 0 {
		return errors.New("placement: range id 0 is reserved")
	}
	if len(d.GetEndKey()) != 0 && bytes.Compare(d.GetStartKey(), d.GetEndKey()) >= 0 {
		return fmt.Errorf("placement: range %d is empty or inverted: [%q, %q)",
			d.GetRangeId(), d.GetStartKey(), d.GetEndKey())
	}
	if err := validateReplicas(d.GetRangeId(), d.GetReplicas()); err != nil {
		return err
	}
	if l := d.GetLeaderNodeId(); l != 0 && !isVoter(d.GetReplicas(), l) {
		return fmt.Errorf("placement: range %d: leader %d is not a voter", d.GetRangeId(), l)
	}
	return nil
}

// validateReplicas checks a replica set: non-zero node ids, known roles,
// no node twice and at least one voter.
func validateReplicas(rangeID uint64, reps []*kvpb.ReplicaDescriptor) error {
	seen := make(map[uint64]bool, len(reps))
	voters := 0
	for _, r := range reps {
		if r == nil {
			return fmt.Errorf("placement: range %d: nil replica", rangeID)
		}
		if r.GetNodeId() == 0 {
			return fmt.Errorf("placement: range %d: replica on node 0", rangeID)
		}
		if seen[r.GetNodeId()] {
			return fmt.Errorf("placement: range %d: node %d holds two replicas", rangeID, r.GetNodeId())
		}
		seen[r.GetNodeId()] = true
		switch r.GetRole() {
		case kvpb.ReplicaRole_VOTER:
			voters++
		case kvpb.ReplicaRole_LEARNER:
		default:
			return fmt.Errorf("placement: range %d: node %d has unknown role %d", rangeID, r.GetNodeId(), r.GetRole())
		}
	}
	if voters == 0 {
		return fmt.Errorf("placement: range %d has no voters", rangeID)
	}
	return nil
}

// isVoter reports whether node holds a voter in reps.
func isVoter(reps []*kvpb.ReplicaDescriptor, node uint64) bool {
	for _, r := range reps {
		if r.GetNodeId() == node && r.GetRole() == kvpb.ReplicaRole_VOTER {
			return true
		}
	}
	return false
}

// voterSet returns the set of nodes holding a voter in reps.
func voterSet(reps []*kvpb.ReplicaDescriptor) map[uint64]bool {
	s := make(map[uint64]bool, len(reps))
	for _, r := range reps {
		if r.GetRole() == kvpb.ReplicaRole_VOTER {
			s[r.GetNodeId()] = true
		}
	}
	return s
}
