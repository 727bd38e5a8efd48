package kvsm

// Store is everything a range's commands read and write.
type Store interface {
	ReadWriter
	LocalStore
}

// Range is one replica's view of a range's state machine: what it keeps
// in memory between values (the client sessions it has read). The
// durable state is all in the Store; a Range is owned by the one worker
// that applies the range's values.
type Range struct {
	sessions sessions
	// The keys the range holds, [start, end); see SetBounds.
	start, end []byte
	bounded    bool
}

// Apply applies one chosen value to st, calling report with each command
// and its result, in order. A value that does not decode is skipped, on
// every replica alike, and its error returned. An error from a corrupt
// session record is returned after the value was applied; the caller
// must treat it as a failure of its store.
func (m *Range) Apply(st Store, data []byte, report func(c *Command, res Result)) error {
	v, err := Decode(data)
	if err != nil {
		return err
	}
	m.sessions.sweep(st, v.ProposedAt)
	for i := range v.Commands {
		c := &v.Commands[i]
		var res Result
		switch {
		case c.Op == OpSplit:
			res = m.applySplit(c)
		case !m.holds(c):
			res = Result{Outcome: OutOfRange}
		case c.Session.ClientID != 0:
			res = m.sessions.apply(st, c, v.ProposedAt)
		default:
			res = eval(st, c)
		}
		report(c, res)
	}
	if err := m.sessions.err; err != nil {
		m.sessions.err = nil
		return &StoreError{Err: err}
	}
	return nil
}

// StoreError reports a corrupt record in the store, as opposed to a
// corrupt value in the log.
type StoreError struct{ Err error }

func (e *StoreError) Error() string { return "kvsm: corrupt session record: " + e.Err.Error() }
func (e *StoreError) Unwrap() error { return e.Err }

// Reset forgets everything held in memory: the Store was replaced (a
// snapshot was ingested).
func (m *Range) Reset() { m.sessions.reset() }
