package kvsm

import "github.com/shardd/shardd/kvpb"

// Op names what a Command does to the key-value state.
type Op uint8

const (
	OpPut Op = iota + 1
	OpDelete
	// OpCAS writes Value (or deletes, with Delete) if the key holds
	// Expected, or is absent with ExpectAbsent.
	OpCAS
	// OpBatch applies Ops (puts and deletes) atomically, if its Checks
	// hold.
	OpBatch
	// OpSplit cuts the range at Key; NewRange is the range that takes the
	// keys from Key on. It carries no session: see NewSplit.
	OpSplit
	opMax = OpSplit
)

// Proposer identifies a command's waiting caller on the node that
// proposed it: the node, the process life of that node (its persisted
// incarnation, so that ids never repeat across restarts) and a number
// unique within that life. Only that node and life deliver its result.
type Proposer struct {
	Node, Incarnation, Seq uint64
}

// Session is a command's place in its client's exactly-once session;
// the zero value means the write has no session.
type Session struct {
	// ClientID names the client, Seq numbers this write among the
	// client's (from 1; a retry carries the same), and AckedBelow says the
	// client holds the outcome of every write it numbered below it.
	ClientID, Seq, AckedBelow uint64
}

// SessionOf returns the session a request header names.
func SessionOf(h *kvpb.RequestHeader) Session {
	return Session{ClientID: h.GetClientId(), Seq: h.GetSeq(), AckedBelow: h.GetAckedBelow()}
}

// Command is one client write.
type Command struct {
	Proposer Proposer
	Session  Session
	Op       Op
	Key      []byte
	Value    []byte
	Expected []byte
	// ExpectAbsent (CAS, checks) expects the key not to exist; Delete
	// (CAS) deletes instead of writing Value.
	ExpectAbsent bool
	Delete       bool
	// Ops (OpBatch only) are puts and deletes, without Proposer or
	// Session.
	Ops []Command
	// Checks (OpBatch only) must all hold when the batch is applied, or
	// none of its Ops is: the fencing compare of a conditional batch.
	Checks []Check
	// NewRange (OpSplit only) is the id of the range the split creates.
	NewRange uint64
}

// Check is one condition of a conditional batch: Key holds Expected, or,
// with ExpectAbsent, does not exist.
type Check struct {
	Key, Expected []byte
	ExpectAbsent  bool
}

// Outcome says how a Result came about.
type Outcome uint8

const (
	// Applied: the command was applied now.
	Applied Outcome = iota
	// Replayed: the command was applied before (it is a retry, or a copy
	// re-proposed by a new leader); the Result is the first application's
	// and nothing was applied now.
	Replayed
	// Forgotten: the command's session has moved past it and its result
	// is no longer remembered. Nothing was applied now; whether it was
	// applied before is unknown here.
	Forgotten
	// OutOfRange: a key of the command is no longer in the range (a split
	// applied before it moved it to another range). Nothing was applied,
	// here or anywhere: the command is spent, and its client may send it
	// again to the range that holds the key now.
	OutOfRange
)

// Result is what applying a Command returned.
type Result struct {
	Outcome Outcome
	// Found reports whether the key existed before the command (delete,
	// CAS); Value is what it held (CAS).
	Found     bool
	Value     []byte
	Succeeded bool
	// FailedCheck is, for a batch whose checks did not all hold, the index
	// of the first failing one plus one; zero otherwise.
	FailedCheck int
}

// ReadWriter is the user data a command reads and writes: the range's
// data with every command applied before it, including those earlier in
// the same unsynced batch.
type ReadWriter interface {
	Get(key []byte) (value []byte, found bool)
	Put(key, value []byte)
	Delete(key []byte)
}

// evalFunc applies one command of its Op to rw.
type evalFunc func(rw ReadWriter, c *Command) Result

var evaluators [opMax + 1]evalFunc

// register installs the evaluator of op; each request type's file
// registers its own.
func register(op Op, fn evalFunc) { evaluators[op] = fn }

// eval applies c to rw with its Op's evaluator. The decoder admits only
// known ops, so every command has one.
func eval(rw ReadWriter, c *Command) Result {
	return evaluators[c.Op](rw, c)
}
