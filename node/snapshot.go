package node

import (
	"errors"
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

// sendSnapshot streams a group's applied state to a replica that needs
// slots its leader truncated. The data and the applied point and
// membership that describe it come from one consistent engine view, so the
// snapshot's index is whatever was applied when the export began; the
// receiver reads it from the stream's header. At most a few snapshots are
// in flight per node; when all slots are busy the group asks again later.
func (n *Node) sendSnapshot(r *replica, m pb.Message) {
	select {
	case n.snapshotSlots <- struct{}{}:
	default:
		return
	}
	desc := r.desc.Load()
	start, end := desc.GetStartKey(), nilIfEmpty(desc.GetEndKey())
	m.Snapshot = nil
	n.bg.Add(1)
	go func() {
		defer n.bg.Done()
		defer func() { <-n.snapshotSlots }()
		src := transport.SnapshotSource(func(emit func([]byte) error) error {
			var buf []byte
			return n.eng.ExportSnapshot(engine.GroupID(r.id), start, end, 1<<20, func(c engine.SnapshotChunk) error {
				buf = c.AppendEncode(buf[:0])
				return emit(buf)
			})
		})
		if err := n.trans.SendSnapshot(n.ctx, m.To, m, src); err != nil {
			n.log.Debug("snapshot not delivered", "group", r.id, "to", m.To, "err", err)
		}
	}()
}

// HandleSnapshot implements transport.Handler: it stages the snapshot's
// data on disk as it arrives, then asks the group's worker to ingest it,
// which happens only if it is ahead of the group.
func (n *Node) HandleSnapshot(from uint64, header pb.Message, next func() ([]byte, error)) error {
	if n.replica(header.Group) == nil {
		if err := n.createEmpty(header.Group); err != nil {
			return err
		}
	}
	r := n.replica(header.Group)
	w := n.eng.NewSnapshotWriter(engine.GroupID(header.Group), engine.IngestOptions{})
	var hdr *engine.SnapshotHeader
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
		if c.Header != nil {
			hdr = c.Header
		}
		if err := w.Add(c); err != nil {
			w.Abort()
			return err
		}
	}
	if hdr == nil || hdr.Meta == nil {
		w.Abort()
		return errors.New("node: snapshot without a header or group meta")
	}
	meta, err := unmarshalMeta(hdr.Meta)
	if err != nil {
		w.Abort()
		return err
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

// install runs on the group's worker: it ingests a received snapshot if it
// is ahead of what the group has chosen, atomically with the applied point
// and membership it describes, and then lets the group adopt it.
func (n *Node) install(r *replica, in *snapshotInstall) {
	if !r.rn.AcceptsSnapshot(in.header.Snapshot.Meta.Index) {
		in.w.Abort()
		in.done <- errStaleSnapshot
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
	r.appliedConfig = in.meta.Config
	r.kv.Reset() // the snapshot replaced the sessions too
	r.setDesc(in.meta.Desc)
	n.index(r)
	r.rn.Step(in.header)
	in.done <- nil
}
