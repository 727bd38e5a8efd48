package kvsm

import (
	"encoding/binary"
	"time"
)

const (
	// SessionTTL is how long a range remembers a client's session after
	// its last write, on the proposing leaders' clocks. It is a constant,
	// not a setting: every replica must expire the same sessions at the
	// same point of the log.
	SessionTTL = 10 * time.Minute
	// MaxResultsPerClient bounds the results a range keeps for one client
	// beyond its acknowledgement. A client with more writes than that in
	// flight at one range sees the oldest reported Forgotten if retried.
	MaxResultsPerClient = 4096
)

// LocalStore holds a range's range-local replicated records: written in
// the same batch as the data, carried by snapshots. Suffixes are opaque
// to the store.
type LocalStore interface {
	// GetLocal sees the writes of the batch being built too.
	GetLocal(suffix []byte) (value []byte, found bool)
	PutLocal(suffix, value []byte)
	DeleteLocal(suffix []byte)
	// ScanLocal calls fn for every record whose suffix starts with prefix,
	// as of the last committed batch (not the one being built).
	ScanLocal(prefix []byte, fn func(suffix, value []byte))
}

// The session records, under the range's local records:
//
//	"sh" client            -> uvarint(last active) uvarint(acked below)
//	"sr" client seq        -> a Result
//	"sw"                   -> varint(time of the last expiry sweep)
//
// client and seq are 8 bytes big-endian.
var (
	headerPrefix = []byte("sh")
	resultPrefix = []byte("sr")
	sweepKey     = []byte("sw")
)

func headerKey(client uint64) []byte {
	return binary.BigEndian.AppendUint64(append([]byte(nil), headerPrefix...), client)
}

func resultsKeyPrefix(client uint64) []byte {
	return binary.BigEndian.AppendUint64(append([]byte(nil), resultPrefix...), client)
}

func resultKey(client, seq uint64) []byte {
	return binary.BigEndian.AppendUint64(resultsKeyPrefix(client), seq)
}

// session is one client's state at one range.
type session struct {
	lastActive int64
	ackedBelow uint64
	results    map[uint64]Result
}

func (s *session) encodeHeader() []byte {
	b := binary.AppendVarint(nil, s.lastActive)
	return binary.AppendUvarint(b, s.ackedBelow)
}

func decodeHeader(b []byte) (lastActive int64, ackedBelow uint64, ok bool) {
	lastActive, n := binary.Varint(b)
	if n <= 0 {
		return 0, 0, false
	}
	ackedBelow, m := binary.Uvarint(b[n:])
	return lastActive, ackedBelow, m > 0 && n+m == len(b)
}

const (
	resultFound = 1 << iota
	resultSucceeded
)

func encodeResult(r Result) []byte {
	var f byte
	if r.Found {
		f |= resultFound
	}
	if r.Succeeded {
		f |= resultSucceeded
	}
	b := binary.AppendUvarint([]byte{f}, uint64(r.FailedCheck))
	return appendBytes(b, r.Value)
}

func decodeResult(b []byte) (Result, bool) {
	d := decoder{b: b}
	f := d.byte()
	r := Result{Found: f&resultFound != 0, Succeeded: f&resultSucceeded != 0}
	r.FailedCheck = int(d.uvarint())
	r.Value = append([]byte(nil), d.bytes()...)
	return r, d.err == nil && len(d.b) == 0
}

// sessions is a range's table of client sessions. Its cache is
// authoritative for every client it holds: a session is loaded from the
// store once, then changed only here, so the cache sees the writes of the
// batch being built, which ScanLocal does not. A session the sweep forgets
// leaves the cache; read again, its deleted header (GetLocal sees the
// batch) makes it a new, empty one.
type sessions struct {
	cache       map[uint64]*session
	sweptAt     int64
	sweptLoaded bool
	err         error // the first corrupt record met
}

func (t *sessions) reset() {
	*t = sessions{}
}

