package node

import (
	"sync"

	"github.com/shardd/shardd/batch"
	"github.com/shardd/shardd/kvsm"
	pb "github.com/shardd/shardd/paxospb"
)

// mailbox is where a group's inputs wait for its worker: messages from the
// transport, writes and reads from clients, ticks, wake-ups, snapshots to
// install, admin tasks. Producers post under the mailbox's lock and
// schedule the replica; the worker takes a whole cycle's worth at once
// (feed). This is the shape of CockroachDB's raft scheduler, whose
// processor drains a replica's request queue, ticks and ready state per
// cycle: the only state shared between a group's producers and its
// worker, so the rest of a replica needs no lock.
type mailbox struct {
	mu sync.Mutex
	in inputs
	// props are the writes waiting for the group's next Paxos value, and
	// callers everyone waiting on a command this node proposed, by
	// Proposer.Seq: they outlive a cycle, until the command is applied or
	// its fate is reported.
	props   batch.Proposals
	callers map[uint64]writeCallback
	// traced are the traced commands among props, by Proposer.Seq; nil
	// until the first.
	traced map[uint64]tracedCommand
}

// inputs is one cycle's worth of a group's inputs.
type inputs struct {
	msgs     []pb.Message
	reads    []*readRequest
	installs []*snapshotInstall
	tasks    []func() // run on the worker, with the group; see Node.onWorker
	initWith *groupMeta
	// splitFrom, with initWith, initializes the replica as the right half
	// of a split (see Node.applySplit).
	splitFrom *splitOrigin
	ticks     int
	wake      bool // Unquiesce: see Node.wakeFor
	campaign  bool
}

func newMailbox() mailbox {
	return mailbox{callers: make(map[uint64]writeCallback)}
}

// post adds inputs with add, under the lock.
func (mb *mailbox) post(add func(in *inputs)) {
	mb.mu.Lock()
	add(&mb.in)
	mb.mu.Unlock()
}

// tick counts a tick and reports whether the group is due for processing
// for its ticks alone. The ticks a slow group accumulates are capped, as
// CockroachDB does, so that a stall is not followed by a burst of
// elections. A busy group is processed often anyway and takes its ticks
// along; one that has not been for two ticks is due, which halves the
// cycles spent on ticking idle ones.
func (mb *mailbox) tick() (due bool) {
	mb.mu.Lock()
	defer mb.mu.Unlock()
	mb.in.ticks = min(mb.in.ticks+1, 3)
	return mb.in.ticks >= 2
}

// propose queues a write for the group's next value; cb waits on it. tc
// is the write's trace, zero if it is not traced.
func (mb *mailbox) propose(c kvsm.Command, cb writeCallback, tc tracedCommand) {
	mb.mu.Lock()
	mb.props.Add(c)
	mb.callers[c.Proposer.Seq] = cb
	if tc.req != nil {
		if mb.traced == nil {
			mb.traced = make(map[uint64]tracedCommand)
		}
		mb.traced[c.Proposer.Seq] = tc
	}
	mb.mu.Unlock()
}

// take hands the worker everything posted since its last cycle but the
// queued writes, which wait for takeWrites.
func (mb *mailbox) take() inputs {
	mb.mu.Lock()
	defer mb.mu.Unlock()
	in := mb.in
	mb.in = inputs{}
	return in
}

// takeWrites hands the worker the queued writes, once the group has taken
// the cycle's inputs, so that it decides on what it has become: none, if
// they are held (holdUpTo > 0: a leader transfer is about to complete,
// see group.Replica.Transferring) and come to at most holdUpTo bytes; one
// value of at most maxValueBytes stamped with now, if the group leads; or
// else all of them with their callers, to be refused. held reports that
// writes wait in the mailbox for a later cycle. traced are the traces of
// the commands taken, if any is traced.
func (mb *mailbox) takeWrites(leading bool, holdUpTo, maxValueBytes int, now int64) (cmds []kvsm.Command, value []byte, refused []writeCallback, held bool, traced []tracedCommand) {
	mb.mu.Lock()
	defer mb.mu.Unlock()
	switch {
	case mb.props.Len() == 0:
	case mb.props.Bytes() <= holdUpTo:
		held = true
	case leading:
		cmds, value = mb.props.Take(maxValueBytes, now)
		traced = mb.takeTracedLocked(cmds)
	default:
		taken, _ := mb.props.Take(1<<62, 0)
		refused = mb.takeCallersLocked(taken, nil)
		traced = mb.takeTracedLocked(taken)
	}
	return cmds, value, refused, held, traced
}

// takeTracedLocked returns the traces of cmds and forgets them.
func (mb *mailbox) takeTracedLocked(cmds []kvsm.Command) []tracedCommand {
	if len(mb.traced) == 0 {
		return nil
	}
	var out []tracedCommand
	for i := range cmds {
		if tc, ok := mb.traced[cmds[i].Proposer.Seq]; ok {
			out = append(out, tc)
			delete(mb.traced, cmds[i].Proposer.Seq)
		}
	}
	return out
}

// takeCallersOf returns the callers waiting on cmds and forgets them. A
// command whose caller is gone has none.
func (mb *mailbox) takeCallersOf(cmds []kvsm.Command) []writeCallback {
	mb.mu.Lock()
	defer mb.mu.Unlock()
	return mb.takeCallersLocked(cmds, nil)
}

func (mb *mailbox) takeCallersLocked(cmds []kvsm.Command, cbs []writeCallback) []writeCallback {
	for i := range cmds {
		seq := cmds[i].Proposer.Seq
		if cb := mb.callers[seq]; cb != nil {
			cbs = append(cbs, cb)
			delete(mb.callers, seq)
		}
	}
	return cbs
}

// depth returns the writes waiting for the group's next value and the
// messages waiting for its next cycle.
func (mb *mailbox) depth() (writes, msgs int) {
	mb.mu.Lock()
	defer mb.mu.Unlock()
	return mb.props.Len(), len(mb.in.msgs)
}

// takeCallers returns the callers waiting on the commands numbered seqs,
// in their order, with nil for a command nobody waits on, and forgets
// them.
func (mb *mailbox) takeCallers(seqs []uint64) []writeCallback {
	cbs := make([]writeCallback, len(seqs))
	mb.mu.Lock()
	defer mb.mu.Unlock()
	for i, seq := range seqs {
		cbs[i] = mb.callers[seq]
		delete(mb.callers, seq)
	}
	return cbs
}
