package router

import (
	"crypto/rand"
	"encoding/binary"
	"errors"
	"sync"
	"time"

	"google.golang.org/grpc/status"
)

// MaxRetryAge bounds how long after its first attempt a write is sent
// again. Ranges remember a session's results for kvsm.SessionTTL (ten
// minutes) after its last write; a retry sent later than that could be
// applied a second time, so the Client gives up long before, with
// ErrAmbiguous if an attempt may have been applied.
const MaxRetryAge = time.Minute

// The two fates of a write that failed. Every error a write (Put, Delete,
// CompareAndSwap, Batch) returns matches exactly one of them with
// errors.Is, and keeps its gRPC status (status.Code works on it).
var (
	// ErrAmbiguous: the write may or may not have been applied, and the
	// Client could not find out: an attempt reached a node and then its
	// outcome was lost (a leader change, a broken stream, the context
	// ending), and the retries that would have learned it ran out. A read
	// tells what happened. Like CockroachDB's AmbiguousResultError.
	ErrAmbiguous = errors.New("router: the write may or may not have been applied")
	// ErrNotApplied: the write was certainly not applied: it was refused
	// (bad input, a failed condition, a busy range) or never reached a
	// node that could have applied it.
	ErrNotApplied = errors.New("router: the write was not applied")
)

// writeError is a write's error: a gRPC status error and its fate.
type writeError struct {
	err       error
	ambiguous bool
}

func (e *writeError) Error() string {
	if e.ambiguous {
		return ErrAmbiguous.Error() + ": " + e.err.Error()
	}
	return e.err.Error()
}

func (e *writeError) Unwrap() error { return e.err }

func (e *writeError) Is(target error) bool {
	return (target == ErrAmbiguous && e.ambiguous) || (target == ErrNotApplied && !e.ambiguous)
}

// GRPCStatus keeps the status of the underlying error, with the message
// saying the write's fate.
func (e *writeError) GRPCStatus() *status.Status {
	p := status.Convert(e.err).Proto()
	p.Message = e.Error()
	return status.FromProto(p)
}

// writeFailed wraps a write's error with its fate, unless it has one.
func writeFailed(err error, ambiguous bool) error {
	if err == nil {
		return nil
	}
	var we *writeError
	if errors.As(err, &we) {
		return err
	}
	return &writeError{err: err, ambiguous: ambiguous}
}

// session numbers a Client's writes for exactly-once application (see
// package kvsm): a random client id, and for each write a sequence number
// that all its attempts carry. ackedBelow is the lowest number still in
// flight: the Client holds the outcome of every write below it, so
// ranges may forget their results.
type session struct {
	clientID uint64

	mu       sync.Mutex
	next     uint64          // the last number given out
	inFlight map[uint64]bool // numbers given out and not yet finished
	low      uint64          // every number below is finished
}

func newSession() *session {
	var b [8]byte
	for {
		if _, err := rand.Read(b[:]); err != nil {
			panic(err) // crypto/rand does not fail on supported platforms
		}
		if id := binary.LittleEndian.Uint64(b[:]); id != 0 {
			return &session{clientID: id, inFlight: make(map[uint64]bool), low: 1}
		}
	}
}

// begin numbers a new write.
func (s *session) begin() uint64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.next++
	s.inFlight[s.next] = true
	return s.next
}

// end marks write seq finished, whatever its outcome.
func (s *session) end(seq uint64) {
	s.mu.Lock()
	defer s.mu.Unlock()
	delete(s.inFlight, seq)
	for s.low <= s.next && !s.inFlight[s.low] {
		s.low++
	}
}

// ackedBelow is the acknowledgement to send with a write now.
func (s *session) ackedBelow() uint64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.low
}
