package placement

import (
	"bytes"
	"fmt"
	"math/big"
	"slices"

	"github.com/shardd/shardd/kvpb"
)

// InitialRanges returns the descriptors of a new cluster's first map:
// len(splitKeys)+1 ranges cut at splitKeys, which must be non-empty and
// strictly increasing. Range i (0-based, in key order) gets id i+1 and
// generation 1. Replicas are dealt round-robin over nodes (taken in
// ascending id order) as one stream of slots, so range i gets the nodes in
// slots i*replicas .. i*replicas+replicas-1 (mod len(nodes)): every range
// has replicas voters on distinct nodes, and replica counts per node differ
// by at most one. Each range's leader is the voter that leads the fewest
// ranges so far (ties to the earliest in the range's replica order), which
// spreads leadership round-robin. nodes must be distinct and non-zero, and
// 1 <= replicas <= len(nodes).
func InitialRanges(splitKeys [][]byte, nodes []uint64, replicas int) ([]*kvpb.RangeDescriptor, error) {
	for i, k := range splitKeys {
		if len(k) == 0 {
			return nil, fmt.Errorf("placement: split key %d is empty", i)
		}
		if i > 0 && bytes.Compare(splitKeys[i-1], k) >= 0 {
			return nil, fmt.Errorf("placement: split keys not strictly increasing: %q then %q", splitKeys[i-1], k)
		}
	}
	ns := slices.Clone(nodes)
	slices.Sort(ns)
	for i, n := range ns {
		if n == 0 {
			return nil, fmt.Errorf("placement: node id 0 is reserved")
		}
		if i > 0 && ns[i-1] == n {
			return nil, fmt.Errorf("placement: node %d listed twice", n)
		}
	}
	if replicas < 1 || replicas > len(ns) {
		return nil, fmt.Errorf("placement: cannot place %d replicas per range on %d nodes", replicas, len(ns))
	}
	leads := make(map[uint64]int, len(ns))
	descs := make([]*kvpb.RangeDescriptor, len(splitKeys)+1)
	for i := range descs {
		d := &kvpb.RangeDescriptor{RangeId: uint64(i + 1), Generation: 1}
		if i > 0 {
			d.StartKey = slices.Clone(splitKeys[i-1])
		}
		if i < len(splitKeys) {
			d.EndKey = slices.Clone(splitKeys[i])
		}
		var leader uint64
		for j := range replicas {
			n := ns[(i*replicas+j)%len(ns)]
			d.Replicas = append(d.Replicas, &kvpb.ReplicaDescriptor{NodeId: n, Role: kvpb.ReplicaRole_VOTER})
			if leader == 0 || leads[n] < leads[leader] {
				leader = n
			}
		}
		leads[leader]++
		d.LeaderNodeId = leader
		descs[i] = d
	}
	return descs, nil
}

// EvenSplitKeys returns n-1 keys that cut the keys prefix+"0...0" to
// prefix+"9...9" (width decimal digits) into n even parts: key i is prefix
// followed by floor(i*10^width/n), zero-padded to width digits. For
// example, EvenSplitKeys(4, "k", 4) returns k2500, k5000 and k7500. It
// returns nil if n < 2, width < 1, or n > 10^width (too few distinct keys).
func EvenSplitKeys(n int, prefix string, width int) [][]byte {
	if n < 2 || width < 1 {
		return nil
	}
	space := new(big.Int).Exp(big.NewInt(10), big.NewInt(int64(width)), nil)
	bn := big.NewInt(int64(n))
	if space.Cmp(bn) < 0 {
		return nil
	}
	keys := make([][]byte, 0, n-1)
	v := new(big.Int)
	for i := 1; i < n; i++ {
		v.Mul(space, big.NewInt(int64(i)))
		v.Quo(v, bn)
		digits := v.String()
		key := make([]byte, 0, len(prefix)+width)
		key = append(key, prefix...)
		key = append(key, bytes.Repeat([]byte{'0'}, width-len(digits))...)
		keys = append(keys, append(key, digits...))
	}
	return keys
}
