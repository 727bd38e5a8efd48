package service

import (
	"bytes"
	"context"
	"encoding/binary"
	"fmt"

	"github.com/shardd/shardd/kvpb"
	"github.com/shardd/shardd/placementpb"
	"google.golang.org/protobuf/proto"
)

// placementRangeID is the id of the one range of the placement processes'
// private cluster: it covers that cluster's whole key space.
const placementRangeID = 1

// Keys of the placement state.
var (
	descPrefix = []byte("d/")
	nodePrefix = []byte("n/")
	keyRev     = []byte("m/rev")
	keyBoot    = []byte("m/boot")
	keyCreated = []byte("m/created")
	keyNextID  = []byte("m/nextid")
	// keyCluster holds the cluster id, chosen by the first leader of a new
	// placement state (see Server.takeOver).
	keyCluster = []byte("m/cluster")
	// pendingPrefix marks nodes that were down when the first ranges were
	// created: m/pending/<node id> until they have created their replicas.
	pendingPrefix = []byte("m/pending/")
	// opPrefix holds the operations under way: op/<range id> is a
	// RangeOperation, written before its first step reaches a node and
	// deleted once its outcome is recorded.
	opPrefix    = []byte("op/")
	valTrue     = []byte("1")
	scanPerPage = uint32(1000)
)

func idKey(prefix []byte, id uint64) []byte {
	return binary.BigEndian.AppendUint64(bytes.Clone(prefix), id)
}

func encUint(v uint64) []byte { return binary.BigEndian.AppendUint64(nil, v) }

func decUint(b []byte) (uint64, error) {
	if len(b) != 8 {
		return 0, fmt.Errorf("placement state: counter is %d bytes, want 8", len(b))
	}
	return binary.BigEndian.Uint64(b), nil
}

// prefixEnd returns the first key after every key with the prefix.
func prefixEnd(p []byte) []byte {
	e := bytes.Clone(p)
	e[len(e)-1]++ // the prefixes end in '/', never 0xff
	return e
}

// storedState is the placement state as loaded from the store.
type storedState struct {
	rev          uint64
	bootstrapped bool
	created      bool
	nextRangeID  uint64
	clusterID    string
	descs        []*kvpb.RangeDescriptor
	nodes        map[uint64]*placementpb.NodeRecord
	pending      map[uint64]bool
	ops          map[uint64]*placementpb.RangeOperation
}

// store reads and writes the placement state through the KV API of the
// process's own node. Reads are linearizable (served by the placement
// group's leaseholder), and fail with NotLeader on any other process.
type store struct {
	kv kvpb.KVClient
}

func header() *kvpb.RequestHeader { return &kvpb.RequestHeader{RangeId: placementRangeID} }

// scan calls fn for every key with the prefix, a page at a time.
func (s store) scan(ctx context.Context, prefix []byte, fn func(k, v []byte) error) error {
	start, end := prefix, prefixEnd(prefix)
	for {
		resp, err := s.kv.Scan(ctx, &kvpb.ScanRequest{Header: header(), StartKey: start, EndKey: end, Limit: scanPerPage})
		if err != nil {
			return err
		}
		for _, kv := range resp.Kvs {
			if err := fn(kv.Key, kv.Value); err != nil {
				return err
			}
		}
		if len(resp.ResumeKey) == 0 {
			return nil
		}
		start = resp.ResumeKey
	}
}

func (s store) get(ctx context.Context, key []byte) ([]byte, bool, error) {
	resp, err := s.kv.Get(ctx, &kvpb.GetRequest{Header: header(), Key: key})
	if err != nil {
		return nil, false, err
	}
	return resp.Value, resp.Found, nil
}

