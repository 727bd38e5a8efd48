// Package paxospb holds the values that Multi-Paxos replicas exchange and
// persist: ballots, log entries, durable state and messages, with a compact
// binary encoding for the wire and for the engine. It has no dependencies so
// that the consensus core, the engine and the transport can all share it.
package paxospb

import "fmt"

// Ballot is a Paxos ballot number: a round and the node that owns it.
// Ballots are totally ordered by (Round, Node); because a proposer only ever
// uses its own node id, two proposers never share a ballot ("Paxos Made
// Simple", section 2.2: proposals are numbered from disjoint sets).
type Ballot struct {
	Round uint64
	Node  uint64
}

// IsZero reports whether b is the zero ballot, which no proposer uses and
// which marks "nothing promised" or "nothing accepted".
func (b Ballot) IsZero() bool { return b.Round == 0 && b.Node == 0 }

// Less reports whether b orders strictly before o.
func (b Ballot) Less(o Ballot) bool {
	if b.Round != o.Round {
		return b.Round < o.Round
	}
	return b.Node < o.Node
}

// Compare returns -1, 0 or +1 as b orders before, equal to or after o.
func (b Ballot) Compare(o Ballot) int {
	switch {
	case b.Less(o):
		return -1
	case o.Less(b):
		return 1
	}
	return 0
}

func (b Ballot) String() string { return fmt.Sprintf("%d.%d", b.Round, b.Node) }

// EntryType says how the state machine above a group reads an entry's Data.
type EntryType uint8

const (
	// EntryEmpty marks a slot for which nothing has been accepted. It never
	// appears in Ready.Entries or Ready.Committed.
	EntryEmpty EntryType = iota
	// EntryNormal carries an application command in Data.
	EntryNormal
	// EntryNoop fills a gap; a new leader proposes it for open slots in which
	// no value was accepted ("Paxos Made Simple", section 3).
	EntryNoop
	// EntryConfChange carries an encoded ConfChange in Data. It takes effect
	// for every later slot once it is chosen.
	EntryConfChange
)

func (t EntryType) String() string {
	switch t {
	case EntryEmpty:
		return "empty"
	case EntryNormal:
		return "normal"
	case EntryNoop:
		return "noop"
	case EntryConfChange:
		return "conf"
	}
	return fmt.Sprintf("EntryType(%d)", uint8(t))
}

// Entry is a value in one slot of a group's log, together with the ballot
// at which the local acceptor accepted it.
type Entry struct {
	Slot   uint64
	Ballot Ballot
	Type   EntryType
	Data   []byte
}

// ConfChangeType names a single-step membership change. Changing one voter
// at a time keeps every majority of the old voter set intersecting every
// majority of the new one.
type ConfChangeType uint8

const (
	// ConfAddLearner adds a non-voting replica that receives the log.
	ConfAddLearner ConfChangeType = iota + 1
	// ConfPromote turns a learner into a voter.
	ConfPromote
	// ConfRemove removes a voter or a learner.
	ConfRemove
)

func (t ConfChangeType) String() string {
	switch t {
	case ConfAddLearner:
		return "add-learner"
	case ConfPromote:
		return "promote"
	case ConfRemove:
		return "remove"
	}
	return fmt.Sprintf("ConfChangeType(%d)", uint8(t))
}

// ConfChange is one membership change proposed through the log.
type ConfChange struct {
	Type    ConfChangeType
	Replica uint64
}

// Config is a group's membership: the voters whose majorities choose values
// and the learners that only receive them.
type Config struct {
	Voters   []uint64
	Learners []uint64
}

// HardState is an acceptor's durable promise and its knowledge of the log.
// It must be persisted before any message that depends on it is sent.
type HardState struct {
	// Promised is the highest ballot this acceptor has promised or accepted.
	Promised Ballot
	// Chosen is the highest slot such that this replica knows the values of
	// every slot up to it are chosen.
	Chosen uint64
}

// Meta records the point below which a group's log was truncated or
// replaced by a snapshot, and the membership in force at that point.
type Meta struct {
	// Index is the last slot covered by the snapshot or truncation; the log
	// holds no entry at or below Index that the replica still needs.
	Index  uint64
	Config Config
}

// Snapshot is a group's applied state up to Meta.Index. Data is the state
// machine's own encoding and is attached by the caller of group.
type Snapshot struct {
	Meta Meta
	Data []byte
}

// MessageType names a Paxos message.
type MessageType uint8

