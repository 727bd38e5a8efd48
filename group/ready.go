package group

import pb "github.com/shardd/shardd/paxospb"

// Role is what a replica currently does in its group.
type Role uint8

const (
	// Follower accepts values from a leader and learns chosen ones.
	Follower Role = iota
	// Candidate is running Phase 1 to become leader.
	Candidate
	// Leader has completed Phase 1 and runs Phase 2 for new slots.
	Leader
)

func (r Role) String() string {
	switch r {
	case Follower:
		return "follower"
	case Candidate:
		return "candidate"
	case Leader:
		return "leader"
	}
	return "unknown"
}

// SoftState is volatile state worth telling the caller about when it
// changes: who leads and what this replica is.
type SoftState struct {
	Role   Role
	Leader uint64
}

// ReadState releases a linearizable read: once the caller has applied every
// entry up to Index it may serve the read identified by Ctx.
type ReadState struct {
	Ctx   []byte
	Index uint64
}

// Ready is the work a replica hands to its caller. The caller must, in this
// order:
//
//  0. send SendFirst, at any time before Advance (before persisting is
//     best: the leader's accepts then travel while it persists its own
//     copy);
//  1. persist HardState, Entries and Meta (deleting log entries at or
//     below Meta.Index), and install Snapshot with its applied point, all
//     durably (one synced batch may carry many groups' Readys);
//  2. send Messages, attaching the state machine's data to any
//     MsgSnapshot (its state as of Meta.Index, before step 3);
//  3. apply Committed in order, then serve ReadStates whose Index has been
//     applied;
//  4. call Advance.
//
// Persisting before sending Messages is what makes a promise or an
// acceptance survive a crash: no other replica may learn of one that could
// be lost. SendFirst holds only messages that claim no such thing.
//
// Three shortcuts keep that guarantee, and a caller may take them (the
// node runtime takes all three; the simulator recovers the same way):
//
//   - HardState.Chosen is a hint. Only a change of Promised must be
//     persisted (and synced); a replica restarted with an older Chosen,
//     or none, learns the rest again from its peers. Accepted entries are
//     always persisted, so nothing chosen is lost with the hint.
//   - Meta need not be stored as such. A caller that persists, atomically
//     with the applied state, the applied point and the configuration in
//     force at it may restart the replica with State.Meta = {Index:
//     applied point, Config: that configuration}, ignoring the entries at
//     or below it: Meta.Index never exceeds the applied point, and a peer
//     that needs the entries it then lacks gets a snapshot.
//   - A received snapshot may be installed before its MsgSnapshot is
//     stepped, provided AcceptsSnapshot reports that the replica will
//     adopt it: the Ready that then carries Snapshot asks for nothing
//     more than what was installed.
//
// The applied state itself (step 3) need not be synced: a replica that
// restarts behind applies the entries again from its log.
type Ready struct {
	// SoftState is non-nil when the role or the known leader changed.
	SoftState *SoftState
	// HardState is non-nil when it must be persisted.
	HardState *pb.HardState
	// Entries are accepted or learned entries to persist, each replacing
	// whatever the log held at its slot.
	Entries []pb.Entry
	// Meta is non-nil when the log was truncated or replaced by a snapshot:
	// persist it and delete every entry at or below Meta.Index.
	Meta *pb.Meta
	// Snapshot is a received snapshot to install into the state machine.
	// Its Meta.Index becomes the applied point.
	Snapshot *pb.Snapshot
	// SendFirst may be sent before the records are durable; see sendFirst.
	SendFirst []pb.Message
	// Messages are to be sent after the records are durable.
	Messages []pb.Message
	// Committed are chosen entries to apply, in slot order.
	Committed []pb.Entry
	// ReadStates release linearizable reads.
	ReadStates []ReadState
}

// Status is a replica's state for inspection and tests.
type Status struct {
	ID         uint64
	Role       Role
	Leader     uint64
	Ballot     pb.Ballot // this replica's own ballot as candidate or leader
	Promised   pb.Ballot
	Chosen     uint64
	Applied    uint64
	LastIndex  uint64
	FirstIndex uint64
	Config     pb.Config
	LeaseValid bool
	Quiesced   bool
	// Bound is the leader ballot this acceptor is bound to by a lease or a
	// quiesce binding right now, if any.
	Bound pb.Ballot
	// Transferee is, on a leader, the target of the leader transfer under
	// way, if any; Transferring is what the method of that name reports.
	Transferee   uint64
	Transferring bool
	// LeaderChosen is what the method of that name reports.
	LeaderChosen uint64
}
