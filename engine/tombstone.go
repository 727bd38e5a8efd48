package engine

import (
	"encoding/binary"
	"errors"
	"fmt"
)

// A replica tombstone records that this node stopped hosting a group
// (CockroachDB's RangeTombstone): the generation of the range descriptor
// that no longer lists the node. The node deletes the group's records
// with DeleteGroup in the batch that writes the tombstone; the tombstone
// is a store record, outside the group's span, so that DeleteGroup never
// removes it. A message for the group that arrives later must not create
// the replica again as an empty one; a snapshot of a later generation
// (the node was added back) may.

// SetReplicaTombstone records that group g left this node at descriptor
// generation gen, replacing any earlier tombstone of g.
func (b *Batch) SetReplicaTombstone(g GroupID, gen uint64) {
	b.set(tombstoneKey(g), binary.AppendUvarint(nil, gen))
}

// ReplicaTombstones returns the generation in every replica tombstone of
// the store, by group.
func (e *Engine) ReplicaTombstones() (out map[GroupID]uint64, err error) {
	if err := e.acquire(); err != nil {
		return nil, err
	}
	defer e.release()
	out = make(map[GroupID]uint64)
	lo := storeKey(storeKindTombstone)
	var derr error
	err = scanRaw(e.db, lo, keyUpperBound(lo), func(k, v []byte) bool {
		g, ok := decodeTombstoneKey(k)
		gen, n := binary.Uvarint(v)
		if !ok || n <= 0 || n != len(v) {
			derr = fmt.Errorf("%w: replica tombstone %x = %x", ErrCorrupt, k, v)
			return false
		}
		out[g] = gen
		return true
	})
	return out, errors.Join(err, derr)
}
