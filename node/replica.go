package node

import (
	"sync/atomic"

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

// replica is one group replica hosted by the node. Clients, the transport
// and the ticker only touch its mailbox and its atomics; everything else
// belongs to the worker that currently processes the group (the scheduler
// never lets two at once).
type replica struct {
	id uint64
	// sched is guarded by the scheduler's mutex.
	sched uint8
	mb    mailbox

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

type indexedReads struct {
	index uint64
	reqs  []*readRequest
}
