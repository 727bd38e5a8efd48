package engine

import (
	"encoding/binary"
	"fmt"
)

// StoreIdent says whose store this is. A node writes it at its first start
// and checks it at every later one, so that a data directory is never
// served by another node, or joined to another cluster, than the one whose
// promises it holds.
type StoreIdent struct {
	// NodeID is the node the store was created for.
	NodeID uint64
	// StoreID is chosen at random when the store is created, so that a
	// wiped data directory started again under the same node id is told
	// apart from the one that was lost.
	StoreID string
	// ClusterID is the cluster the node joined; empty until it joins one.
	ClusterID string
}

// SetStoreIdent records the store's identity, replacing any earlier one.
// Commit it synced: a node must not serve before its identity is durable.
func (b *Batch) SetStoreIdent(id StoreIdent) {
	v := binary.AppendUvarint(nil, id.NodeID)
	v = appendBytes(appendBytes(v, []byte(id.StoreID)), []byte(id.ClusterID))
	b.set(storeKey(storeKindIdent), v)
}

// StoreIdent returns the store's identity, and false if none was ever
// written (a new store).
func (e *Engine) StoreIdent() (StoreIdent, bool, error) {
	if err := e.acquire(); err != nil {
		return StoreIdent{}, false, err
	}
	defer e.release()
	v, found, err := e.get(storeKey(storeKindIdent))
	if err != nil || !found {
		return StoreIdent{}, false, err
	}
	id, ok := decodeStoreIdent(v)
	if !ok {
		return StoreIdent{}, false, fmt.Errorf("%w: store identity %x", ErrCorrupt, v)
	}
	return id, true, nil
}

// decodeStoreIdent is the inverse of SetStoreIdent's encoding:
// uvarint(node id), then the store id and the cluster id, each as
// uvarint(len) and the bytes.
func decodeStoreIdent(v []byte) (StoreIdent, bool) {
	d := chunkDecoder{buf: v}
	node := d.uvarint()
	storeID, clusterID := d.bytes(), d.bytes()
	if d.err != nil || d.off != len(v) {
		return StoreIdent{}, false
	}
	return StoreIdent{NodeID: node, StoreID: string(storeID), ClusterID: string(clusterID)}, true
}