// load reads the whole placement state. The revision is read first, and
// the state can't change while this process's node leads (every mutation
// comes from the leader, after load), so the scans see that revision.
func (s store) load(ctx context.Context) (*storedState, error) {
	st := &storedState{nodes: map[uint64]*placementpb.NodeRecord{}, pending: map[uint64]bool{},
		ops: map[uint64]*placementpb.RangeOperation{}}
	v, found, err := s.get(ctx, keyRev)
	if err != nil {
		return nil, err
	}
	if found {
		if st.rev, err = decUint(v); err != nil {
			return nil, err
		}
	}
	if _, st.bootstrapped, err = s.get(ctx, keyBoot); err != nil {
		return nil, err
	}
	if _, st.created, err = s.get(ctx, keyCreated); err != nil {
		return nil, err
	}
	if v, found, err = s.get(ctx, keyNextID); err != nil {
		return nil, err
	} else if found {
		if st.nextRangeID, err = decUint(v); err != nil {
			return nil, err
		}
	}
	if v, _, err = s.get(ctx, keyCluster); err != nil {
		return nil, err
	}
	st.clusterID = string(v)
	err = s.scan(ctx, descPrefix, func(k, v []byte) error {
		d := &kvpb.RangeDescriptor{}
		if err := proto.Unmarshal(v, d); err != nil {
			return fmt.Errorf("placement state: descriptor at %q: %w", k, err)
		}
		st.descs = append(st.descs, d)
		return nil
	})
	if err != nil {
		return nil, err
	}
	err = s.scan(ctx, nodePrefix, func(k, v []byte) error {
		n := &placementpb.NodeRecord{}
		if err := proto.Unmarshal(v, n); err != nil {
			return fmt.Errorf("placement state: node at %q: %w", k, err)
		}
		st.nodes[n.NodeId] = n
		return nil
	})
	if err != nil {
		return nil, err
	}
	err = s.scan(ctx, opPrefix, func(k, v []byte) error {
		op := &placementpb.RangeOperation{}
		if err := proto.Unmarshal(v, op); err != nil {
			return fmt.Errorf("placement state: operation at %q: %w", k, err)
		}
		st.ops[op.RangeId] = op
		return nil
	})
	if err != nil {
		return nil, err
	}
	err = s.scan(ctx, pendingPrefix, func(k, _ []byte) error {
		id, err := decUint(k[len(pendingPrefix):])
		if err != nil {
			return fmt.Errorf("placement state: pending node at %q: %w", k, err)
		}
		st.pending[id] = true
		return nil
	})
	if err != nil {
		return nil, err
	}
	return st, nil
}

// mutation is the writes of one placement change.
type mutation struct {
	ops []*kvpb.BatchOp
}

func (m *mutation) put(k, v []byte) {
	m.ops = append(m.ops, &kvpb.BatchOp{Op: &kvpb.BatchOp_Put{Put: &kvpb.PutRequest{Key: k, Value: v}}})
}

func (m *mutation) del(k []byte) {
	m.ops = append(m.ops, &kvpb.BatchOp{Op: &kvpb.BatchOp_Delete{Delete: &kvpb.DeleteRequest{Key: k}}})
}

func (m *mutation) putDesc(d *kvpb.RangeDescriptor) {
	b, err := proto.Marshal(d)
	if err != nil {
		panic(err) // a descriptor always marshals
	}
	m.put(idKey(descPrefix, d.RangeId), b)
}

func (m *mutation) putOp(op *placementpb.RangeOperation) {
	b, err := proto.Marshal(op)
	if err != nil {
		panic(err) // an operation always marshals
	}
	m.put(idKey(opPrefix, op.RangeId), b)
}

func (m *mutation) delOp(rangeID uint64) { m.del(idKey(opPrefix, rangeID)) }

func (m *mutation) putNode(n *placementpb.NodeRecord) {
	b, err := proto.Marshal(n)
	if err != nil {
		panic(err) // a node record always marshals
	}
	m.put(idKey(nodePrefix, n.NodeId), b)
}

// commit writes m as one batch, provided m/rev still holds rev (or is
// absent, for rev 0), and sets m/rev to rev+1. This condition is the
// fencing token: it is checked when the batch is applied, so of two
// processes that both think they lead at rev, at most one writes.
func (s store) commit(ctx context.Context, rev uint64, m *mutation) error {
	cond := &kvpb.BatchCondition{Key: keyRev, ExpectedValue: encUint(rev)}
	if rev == 0 {
		cond = &kvpb.BatchCondition{Key: keyRev, ExpectAbsent: true}
	}
	ops := append(m.ops, &kvpb.BatchOp{Op: &kvpb.BatchOp_Put{Put: &kvpb.PutRequest{Key: keyRev, Value: encUint(rev + 1)}}})
	_, err := s.kv.Batch(ctx, &kvpb.BatchRequest{Header: header(), Ops: ops, Conditions: []*kvpb.BatchCondition{cond}})
	return err
}