// load returns client's session, reading it from st the first time.
func (t *sessions) load(st LocalStore, client uint64) *session {
	if s := t.cache[client]; s != nil {
		return s
	}
	if t.cache == nil {
		t.cache = make(map[uint64]*session)
	}
	s := &session{results: make(map[uint64]Result)}
	if v, ok := st.GetLocal(headerKey(client)); ok {
		var good bool
		s.lastActive, s.ackedBelow, good = decodeHeader(v)
		t.check(good)
		prefix := resultsKeyPrefix(client)
		st.ScanLocal(prefix, func(k, v []byte) {
			r, good := decodeResult(v)
			t.check(good && len(k) == len(prefix)+8)
			if good && len(k) == len(prefix)+8 {
				s.results[binary.BigEndian.Uint64(k[len(prefix):])] = r
			}
		})
	}
	t.cache[client] = s
	return s
}

func (t *sessions) check(good bool) {
	if !good && t.err == nil {
		t.err = ErrCorrupt
	}
}

// forgetBelow drops every result of s below seq: the client holds their
// outcomes, or gave up on them.
func (s *session) forgetBelow(st LocalStore, client, seq uint64) {
	if seq <= s.ackedBelow {
		return
	}
	for q := range s.results {
		if q < seq {
			delete(s.results, q)
			st.DeleteLocal(resultKey(client, q))
		}
	}
	s.ackedBelow = seq
}

// record remembers the result of c, applied at now, and the
// client's acknowledgement, and bounds what is kept.
func (s *session) record(st LocalStore, client uint64, c *Command, res Result, now int64) {
	if res.Outcome == Applied {
		s.results[c.Session.Seq] = res
		st.PutLocal(resultKey(client, c.Session.Seq), encodeResult(res))
	}
	s.forgetBelow(st, client, c.Session.AckedBelow)
	if len(s.results) > MaxResultsPerClient {
		lowest := c.Session.Seq
		for q := range s.results {
			lowest = min(lowest, q)
		}
		s.forgetBelow(st, client, lowest+1)
	}
	s.lastActive = max(s.lastActive, now)
	st.PutLocal(headerKey(client), s.encodeHeader())
}

// apply applies c, a write of a client session, exactly once.
func (t *sessions) apply(st Store, c *Command, now int64) Result {
	client := c.Session.ClientID
	s := t.load(st, client)
	if c.Session.Seq < s.ackedBelow {
		return Result{Outcome: Forgotten}
	}
	res, done := s.results[c.Session.Seq]
	if done {
		res.Outcome = Replayed
	} else {
		res = eval(st, c)
	}
	s.record(st, client, c, res, now)
	return res
}

// sweep forgets the sessions idle for SessionTTL at now, at most once per
// quarter of it. Every replica sweeps at the same values with the same
// sessions, so they forget the same ones.
func (t *sessions) sweep(st LocalStore, now int64) {
	if now == 0 {
		return
	}
	if !t.sweptLoaded {
		if v, ok := st.GetLocal(sweepKey); ok {
			at, n := binary.Varint(v)
			t.check(n == len(v))
			t.sweptAt = at
		}
		t.sweptLoaded = true
	}
	ttl := int64(SessionTTL)
	if now < t.sweptAt+ttl/4 {
		return
	}
	// The stored sessions not in the cache are as stored; the cached
	// ones (some perhaps only in the batch being built) are as cached.
	idle := make(map[uint64]bool)
	st.ScanLocal(headerPrefix, func(k, v []byte) {
		if len(k) != len(headerPrefix)+8 {
			t.check(false)
			return
		}
		client := binary.BigEndian.Uint64(k[len(headerPrefix):])
		if _, cached := t.cache[client]; !cached {
			last, _, good := decodeHeader(v)
			t.check(good)
			idle[client] = now-last > ttl
		}
	})
	for client, s := range t.cache {
		idle[client] = now-s.lastActive > ttl
	}
	for client, expired := range idle {
		if !expired {
			continue
		}
		s := t.load(st, client)
		for q := range s.results {
			st.DeleteLocal(resultKey(client, q))
		}
		st.DeleteLocal(headerKey(client))
		delete(t.cache, client)
	}
	t.sweptAt = now
	st.PutLocal(sweepKey, binary.AppendVarint(nil, now))
}
