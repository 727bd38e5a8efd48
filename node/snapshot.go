package node

import (
	"context"
	"errors"
	"fmt"
	"io"

	"github.com/shardd/shardd/engine"
	pb "github.com/shardd/shardd/paxospb"
	"github.com/shardd/shardd/transport"
)

var (
	errStaleSnapshot = errors.New("node: snapshot is not ahead of the replica")
	// errOverlappingSnapshot refuses a snapshot of keys another replica of
	// this node still holds: the right half of a split whose left half
	// here has not applied it yet. Ingesting it would let the left half's
	// pending writes of those keys overwrite the right half's newer data;
	// once the left half applies the split, the right half is born from
	// it (or a later snapshot finds the keys free).
	errOverlappingSnapshot = errors.New("node: snapshot overlaps another range of this node")
)

// snapshotChunkBytes bounds the encoding of one chunk of a snapshot: what
// the sender and the receiver hold of it at a time, besides what gRPC
// buffers.
const snapshotChunkBytes = 1 << 20

// snapshotTo names the snapshot of a group to one recipient.
type snapshotTo struct{ group, to uint64 }

// outSnapshot is a snapshot in flight: of the group's descriptor at
// generation gen; cancel ends it.
type outSnapshot struct {
	gen    uint64
	cancel context.CancelFunc
}

// sendSnapshot streams a group's applied state to a replica that needs
// slots its leader truncated, or a learner just added. The data and the
// applied point and membership that describe it come from one consistent
// engine view, so the snapshot's index is whatever was applied when the
// export began; the receiver reads it from the stream's header.
//
// At most a few snapshots are in flight per node (when all slots are busy
// the group asks again later), and one per group and recipient: the group
// asks again every election timeout while the recipient lacks it, and a
// large snapshot takes longer than that; a second one would only share
// the rate with the first and hold as much memory again. Unless the
// range's descriptor changed since the first began: then the new one
// replaces it, so that a learner removed while its snapshot is in flight
// learns it at once from the new one's header, rather than when the old
// one is done.
//
// The snapshots' bytes together go no faster than
// Config.SnapshotBytesPerSecond, except each one's first chunk, which
// leaves at once (its debt is paid by the next): its header tells the
// recipient whether it wants the rest.
func (n *Node) sendSnapshot(r *replica, m pb.Message) {
	desc := r.desc.Load()
	key, gen := snapshotTo{group: r.id, to: m.To}, desc.GetGeneration()
	n.snapshotsMu.Lock()
	if old := n.snapshotsOut[key]; old != nil {
		if old.gen >= gen {
			n.snapshotsMu.Unlock()
			return
		}
		old.cancel()
	}
	select {
	case n.snapshotSlots <- struct{}{}:
	default:
		n.snapshotsMu.Unlock()
		return
	}
	ctx, cancel := context.WithCancel(n.ctx)
	out := &outSnapshot{gen: gen, cancel: cancel}
	n.snapshotsOut[key] = out
	n.snapshotsMu.Unlock()
	start, end := desc.GetStartKey(), nilIfEmpty(desc.GetEndKey())
	m.Snapshot = nil
	n.bg.Add(1)
	go func() {
		defer n.bg.Done()
		defer func() {
			cancel()
			<-n.snapshotSlots
			n.snapshotsMu.Lock()
			if n.snapshotsOut[key] == out {
				delete(n.snapshotsOut, key)
			}
			n.snapshotsMu.Unlock()
		}()
		src := transport.SnapshotSource(func(emit func([]byte) error) error {
			var buf []byte
			return n.eng.ExportSnapshot(engine.GroupID(r.id), start, end, snapshotChunkBytes, func(c engine.SnapshotChunk) error {
				buf = c.AppendEncode(buf[:0])
				if c.Seq == 0 {
					n.snapshotRate.reserve(len(buf))
				} else if err := n.snapshotRate.wait(ctx, len(buf)); err != nil {
					return err
				}
				return emit(buf)
			})
		})
		if err := n.trans.SendSnapshot(ctx, m.To, m, src); err != nil {
			n.log.Debug("snapshot not delivered", "group", r.id, "to", m.To, "err", err)
		}
	}()
}