const (
	MsgNone MessageType = iota
	// MsgPrepare is phase 1a: a candidate asks acceptors to promise Ballot
	// for every slot above Chosen.
	MsgPrepare
	// MsgPromise is phase 1b: an acceptor's promise (or refusal) with every
	// value it accepted above the candidate's Chosen.
	MsgPromise
	// MsgAccept is phase 2a: the leader asks acceptors to accept Entries.
	MsgAccept
	// MsgAccepted is phase 2b: an acceptor accepted slots [Index, LastIndex]
	// (or refused them, with Reject set).
	MsgAccepted
	// MsgHeartbeat carries the leader's chosen point and renews its lease.
	MsgHeartbeat
	// MsgHeartbeatResp acknowledges a heartbeat and reports the acceptor's
	// chosen point.
	MsgHeartbeatResp
	// MsgCommit teaches a lagging replica chosen Entries it does not have.
	MsgCommit
	// MsgSnapshot carries a snapshot to a replica that is behind the
	// sender's log truncation point.
	MsgSnapshot
	// MsgTimeoutNow tells the target of a leader transfer to campaign now;
	// the sender has given up its lease.
	MsgTimeoutNow
	// MsgQuiesce is a heartbeat after which an idle group stops ticking.
	// Epoch is the support epoch the leader's node holds from the
	// follower's. A follower whose node grants exactly that epoch binds
	// its acceptor to the leader's ballot for as long as that support
	// lasts, and reports the epoch back in a MsgHeartbeatResp.
	MsgQuiesce
	// MsgSupportRequest and MsgSupportResponse are node-to-node liveness
	// heartbeats (Group is zero): one per node pair, whatever the number
	// of groups. A request carries the requester's clock reading in Seq
	// and its incarnation in Epoch; the response echoes both, the
	// incarnation in Index, and carries the epoch of support granted in
	// Epoch.
	MsgSupportRequest
	MsgSupportResponse
	// MsgRelease is sent by a replica that stopped leading at Ballot to the
	// followers bound to it by MsgQuiesce: they are free to promise others.
	// They acknowledge with a MsgReleaseResp.
	MsgRelease
	MsgReleaseResp
	// MsgProbe asks an acceptor whether it would promise Ballot now, and
	// changes nothing: a replica whose election timer fires probes before
	// it campaigns (Raft's PreVote, thesis 9.6), so that one that can't
	// win, like one cut off from its group, never raises a promise that
	// would depose a healthy leader once it is back. The acceptor answers
	// with a MsgProbeResp whose Reject is what a MsgPrepare of Ballot
	// would get (RejectNone: it would promise), with Hint its promise.
	MsgProbe
	MsgProbeResp
	msgTypeCount
)

var msgNames = [...]string{
	MsgNone: "none", MsgPrepare: "prepare", MsgPromise: "promise", MsgAccept: "accept",
	MsgAccepted: "accepted", MsgHeartbeat: "heartbeat", MsgHeartbeatResp: "heartbeat-resp",
	MsgCommit: "commit", MsgSnapshot: "snapshot", MsgTimeoutNow: "timeout-now",
	MsgQuiesce: "quiesce", MsgSupportRequest: "support-request", MsgSupportResponse: "support-response",
	MsgRelease: "release", MsgReleaseResp: "release-resp", MsgProbe: "probe", MsgProbeResp: "probe-resp",
}

func (t MessageType) String() string {
	if int(t) < len(msgNames) {
		return msgNames[t]
	}
	return fmt.Sprintf("MessageType(%d)", uint8(t))
}

// RejectReason says why an acceptor refused a request.
type RejectReason uint8

const (
	RejectNone RejectReason = iota
	// RejectBallot: the acceptor promised a higher ballot, in Hint.
	RejectBallot
	// RejectLease: the acceptor is bound by another leader's lease.
	RejectLease
	// RejectBehind: the candidate's log ends below the acceptor's
	// truncation point; the acceptor sends it a snapshot instead.
	RejectBehind
	// RejectNotMember: the candidate is not a voter in the acceptor's
	// configuration.
	RejectNotMember
)

// Message is one Paxos message between two replicas of a group. Fields are
// used according to Type; unused ones are zero.
type Message struct {
	Type MessageType
	// Group is filled in by the node runtime that multiplexes many groups
	// over one connection; the group package ignores it.
	Group uint64
	From  uint64
	To    uint64
	// Ballot is the sender's ballot for requests and the ballot being
	// answered for responses.
	Ballot Ballot
	// Index and LastIndex bound the slots a message is about.
	Index     uint64
	LastIndex uint64
	// Chosen is the sender's chosen point.
	Chosen uint64
	// Seq numbers heartbeat rounds so that responses match their round.
	Seq uint64
	// Reject and Hint report a refusal; Hint is the ballot the acceptor
	// promised (RejectBallot).
	Reject RejectReason
	Hint   Ballot
	// Transfer is set on a MsgPrepare sent because of a leader transfer: it
	// is the ballot whose lease the old leader gave up.
	Transfer Ballot
	Entries  []Entry
	Snapshot *Snapshot
	// Trace carries a W3C traceparent for the commit this message serves.
	Trace []byte
	// Epoch is a node liveness support epoch; see MsgQuiesce.
	Epoch uint64
}
