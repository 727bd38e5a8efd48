package kvsm

import (
	"bytes"
	"fmt"
	"maps"
	"math/rand/v2"
	"slices"
	"testing"
	"time"
)

// memStore is a Store with a node's batch semantics: writes go to a
// pending batch that reads see, except ScanLocal, which sees only what
// was committed.
type memStore struct {
	data, local               map[string]string
	pendingData, pendingLocal map[string]*string // nil value: deleted
}

func newMemStore() *memStore {
	return &memStore{data: map[string]string{}, local: map[string]string{},
		pendingData: map[string]*string{}, pendingLocal: map[string]*string{}}
}

func get(committed map[string]string, pending map[string]*string, k []byte) ([]byte, bool) {
	if v, ok := pending[string(k)]; ok {
		if v == nil {
			return nil, false
		}
		return []byte(*v), true
	}
	v, ok := committed[string(k)]
	return []byte(v), ok
}

func ptr(v []byte) *string { s := string(v); return &s }

func (s *memStore) Get(k []byte) ([]byte, bool)      { return get(s.data, s.pendingData, k) }
func (s *memStore) Put(k, v []byte)                  { s.pendingData[string(k)] = ptr(v) }
func (s *memStore) Delete(k []byte)                  { s.pendingData[string(k)] = nil }
func (s *memStore) GetLocal(k []byte) ([]byte, bool) { return get(s.local, s.pendingLocal, k) }
func (s *memStore) PutLocal(k, v []byte)             { s.pendingLocal[string(k)] = ptr(v) }
func (s *memStore) DeleteLocal(k []byte)             { s.pendingLocal[string(k)] = nil }

func (s *memStore) ScanLocal(prefix []byte, fn func(k, v []byte)) {
	for _, k := range slices.Sorted(maps.Keys(s.local)) {
		if bytes.HasPrefix([]byte(k), prefix) {
			fn([]byte(k), []byte(s.local[k]))
		}
	}
}

func commitInto(committed map[string]string, pending map[string]*string) {
	for k, v := range pending {
		if v == nil {
			delete(committed, k)
		} else {
			committed[k] = *v
		}
	}
	clear(pending)
}

func (s *memStore) commit() {
	commitInto(s.data, s.pendingData)
	commitInto(s.local, s.pendingLocal)
}

// applied is one command's report.
type applied struct {
	c   Command
	res Result
}

func apply(t *testing.T, m *Range, st *memStore, at int64, cmds ...Command) []applied {
	t.Helper()
	var out []applied
	if err := m.Apply(st, Encode(nil, at, cmds), func(c *Command, res Result) {
		out = append(out, applied{*c, res})
	}); err != nil {
		t.Fatal(err)
	}
	st.commit()
	return out
}

func put(client, seq uint64, k, v string) Command {
	return Command{Session: Session{ClientID: client, Seq: seq}, Op: OpPut, Key: []byte(k), Value: []byte(v)}
}

func cas(client, seq uint64, k, from, to string) Command {
	return Command{Session: Session{ClientID: client, Seq: seq}, Op: OpCAS, Key: []byte(k), Expected: []byte(from), Value: []byte(to)}
}

func value(st *memStore, k string) string {
	v, ok := st.Get([]byte(k))
	if !ok {
		return "<absent>"
	}
	return string(v)
}

// TestRetriedPutIsNotAppliedTwice is the history of issue 9 at the state
// machine: worker 8's put is applied, worker 3 overwrites it and is
// acknowledged, then worker 8's retry of the same put arrives. It must
// not bring worker 8's value back.
func TestRetriedPutIsNotAppliedTwice(t *testing.T) {
	var m Range
	st := newMemStore()
	apply(t, &m, st, 1, put(8, 4417, "k1", "8.4417"))
	apply(t, &m, st, 2, put(3, 4400, "k1", "3.4400"))
	got := apply(t, &m, st, 3, put(8, 4417, "k1", "8.4417"))
	if got[0].res.Outcome != Replayed {
		t.Fatalf("retry outcome %d, want Replayed", got[0].res.Outcome)
	}
	if v := value(st, "k1"); v != "3.4400" {
		t.Fatalf("k1 = %q after the retry: worker 3's acknowledged write was lost", v)
	}
	// Across a restart of the replica (a new Range over the same store).
	var restarted Range
	got = apply(t, &restarted, st, 4, put(8, 4417, "k1", "8.4417"))
	if got[0].res.Outcome != Replayed || value(st, "k1") != "3.4400" {
		t.Fatalf("after a restart: outcome %d, k1 = %q", got[0].res.Outcome, value(st, "k1"))
	}
}

// TestRetriedCASReturnsTheFirstResult: a CAS that swapped, retried, says
// it swapped (it does not compare against its own write) and swaps
// nothing more.
func TestRetriedCASReturnsTheFirstResult(t *testing.T) {
	var m Range
	st := newMemStore()
	apply(t, &m, st, 1, put(1, 1, "a", "old"))
	first := apply(t, &m, st, 2, cas(1, 2, "a", "old", "new"))
	apply(t, &m, st, 3, put(2, 1, "a", "old")) // another client puts old back
	again := apply(t, &m, st, 4, cas(1, 2, "a", "old", "new"))
	if !first[0].res.Succeeded || !again[0].res.Succeeded || again[0].res.Outcome != Replayed {
		t.Fatalf("first %+v, retry %+v", first[0].res, again[0].res)
	}
	if string(again[0].res.Value) != "old" || value(st, "a") != "old" {
		t.Fatalf("retry saw %q, a = %q", again[0].res.Value, value(st, "a"))
	}
}

