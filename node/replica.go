package node

import (
	"sync/atomic"

	"github.com/shardd/shardd/engine"
	"github.com/shardd/shardd/group"
	"github.com/shardd/shardd/kvpb"
	"github.com/shardd/shardd/kvsm"
	pb "github.com/shardd/shardd/paxospb"
	"go.opentelemetry.io/otel/trace"
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
	// req is the read's handler span and wait the span of its wait for
	// the leader's confirmation, nil if it is not traced.
	req, wait trace.Span
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
	// lease is set while the group leads with a valid lease, as of its
	// last cycle (for shardd_leases).
	lease atomic.Bool
	// applied mirrors the group's applied point after every cycle; chosen
	// and leaderChosen its chosen point and the highest one its leader
	// reported (group.Replica.LeaderChosen), for the node's status.
	applied      atomic.Uint64
	chosen       atomic.Uint64
	leaderChosen atomic.Uint64
	// load counts the requests routed to the range (see load.go).
	load loadTracker

	// Owned by the processing worker.
	rn            *group.Replica
	kv            kvsm.Range // the range's state machine
	appliedConfig pb.Config
	syncedPromise pb.Ballot // the promise in the last hard state written
	wasLeader     bool
	holdingWrites bool // writes wait in the mailbox for a transfer; see feed
	nextReadCtx   uint64
	// readsAwaitingIndex are reads sent to ReadIndex, by context; then
	// readsAwaitingApply, by the index they wait for.
	readsAwaitingIndex map[uint64][]*readRequest
	readsAwaitingApply []indexedReads
	// proposed are our commands in values proposed while leading: if we
	// lose leadership their fate is unknown, so their callers are told.
	proposed map[uint64]struct{}
	// deferred are prepares that reached the replica before it knew its
	// range; see deferPrepares.
	deferred []pb.Message
	// removed is set once the replica left its range on this node, at
	// descriptor generation removedAt (see gc.go): it serves nothing more.
	removed   bool
	removedAt uint64
	// confWaiters wait for membership changes proposed here to apply.
	confWaiters []confWaiter
	// traces is the group's tracing state, nil while nothing traced is
	// in flight (see trace.go).
	traces *replicaTraces
}

// maxDeferredPrepares bounds the prepares an uninitialized replica keeps.
const maxDeferredPrepares = 4

// deferPrepares returns the messages the replica steps now. A replica
// that does not know its range yet would refuse a prepare (it knows no
// configuration), and the candidate would ask again only after an
// election timeout. That is the common case for the right half of a
// split: its leader campaigns as soon as it applies the split, before its
// peers do, and their first message creates the replica empty. So until
// the replica is initialized its prepares wait (the latest few), and are
// stepped first once it is.
func (r *replica) deferPrepares(msgs []pb.Message) []pb.Message {
	if len(r.desc.Load().GetReplicas()) > 0 {
		if len(r.deferred) > 0 {
			msgs = append(r.deferred, msgs...)
			r.deferred = nil
		}
		return msgs
	}
	keep := msgs[:0:0]
	for _, m := range msgs {
		if m.Type != pb.MsgPrepare {
			keep = append(keep, m)
			continue
		}
		if len(r.deferred) == maxDeferredPrepares {
			r.deferred = r.deferred[1:]
		}
		r.deferred = append(r.deferred, m)
	}
	return keep
}

type indexedReads struct {
	index uint64
	reqs  []*readRequest
}

// setDesc makes d the replica's descriptor, and its bounds those of its
// state machine. Only the replica's worker (or its constructor) calls it.
func (r *replica) setDesc(d *kvpb.RangeDescriptor) {
	r.desc.Store(d)
	if len(d.GetReplicas()) > 0 {
		r.kv.SetBounds(d.StartKey, d.EndKey)
	}
}
