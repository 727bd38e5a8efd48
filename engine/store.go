package engine

import (
	"encoding/binary"
	"errors"
	"fmt"

	"github.com/cockroachdb/pebble/v2"
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
	v, closer, err := e.db.Get(storeKey(storeKindIdent))
	if errors.Is(err, pebble.ErrNotFound) {
		return StoreIdent{}, false, nil
	}
	if err != nil {
		return StoreIdent{}, false, err
	}
	defer func() { _ = closer.Close() }()
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
	node, n := binary.Uvarint(v)
	if n <= 0 {
		return StoreIdent{}, false
	}
	v = v[n:]
	var fields [2]string
	for i := range fields {
		l, n := binary.Uvarint(v)
		if n <= 0 || l > uint64(len(v)-n) {
			return StoreIdent{}, false
		}
		fields[i] = string(v[n : n+int(l)])
		v = v[n+int(l):]
	}
	if len(v) != 0 {
		return StoreIdent{}, false
	}
	return StoreIdent{NodeID: node, StoreID: fields[0], ClusterID: fields[1]}, true
}