// TestAcknowledgedResultsAreForgotten: the client's acknowledgement trims
// the results kept, and a copy of a write below it applies nothing and
// says its result is forgotten.
func TestAcknowledgedResultsAreForgotten(t *testing.T) {
	var m Range
	st := newMemStore()
	apply(t, &m, st, 1, put(1, 1, "a", "1"))
	apply(t, &m, st, 1, put(1, 2, "b", "2"))
	c := put(1, 3, "c", "3")
	c.Session.AckedBelow = 3
	apply(t, &m, st, 1, c)
	n := 0
	st.ScanLocal(resultPrefix, func(k, v []byte) { n++ })
	if n != 1 {
		t.Fatalf("%d results kept after acknowledging two of three, want 1", n)
	}
	apply(t, &m, st, 1, put(2, 1, "a", "other"))
	got := apply(t, &m, st, 1, put(1, 1, "a", "1"))
	if got[0].res.Outcome != Forgotten || value(st, "a") != "other" {
		t.Fatalf("a copy of an acknowledged write: outcome %d, a = %q", got[0].res.Outcome, value(st, "a"))
	}
}

func TestResultsPerClientAreBounded(t *testing.T) {
	var m Range
	st := newMemStore()
	for seq := uint64(1); seq <= MaxResultsPerClient+10; seq++ {
		apply(t, &m, st, 1, put(1, seq, "k", fmt.Sprint(seq)))
	}
	n := 0
	st.ScanLocal(resultPrefix, func(k, v []byte) { n++ })
	if n != MaxResultsPerClient {
		t.Fatalf("%d results kept, want %d", n, MaxResultsPerClient)
	}
	if got := apply(t, &m, st, 1, put(1, 1, "k", "1")); got[0].res.Outcome != Forgotten {
		t.Fatalf("the oldest write, dropped, reported %d", got[0].res.Outcome)
	}
}

func TestIdleSessionsExpire(t *testing.T) {
	var m Range
	st := newMemStore()
	ttl := int64(SessionTTL)
	apply(t, &m, st, 1, put(1, 1, "a", "1"))
	apply(t, &m, st, ttl/2, put(2, 1, "b", "1"))
	apply(t, &m, st, ttl+ttl/4+2, put(3, 1, "c", "1"))
	var clients []uint64
	st.ScanLocal(headerPrefix, func(k, v []byte) { clients = append(clients, uint64(k[len(k)-1])) })
	if !slices.Equal(clients, []uint64{2, 3}) {
		t.Fatalf("sessions kept %v, want [2 3]", clients)
	}
	// After expiry a write of client 1 starts a new session.
	if got := apply(t, &m, st, ttl+ttl/4+3, put(1, 5, "a", "2")); got[0].res.Outcome != Applied {
		t.Fatalf("outcome %d", got[0].res.Outcome)
	}
}

// TestReplicasAgreeWhateverTheirBatches applies one random log on two
// replicas that cut it into batches differently (a follower catching up
// applies many values per batch, a leader few) and restart at different
// points: their stores must end identical, and report identical results.
func TestReplicasAgreeWhateverTheirBatches(t *testing.T) {
	for seed := range uint64(50) {
		r := rand.New(rand.NewPCG(seed, 9))
		type val struct {
			at   int64
			cmds []Command
		}
		var log []val
		now := int64(time.Hour)
		seqs := map[uint64]uint64{}
		for range 300 {
			now += r.Int64N(int64(SessionTTL) / 3)
			if r.IntN(10) == 0 {
				now += int64(SessionTTL) // a long idle spell
			}
			var cmds []Command
			for range 1 + r.IntN(3) {
				client := 1 + r.Uint64N(4)
				if r.IntN(4) > 0 || seqs[client] == 0 {
					seqs[client]++
				}
				seq := seqs[client] // sometimes a retry of the last
				if r.IntN(4) == 0 {
					seq -= min(seq-1, r.Uint64N(8)) // or of an older one
				}
				c := put(client, seq, fmt.Sprint("k", r.IntN(3)), fmt.Sprint(client, ".", seq))
				if r.IntN(3) == 0 {
					c = cas(client, seq, string(c.Key), fmt.Sprint(r.IntN(4), ".", r.IntN(5)), string(c.Value))
				}
				c.Session.AckedBelow = seq - min(seq-1, r.Uint64N(12))
				cmds = append(cmds, c)
			}
			log = append(log, val{now, cmds})
		}
		run := func(batchP, restartP float64, rr *rand.Rand) (*memStore, []Result) {
			var m Range
			st := newMemStore()
			var results []Result
			for _, v := range log {
				if err := m.Apply(st, Encode(nil, v.at, v.cmds), func(_ *Command, res Result) { results = append(results, res) }); err != nil {
					t.Fatal(err)
				}
				if rr.Float64() < batchP {
					st.commit()
					if rr.Float64() < restartP {
						m = Range{}
					}
				}
			}
			st.commit()
			return st, results
		}
		a, ra := run(1, 0, rand.New(rand.NewPCG(seed, 1)))
		b, rb := run(0.2, 0.3, rand.New(rand.NewPCG(seed, 2)))
		if !maps.Equal(a.data, b.data) || !maps.Equal(a.local, b.local) {
			t.Fatalf("seed %d: replicas diverged:\ndata %v\n vs  %v\nlocal %d vs %d records", seed, a.data, b.data, len(a.local), len(b.local))
		}
		if len(ra) != len(rb) {
			t.Fatalf("seed %d: %d results vs %d", seed, len(ra), len(rb))
		}
		for i := range ra {
			if ra[i].Outcome != rb[i].Outcome || ra[i].Succeeded != rb[i].Succeeded || string(ra[i].Value) != string(rb[i].Value) {
				t.Fatalf("seed %d: result %d differs: %+v vs %+v", seed, i, ra[i], rb[i])
			}
		}
	}
}
