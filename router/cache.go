package router

import (
	"bytes"
	"slices"
	"sort"
	"sync"

	"github.com/shardd/shardd/kvpb"
	"google.golang.org/protobuf/proto"
)

// rangeCache is the client's copy of the range map: non-overlapping
// descriptors sorted by start key, each with the leader the client last
// heard of. It holds no authority: a node refuses a request routed with a
// stale descriptor and names the fresh one, which replaces the cached one.
type rangeCache struct {
	mu      sync.RWMutex
	sorted  []*cacheEntry // by start key, non-overlapping
	byID    map[uint64]*cacheEntry
	leaders map[uint64]uint64 // range id -> leader node id; survives descriptor updates
}

// cacheEntry is one cached range. desc is never modified once cached.
type cacheEntry struct {
	desc *kvpb.RangeDescriptor
}

func newRangeCache() *rangeCache {
	return &rangeCache{byID: make(map[uint64]*cacheEntry), leaders: make(map[uint64]uint64)}
}

// contains reports whether d holds key.
func contains(d *kvpb.RangeDescriptor, key []byte) bool {
	return bytes.Compare(key, d.StartKey) >= 0 && (len(d.EndKey) == 0 || bytes.Compare(key, d.EndKey) < 0)
}

// overlaps reports whether a and b share a key.
func overlaps(a, b *kvpb.RangeDescriptor) bool {
	return (len(a.EndKey) == 0 || bytes.Compare(b.StartKey, a.EndKey) < 0) &&
		(len(b.EndKey) == 0 || bytes.Compare(a.StartKey, b.EndKey) < 0)
}

// lookup returns the cached range holding key and its leader (0 if
// unknown), or nil.
func (rc *rangeCache) lookup(key []byte) (*kvpb.RangeDescriptor, uint64) {
	rc.mu.RLock()
	defer rc.mu.RUnlock()
	i := sort.Search(len(rc.sorted), func(i int) bool { return bytes.Compare(rc.sorted[i].desc.StartKey, key) > 0 })
	if i == 0 {
		return nil, 0
	}
	d := rc.sorted[i-1].desc
	if !contains(d, key) {
		return nil, 0
	}
	return d, rc.leaders[d.RangeId]
}

// install caches d unless the cache holds the same range at the same or a
// newer generation; a newer d evicts every cached range it overlaps. It
// reports whether d was installed. d's leader hint (if not zero) is
// recorded when d is installed, and when d is the cached generation but
// no leader is known: a leader learned from a node's own answer is better
// than a descriptor's hint of the same age.
func (rc *rangeCache) install(d *kvpb.RangeDescriptor) bool {
	if d == nil || d.RangeId == 0 || len(d.Replicas) == 0 {
		return false
	}
	rc.mu.Lock()
	defer rc.mu.Unlock()
	if old := rc.byID[d.RangeId]; old != nil && old.desc.Generation >= d.Generation {
		if old.desc.Generation == d.Generation && d.LeaderNodeId != 0 && rc.leaders[d.RangeId] == 0 {
			rc.leaders[d.RangeId] = d.LeaderNodeId
		}
		return false
	}
	d = proto.Clone(d).(*kvpb.RangeDescriptor)
	if d.LeaderNodeId != 0 {
		rc.leaders[d.RangeId] = d.LeaderNodeId
	}
	d.LeaderNodeId = 0 // the leaders map is the one place for the leader
	kept := rc.sorted[:0]
	for _, e := range rc.sorted {
		if e.desc.RangeId == d.RangeId || overlaps(e.desc, d) {
			delete(rc.byID, e.desc.RangeId)
			if e.desc.RangeId != d.RangeId {
				delete(rc.leaders, e.desc.RangeId)
			}
			continue
		}
		kept = append(kept, e)
	}
	clear(rc.sorted[len(kept):])
	rc.sorted = kept
	e := &cacheEntry{desc: d}
	i := sort.Search(len(rc.sorted), func(i int) bool { return bytes.Compare(rc.sorted[i].desc.StartKey, d.StartKey) > 0 })
	rc.sorted = slices.Insert(rc.sorted, i, e)
	rc.byID[d.RangeId] = e
	return true
}

// evict drops range id if it is still cached at generation gen, so the
// next request for its keys asks the Source.
func (rc *rangeCache) evict(id, gen uint64) {
	rc.mu.Lock()
	defer rc.mu.Unlock()
	e := rc.byID[id]
	if e == nil || e.desc.Generation != gen {
		return
	}
	delete(rc.byID, id)
	if i := slices.Index(rc.sorted, e); i >= 0 {
		rc.sorted = slices.Delete(rc.sorted, i, i+1)
	}
}

// setLeader records node as range id's leader; 0 forgets it.
func (rc *rangeCache) setLeader(id, node uint64) {
	rc.mu.Lock()
	defer rc.mu.Unlock()
	if node == 0 {
		delete(rc.leaders, id)
	} else {
		rc.leaders[id] = node
	}
}

// forgetLeader forgets range id's leader if it is node.
func (rc *rangeCache) forgetLeader(id, node uint64) {
	rc.mu.Lock()
	defer rc.mu.Unlock()
	if rc.leaders[id] == node {
		delete(rc.leaders, id)
	}
}

// snapshot returns copies of the cached descriptors in key order, each
// with its cached leader as leader_node_id.
func (rc *rangeCache) snapshot() []*kvpb.RangeDescriptor {
	rc.mu.RLock()
	defer rc.mu.RUnlock()
	out := make([]*kvpb.RangeDescriptor, len(rc.sorted))
	for i, e := range rc.sorted {
		d := proto.Clone(e.desc).(*kvpb.RangeDescriptor)
		d.LeaderNodeId = rc.leaders[d.RangeId]
		out[i] = d
	}
	return out
}