// HandleSnapshot implements transport.Handler: it stages the snapshot's
// data on disk as it arrives, one chunk at a time (the SnapshotWriter
// streams it into sstables), then asks the group's worker to ingest it,
// which happens only if it is ahead of the group. The first chunk's
// header says whom the snapshot is for: a group that left this node is
// created again only by a snapshot of a later generation (see gc.go).
func (n *Node) HandleSnapshot(from uint64, header pb.Message, next func() ([]byte, error)) error {
	w := n.eng.NewSnapshotWriter(engine.GroupID(header.Group), engine.IngestOptions{})
	var (
		meta groupMeta
		r    *replica
		hdr  *engine.SnapshotHeader
	)
	for {
		data, err := next()
		if err == io.EOF {
			break
		}
		if err != nil {
			w.Abort()
			return err
		}
		c, err := engine.DecodeSnapshotChunk(data)
		if err != nil {
			w.Abort()
			return err
		}
		if c.Header != nil && hdr == nil {
			hdr = c.Header
			if meta, r, err = n.snapshotTarget(header.Group, hdr); err != nil {
				w.Abort()
				return err
			}
			if n.leftGroup(meta.Config) {
				// The group moved on without this node: the header is
				// all the worker needs to drop the replica (install).
				w.Abort()
				break
			}
		}
		if err := w.Add(c); err != nil {
			w.Abort()
			return err
		}
	}
	if r == nil {
		w.Abort()
		return errors.New("node: snapshot without a header")
	}
	header.Snapshot = &pb.Snapshot{Meta: pb.Meta{Index: hdr.Applied, Config: meta.Config}}
	in := &snapshotInstall{w: w, header: header, meta: meta, done: make(chan error, 1)}
	n.post(r, func(in2 *inputs) { in2.installs = append(in2.installs, in) })
	select {
	case err := <-in.done:
		return err
	case <-n.stopped:
		return errStopped
	}
}

// snapshotTarget decodes the group meta of a snapshot's header and returns
// it with the replica the snapshot is for, created empty if the node has
// none and the group did not leave the node at the snapshot's generation
// or later.
func (n *Node) snapshotTarget(id uint64, hdr *engine.SnapshotHeader) (groupMeta, *replica, error) {
	if hdr.Meta == nil {
		return groupMeta{}, nil, errors.New("node: snapshot without group meta")
	}
	meta, err := unmarshalMeta(hdr.Meta)
	if err != nil {
		return groupMeta{}, nil, err
	}
	gen := meta.Desc.GetGeneration()
	if n.replica(id) == nil {
		if n.leftGroup(meta.Config) {
			return groupMeta{}, nil, fmt.Errorf("%w: node %d is no member of range %d at generation %d", errReplicaRemoved, n.cfg.NodeID, id, gen)
		}
		if err := n.createEmpty(max(gen, 1), id); err != nil {
			return groupMeta{}, nil, err
		}
	}
	r := n.replica(id)
	if r == nil {
		left, _ := n.removedHere(id)
		return groupMeta{}, nil, fmt.Errorf("%w: range %d left node %d at generation %d; the snapshot is of generation %d",
			errReplicaRemoved, id, n.cfg.NodeID, left, gen)
	}
	return meta, r, nil
}

// install runs on the group's worker: it ingests a received snapshot if it
// is ahead of what the group has chosen, atomically with the applied point
// and membership it describes, and then lets the group adopt it.
func (n *Node) install(r *replica, in *snapshotInstall, b *engine.Batch) {
	if !r.rn.AcceptsSnapshot(in.header.Snapshot.Meta.Index) {
		in.w.Abort()
		in.done <- errStaleSnapshot
		return
	}
	if n.leftGroup(in.meta.Config) {
		// The group moved on without this node since it asked: the
		// replica goes, in the cycle's batch b.
		in.w.Abort()
		n.removeReplica(r, b, in.meta.Desc.GetGeneration())
		in.done <- errReplicaRemoved
		return
	}
	if n.overlaps(in.meta.Desc, r) {
		in.w.Abort()
		in.done <- errOverlappingSnapshot
		return
	}
	if k := n.cfg.Knobs.BeforeIngest; k != nil {
		k(r.id)
	}
	if err := in.w.Finish(); err != nil {
		if errors.Is(err, engine.ErrFailed) {
			n.fatal(err)
		}
		in.done <- err
		return
	}
	if k := n.cfg.Knobs.AfterIngest; k != nil {
		k(r.id)
	}
	fresh := len(r.desc.Load().GetReplicas()) == 0
	r.appliedConfig = in.meta.Config
	r.kv.Reset() // the snapshot replaced the sessions too
	r.setDesc(in.meta.Desc)
	n.index(r)
	r.rn.Step(in.header)
	in.done <- nil
	if fresh {
		// A replica added to this node (a move, a repair) now holds its
		// range; snapshots that catch up a lagging replica are not news.
		n.log.Info("range received in a snapshot", "range", r.id, "generation", in.meta.Desc.GetGeneration(), "from", in.header.From)
	}
}
