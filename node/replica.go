package node

import (
	"sync"
	"sync/atomic"

	"github.com/shardd/shardd/batch"
	"github.com/shardd/shardd/engine"
	"github.com/shardd/shardd/group"
	"github.com/shardd/shardd/kvpb"
	"github.com/shardd/shardd/kvsm"
	pb "github.com/shardd/shardd/paxospb"
)

// writeCallback receives a write's result once it is applied, or why it
// failed. It runs on a scheduler worker and must not block.
type writeCallback func(kvsm.Result, error)

// readRequest is a read waiting for the leader to confirm it may serve it.
type readRequest struct {
	// serve runs against the engine once the replica has applied up to the
	// read's index, or gets the error that prevented that. It must not
	// block.
	serve func(error)
}

// snapshotInstall hands a fully received snapshot to the group's worker,
// which ingests it only if it is ahead of the group.
type snapshotInstall struct {
	w      *engine.SnapshotWriter
	header pb.Message
	meta   groupMeta
	done   chan error
}

// replica is one group replica hosted by the node. Clients and the
// transport only touch the fields under mu; everything else belongs to the
// worker that currently processes the group (the scheduler never lets two
// at once).
type replica struct {
	id uint64
	// sched is guarded by the scheduler's mutex.
	sched uint8

	mu       sync.Mutex
	inbox    []pb.Message
	props    batch.Proposals
	callers  map[uint64]writeCallback // by Proposer.Seq, for our own commands
	reads    []*readRequest
	installs []*snapshotInstall
	ticks    int
	wake     bool
	campaign bool
	initWith *groupMeta // see Node.initialize
	tasks    []func()   // run on the worker, with rn; see Node.onWorker

	desc atomic.Pointer[kvpb.RangeDescriptor]
	// Hints for request handlers, refreshed after every cycle.
	leader atomic.Uint64
	active atomic.Bool // not quiesced: the ticker ticks it
	// applied mirrors the group's applied point after every cycle.
	applied atomic.Uint64

	// Owned by the processing worker.
	rn            *group.Replica
	kv            kvsm.Range // the range's state machine
	appliedConfig pb.Config
	syncedPromise pb.Ballot // the promise in the last hard state written
	wasLeader     bool
	nextReadCtx   uint64
	// readsAwaitingIndex are reads sent to ReadIndex, by context; then
	// readsAwaitingApply, by the index they wait for.
	readsAwaitingIndex map[uint64][]*readRequest
	readsAwaitingApply []indexedReads
	// proposed are our commands in values proposed while leading: if we
	// lose leadership their fate is unknown, so their callers are told.
	proposed map[uint64]struct{}
}

// takeCallers appends to cbs the callers waiting on cmds and forgets them;
// r.mu must be held. A command whose caller is gone has none.
func (r *replica) takeCallers(cmds []kvsm.Command, cbs []writeCallback) []writeCallback {
	for i := range cmds {
		seq := cmds[i].Proposer.Seq
		if cb := r.callers[seq]; cb != nil {
			cbs = append(cbs, cb)
			delete(r.callers, seq)
		}
	}
	return cbs
}

type indexedReads struct {
	index uint64
	reqs  []*readRequest
}

func newReplica(id uint64, rn *group.Replica, desc *kvpb.RangeDescriptor, conf pb.Config) *replica {
	r := &replica{
		id:                 id,
		rn:                 rn,
		appliedConfig:      conf,
		callers:            make(map[uint64]writeCallback),
		readsAwaitingIndex: make(map[uint64][]*readRequest),
		proposed:           make(map[uint64]struct{}),
	}
	r.desc.Store(desc)
	r.active.Store(true)
	return r
}
