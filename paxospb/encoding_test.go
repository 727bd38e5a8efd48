package paxospb

import (
	"bytes"
	"encoding/binary"
	"errors"
	"flag"
	"math"
	"math/rand/v2"
	"reflect"
	"runtime"
	"strings"
	"testing"
	"time"
)

const max64 = math.MaxUint64

var seedFlag = flag.Uint64("paxospb.seed", 0, "seed for TestRandomRoundTrip; 0 picks one from the clock")

// Normalizers: a decoded value has nil where the original had an empty
// slice, so tests compare decoded values with normalized originals.

func normBytes(b []byte) []byte {
	if len(b) == 0 {
		return nil
	}
	return b
}

func normIDs(ids []uint64) []uint64 {
	if len(ids) == 0 {
		return nil
	}
	return ids
}

func normEntry(e Entry) Entry {
	e.Data = normBytes(e.Data)
	return e
}

func normConfChange(c ConfChange) ConfChange { return c }

func normConfig(c Config) Config {
	return Config{Voters: normIDs(c.Voters), Learners: normIDs(c.Learners)}
}

func normHardState(h HardState) HardState { return h }

func normMeta(m Meta) Meta {
	m.Config = normConfig(m.Config)
	return m
}

func normSnapshot(s Snapshot) Snapshot {
	return Snapshot{Meta: normMeta(s.Meta), Data: normBytes(s.Data)}
}

func normMessage(m Message) Message {
	if len(m.Entries) == 0 {
		m.Entries = nil
	} else {
		es := make([]Entry, len(m.Entries))
		for i, e := range m.Entries {
			es[i] = normEntry(e)
		}
		m.Entries = es
	}
	if m.Snapshot != nil {
		s := normSnapshot(*m.Snapshot)
		m.Snapshot = &s
	}
	m.Trace = normBytes(m.Trace)
	return m
}

// codec is the method set shared by the encoded types.
type codec[T any] interface {
	*T
	Size() int
	Append([]byte) []byte
	Marshal() []byte
	Unmarshal([]byte) error
}

// checkRoundTrip encodes v every way, decodes it into reuse (which may hold
// an earlier value that decoding must overwrite) and checks the result. It
// returns the encoding.
func checkRoundTrip[T any, P codec[T]](t testing.TB, v *T, reuse *T, norm func(T) T) []byte {
	t.Helper()
	enc := P(v).Marshal()
	if n := P(v).Size(); n != len(enc) {
		t.Fatalf("Size() = %d, len(Marshal()) = %d for %+v", n, len(enc), *v)
	}
	prefix := []byte("prefix")
	app := P(v).Append(bytes.Clone(prefix))
	if !bytes.HasPrefix(app, prefix) || !bytes.Equal(app[len(prefix):], enc) {
		t.Fatalf("Append(prefix) = %x, want prefix followed by %x", app, enc)
	}
	if err := P(reuse).Unmarshal(enc); err != nil {
		t.Fatalf("Unmarshal(%x) of %+v: %v", enc, *v, err)
	}
	if want := norm(*v); !reflect.DeepEqual(*reuse, want) {
		t.Fatalf("round trip of %x:\n got %+v\nwant %+v", enc, *reuse, want)
	}
	if re := P(reuse).Marshal(); !bytes.Equal(re, enc) {
		t.Fatalf("re-encoding differs:\n got %x\nwant %x", re, enc)
	}
	return enc
}

func data(n int, seed byte) []byte {
	b := make([]byte, n)
	for i := range b {
		b[i] = seed + byte(i*7)
	}
	return b
}

func sampleEntries() []Entry {
	return []Entry{
		{},
		{Data: []byte{}},
		{Slot: 1, Ballot: Ballot{1, 1}, Type: EntryNormal, Data: []byte("x")},
		{Slot: 2, Ballot: Ballot{3, 2}, Type: EntryNoop},
		{Slot: 3, Ballot: Ballot{3, 2}, Type: EntryConfChange, Data: (&ConfChange{ConfPromote, 4}).Marshal()},
		{Slot: 127, Ballot: Ballot{128, 16383}, Type: EntryNormal, Data: data(127, 1)},
		{Slot: 16384, Ballot: Ballot{1 << 35, 1 << 56}, Type: EntryNormal, Data: data(128, 2)},
		{Slot: max64, Ballot: Ballot{max64, max64}, Type: EntryConfChange, Data: data(70000, 3)},
	}
}

func sampleConfChanges() []ConfChange {
	return []ConfChange{
		{},
		{Type: ConfAddLearner, Replica: 1},
		{Type: ConfPromote, Replica: 300},
		{Type: ConfRemove, Replica: max64},
	}
}

func manyIDs(n int) []uint64 {
	ids := make([]uint64, n)
	for i := range ids {
		ids[i] = uint64(i) * 0x9e3779b97f4a7c15
	}
	return ids
}

func sampleConfigs() []Config {
	return []Config{
		{},
		{Voters: []uint64{}, Learners: []uint64{}},
		{Voters: []uint64{1, 2, 3}},
		{Learners: []uint64{4}},
		{Voters: []uint64{0, max64, 1 << 63}, Learners: []uint64{max64}},
		{Voters: manyIDs(1000), Learners: manyIDs(10)},
	}
}

func sampleHardStates() []HardState {
	return []HardState{
		{},
		{Promised: Ballot{5, 2}, Chosen: 100},
		{Promised: Ballot{max64, max64}, Chosen: max64},
	}
}

func sampleMetas() []Meta {
	var ms []Meta
	for i, c := range sampleConfigs() {
		ms = append(ms, Meta{Index: []uint64{0, 1, 1000, max64, 1 << 40, 7}[i], Config: c})
	}
	return ms
}

func sampleSnapshots() []Snapshot {
	return []Snapshot{
		{},
		{Data: []byte{}},
		{Meta: Meta{Index: 10, Config: Config{Voters: []uint64{1, 2, 3}}}, Data: []byte("state")},
		{Meta: Meta{Index: max64, Config: Config{Voters: []uint64{max64}, Learners: []uint64{max64}}}, Data: data(1<<17, 9)},
	}
}

func entries(n, size int, first uint64) []Entry {
	es := make([]Entry, n)
	for i := range es {
		es[i] = Entry{Slot: first + uint64(i), Ballot: Ballot{7, 1}, Type: EntryNormal, Data: data(size, byte(i))}
	}
	return es
}

func sampleMessages() []Message {
	trace := []byte("00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01")
	return []Message{
		{},
		{Entries: []Entry{}, Trace: []byte{}},
		{Type: MsgPrepare, Group: 12, From: 1, To: 2, Ballot: Ballot{4, 1}, Chosen: 99},
		{Type: MsgPrepare, Group: 12, From: 1, To: 2, Ballot: Ballot{5, 1}, Chosen: 99, Transfer: Ballot{4, 3}},
		{Type: MsgPromise, Group: 12, From: 2, To: 1, Ballot: Ballot{4, 1}, Chosen: 99, Index: 100, LastIndex: 102,
			Entries: []Entry{{Slot: 100, Ballot: Ballot{3, 3}, Type: EntryNormal, Data: []byte("a")}, {Slot: 102, Ballot: Ballot{2, 2}, Type: EntryNoop}}},
		{Type: MsgPromise, Group: 12, From: 2, To: 1, Ballot: Ballot{4, 1}, Reject: RejectBallot, Hint: Ballot{9, 3}},
		{Type: MsgAccept, Group: 12, From: 1, To: 2, Ballot: Ballot{7, 1}, Index: 1000, LastIndex: 1015, Chosen: 999, Entries: entries(16, 64, 1000), Trace: trace},
		{Type: MsgAccepted, Group: 12, From: 2, To: 1, Ballot: Ballot{7, 1}, Index: 1000, LastIndex: 1015, Chosen: 999},
		{Type: MsgAccepted, Group: 12, From: 2, To: 1, Ballot: Ballot{7, 1}, Reject: RejectNotMember},
		{Type: MsgHeartbeat, Group: 1 << 40, From: 1, To: 3, Ballot: Ballot{7, 1}, Chosen: 1015, Seq: 88},
		{Type: MsgHeartbeatResp, Group: 1 << 40, From: 3, To: 1, Ballot: Ballot{7, 1}, Chosen: 1010, Seq: 88, Reject: RejectLease},
		{Type: MsgCommit, Group: 5, From: 1, To: 3, Index: 10, LastIndex: 11, Chosen: 11, Entries: entries(2, 0, 10)},
		{Type: MsgSnapshot, Group: 5, From: 1, To: 3, Snapshot: &Snapshot{}},
		{Type: MsgSnapshot, Group: 5, From: 1, To: 3, Reject: RejectBehind, Snapshot: &Snapshot{
			Meta: Meta{Index: 500, Config: Config{Voters: []uint64{1, 2, 3}, Learners: []uint64{4}}},
			Data: data(5000, 4)}},
		{Type: MsgTimeoutNow, Group: 5, From: 1, To: 2, Ballot: Ballot{7, 1}},
		{Type: MsgProbe, Group: 5, From: 3, To: 1, Ballot: Ballot{8, 3}, Chosen: 1015},
		{Type: MsgProbeResp, Group: 5, From: 1, To: 3, Ballot: Ballot{8, 3}, Chosen: 1015, Reject: RejectLease, Hint: Ballot{7, 1}},
		{Type: MsgCommit, Group: 6, Entries: entries(10000, 3, 1)},
		{
			Type: maxMessageType, Group: max64, From: max64, To: max64, Ballot: Ballot{max64, max64},
			Index: max64, LastIndex: max64, Chosen: max64, Seq: max64, Reject: maxRejectReason,
			Hint: Ballot{max64, max64}, Transfer: Ballot{max64, max64},
			Entries:  []Entry{{Slot: max64, Ballot: Ballot{max64, max64}, Type: maxEntryType, Data: data(300, 5)}},
			Snapshot: &Snapshot{Meta: Meta{Index: max64, Config: Config{Voters: []uint64{max64}}}, Data: []byte{0}},
			Trace:    data(1000, 6),
		},
	}
}

func TestRoundTripTables(t *testing.T) {
	t.Run("Entry", func(t *testing.T) {
		var reuse Entry
		for _, v := range sampleEntries() {
			checkRoundTrip(t, &v, &reuse, normEntry)
		}
	})
	t.Run("ConfChange", func(t *testing.T) {
		var reuse ConfChange
		for _, v := range sampleConfChanges() {
			checkRoundTrip(t, &v, &reuse, normConfChange)
		}
	})
	t.Run("Config", func(t *testing.T) {
		var reuse Config
		for _, v := range sampleConfigs() {
			checkRoundTrip(t, &v, &reuse, normConfig)
		}
	})
	t.Run("HardState", func(t *testing.T) {
		var reuse HardState
		for _, v := range sampleHardStates() {
			checkRoundTrip(t, &v, &reuse, normHardState)
		}
	})
	t.Run("Meta", func(t *testing.T) {
		var reuse Meta
		for _, v := range sampleMetas() {
			checkRoundTrip(t, &v, &reuse, normMeta)
		}
	})
	t.Run("Snapshot", func(t *testing.T) {
		var reuse Snapshot
		for _, v := range sampleSnapshots() {
			checkRoundTrip(t, &v, &reuse, normSnapshot)
		}
	})
	t.Run("Message", func(t *testing.T) {
		var reuse Message
		for _, v := range sampleMessages() {
			checkRoundTrip(t, &v, &reuse, normMessage)
		}
	})
	t.Run("Frame", func(t *testing.T) {
		msgs := sampleMessages()
		for _, batch := range [][]Message{nil, {}, msgs[:1], msgs[2:3], msgs} {
			checkFrame(t, batch)
		}
	})
}

// checkFrame round-trips msgs through AppendMessages and DecodeMessages.
func checkFrame(t testing.TB, msgs []Message) []byte {
	t.Helper()
	prefix := []byte{0xff, 0xee}
	b := AppendMessages(bytes.Clone(prefix), msgs)
	if !bytes.HasPrefix(b, prefix) {
		t.Fatalf("AppendMessages overwrote its prefix: %x", b[:2])
	}
	frame := b[len(prefix):]
	got, err := DecodeMessages(frame)
	if err != nil {
		t.Fatalf("DecodeMessages of %d messages: %v", len(msgs), err)
	}
	var want []Message
	for _, m := range msgs {
		want = append(want, normMessage(m))
	}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("frame round trip of %d messages:\n got %+v\nwant %+v", len(msgs), got, want)
	}
	if re := AppendMessages(nil, got); !bytes.Equal(re, frame) {
		t.Fatalf("frame re-encoding differs")
	}
	return frame
}

// TestSnapshotPresence checks that a nil Snapshot and an empty one stay
// distinct.
func TestSnapshotPresence(t *testing.T) {
	for _, s := range []*Snapshot{nil, {}} {
		m := Message{Type: MsgSnapshot, Snapshot: s}
		var got Message
		if err := got.Unmarshal(m.Marshal()); err != nil {
			t.Fatal(err)
		}
		if (got.Snapshot == nil) != (s == nil) {
			t.Fatalf("Snapshot %v decoded as %v", s, got.Snapshot)
		}
	}
}

// TestEncodingIsCompact pins the sizes of common messages so that changes
// to the format that make them larger are noticed.
func TestEncodingIsCompact(t *testing.T) {
	hb := Message{Type: MsgHeartbeat, Group: 1000, From: 1, To: 3, Ballot: Ballot{7, 1}, Chosen: 100000, Seq: 88}
	// version, type, present, group(2), from, to, round, node, chosen(3), seq
	if got := len(hb.Marshal()); got != 13 {
		t.Errorf("heartbeat encodes in %d bytes, want 13", got)
	}
	if got := len((&Message{}).Marshal()); got != 3 {
		t.Errorf("zero message encodes in %d bytes, want 3", got)
	}
	if got := len((&HardState{}).Marshal()); got != 4 {
		t.Errorf("zero hard state encodes in %d bytes, want 4", got)
	}
}

// Random values.

func randU64(r *rand.Rand) uint64 {
	switch r.IntN(6) {
	case 0:
		return 0
	case 1:
		return uint64(r.IntN(128))
	case 2:
		return uint64(r.IntN(1 << 16))
	case 3:
		return max64 - uint64(r.IntN(3))
	case 4:
		return r.Uint64() >> r.IntN(64)
	}
	return r.Uint64()
}

func randBallot(r *rand.Rand) Ballot { return Ballot{randU64(r), randU64(r)} }

func randBytes(r *rand.Rand) []byte {
	switch r.IntN(5) {
	case 0:
		return nil
	case 1:
		return []byte{}
	case 2:
		return data(1+r.IntN(8), byte(r.Uint32()))
	}
	return data(r.IntN(300), byte(r.Uint32()))
}

func randIDs(r *rand.Rand) []uint64 {
	switch r.IntN(4) {
	case 0:
		return nil
	case 1:
		return []uint64{}
	}
	ids := make([]uint64, r.IntN(8))
	for i := range ids {
		ids[i] = randU64(r)
	}
	return ids
}

func randEntry(r *rand.Rand) Entry {
	return Entry{Slot: randU64(r), Ballot: randBallot(r), Type: EntryType(r.IntN(int(maxEntryType) + 1)), Data: randBytes(r)}
}

func randConfig(r *rand.Rand) Config { return Config{Voters: randIDs(r), Learners: randIDs(r)} }

func randSnapshot(r *rand.Rand) Snapshot {
	return Snapshot{Meta: Meta{Index: randU64(r), Config: randConfig(r)}, Data: randBytes(r)}
}

func randMessage(r *rand.Rand) Message {
	m := Message{
		Type: MessageType(r.IntN(int(maxMessageType) + 1)), Group: randU64(r), From: randU64(r), To: randU64(r),
		Ballot: randBallot(r), Index: randU64(r), LastIndex: randU64(r), Chosen: randU64(r), Seq: randU64(r),
		Reject: RejectReason(r.IntN(int(maxRejectReason) + 1)), Hint: randBallot(r), Transfer: randBallot(r),
		Trace: randBytes(r), Epoch: randU64(r),
	}
	switch r.IntN(4) {
	case 0:
	case 1:
		m.Entries = []Entry{}
	default:
		m.Entries = make([]Entry, r.IntN(20))
		for i := range m.Entries {
			m.Entries[i] = randEntry(r)
		}
	}
	if r.IntN(3) == 0 {
		s := randSnapshot(r)
		m.Snapshot = &s
	}
	return m
}

// TestRandomRoundTrip round-trips random values of every type. Rerun a
// failure with go test -run TestRandomRoundTrip -args -paxospb.seed=N.
func TestRandomRoundTrip(t *testing.T) {
	seed := *seedFlag
	if seed == 0 {
		seed = uint64(time.Now().UnixNano())
	}
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("seed %d (rerun with -args -paxospb.seed=%d)", seed, seed)
		}
	})
	r := rand.New(rand.NewPCG(seed, seed^0x5eed))
	var (
		m  Message
		e  Entry
		cc ConfChange
		c  Config
		hs HardState
		me Meta
		s  Snapshot
	)
	var batch []Message
	for i := range 10000 {
		msg := randMessage(r)
		checkRoundTrip(t, &msg, &m, normMessage)
		batch = append(batch, msg)
		if len(batch) == 1+i%13 {
			checkFrame(t, batch)
			batch = batch[:0]
		}

		ent := randEntry(r)
		checkRoundTrip(t, &ent, &e, normEntry)
		conf := ConfChange{Type: ConfChangeType(r.IntN(int(maxConfChangeType) + 1)), Replica: randU64(r)}
		checkRoundTrip(t, &conf, &cc, normConfChange)
		cfg := randConfig(r)
		checkRoundTrip(t, &cfg, &c, normConfig)
		hard := HardState{Promised: randBallot(r), Chosen: randU64(r)}
		checkRoundTrip(t, &hard, &hs, normHardState)
		snap := randSnapshot(r)
		checkRoundTrip(t, &snap.Meta, &me, normMeta)
		checkRoundTrip(t, &snap, &s, normSnapshot)
	}
}

// decoders decodes each encoded type, by name.
var decoders = map[string]func([]byte) error{
	"Entry":      func(b []byte) error { var x Entry; return x.Unmarshal(b) },
	"ConfChange": func(b []byte) error { var x ConfChange; return x.Unmarshal(b) },
	"Config":     func(b []byte) error { var x Config; return x.Unmarshal(b) },
	"HardState":  func(b []byte) error { var x HardState; return x.Unmarshal(b) },
	"Meta":       func(b []byte) error { var x Meta; return x.Unmarshal(b) },
	"Snapshot":   func(b []byte) error { var x Snapshot; return x.Unmarshal(b) },
	"Message":    func(b []byte) error { var x Message; return x.Unmarshal(b) },
	"Messages":   func(b []byte) error { _, err := DecodeMessages(b); return err },
}

type sample struct {
	kind string
	enc  []byte
}

func allSamples() []sample {
	var out []sample
	for _, v := range sampleEntries() {
		out = append(out, sample{"Entry", v.Marshal()})
	}
	for _, v := range sampleConfChanges() {
		out = append(out, sample{"ConfChange", v.Marshal()})
	}
	for _, v := range sampleConfigs() {
		out = append(out, sample{"Config", v.Marshal()})
	}
	for _, v := range sampleHardStates() {
		out = append(out, sample{"HardState", v.Marshal()})
	}
	for _, v := range sampleMetas() {
		out = append(out, sample{"Meta", v.Marshal()})
	}
	for _, v := range sampleSnapshots() {
		out = append(out, sample{"Snapshot", v.Marshal()})
	}
	msgs := sampleMessages()
	for _, v := range msgs {
		out = append(out, sample{"Message", v.Marshal()})
	}
	out = append(out, sample{"Messages", AppendMessages(nil, nil)})
	out = append(out, sample{"Messages", AppendMessages(nil, msgs[:8])})
	return out
}

// TestTruncation checks that every proper prefix of a valid encoding fails
// to decode with an ErrCorrupt error, and that so does a valid encoding with
// a byte appended. Long encodings are cut at a sample of lengths.
func TestTruncation(t *testing.T) {
	for _, s := range allSamples() {
		decode := decoders[s.kind]
		if err := decode(s.enc); err != nil {
			t.Fatalf("%s %x: %v", s.kind, s.enc, err)
		}
		step := 1
		if len(s.enc) > 4096 {
			step = 97
		}
		for i := 0; i < len(s.enc); i += step {
			checkCorrupt(t, s.kind, s.enc[:i], "")
		}
		for i := max(0, len(s.enc)-64); i < len(s.enc); i++ {
			checkCorrupt(t, s.kind, s.enc[:i], "")
		}
		checkCorrupt(t, s.kind, append(bytes.Clone(s.enc), 0), "1 trailing bytes")
	}
}

// checkCorrupt checks that decoding in as kind fails with an ErrCorrupt
// error whose text contains want.
func checkCorrupt(t *testing.T, kind string, in []byte, want string) error {
	t.Helper()
	err := decoders[kind](in)
	if err == nil {
		t.Fatalf("%s %x: decoded without error", kind, in)
	}
	if !errors.Is(err, ErrCorrupt) {
		t.Fatalf("%s %x: error %q does not match ErrCorrupt", kind, in, err)
	}
	if !strings.Contains(err.Error(), want) {
		t.Fatalf("%s %x: error %q does not contain %q", kind, in, err, want)
	}
	return err
}

// cat concatenates byte slices and uvarints (given as uint64 or int).
func cat(parts ...any) []byte {
	var b []byte
	for _, p := range parts {
		switch p := p.(type) {
		case []byte:
			b = append(b, p...)
		case string:
			b = append(b, p...)
		case byte:
			b = append(b, p)
		case uint64:
			b = binary.AppendUvarint(b, p)
		case int:
			b = binary.AppendUvarint(b, uint64(p))
		default:
			panic("cat: bad part")
		}
	}
	return b
}

func TestMalformed(t *testing.T) {
	const v = byte(formatVersion)
	accept := Message{Type: MsgAccept, Group: 1, Entries: entries(2, 4, 1)}
	tests := []struct {
		kind string
		in   []byte
		want string
	}{
		{"Message", nil, "Message.version at byte 0: truncated"},
		{"Message", cat(v), "Message.Type at byte 1: truncated"},
		{"Message", cat(v, byte(MsgAccept)), "Message.present at byte 2: truncated"},
		{"Message", cat(v, byte(200), 0), "Message.Type at byte 1: unknown message type 200"},
		{"Message", cat(v, byte(msgTypeCount), 0), "unknown message type"},
		{"Message", cat(v, byte(1), 1<<18), "Message.present at byte 2: unknown field bits 1000000000000000000"},
		{"Message", cat(v, byte(1), msgGroup, 0), "Message.Group at byte 3: zero value marked present"},
		{"Message", cat(v, byte(1), msgGroup, []byte{0x81, 0x00}), "Message.Group at byte 3: varint not minimally encoded"},
		{"Message", cat(v, byte(1), msgGroup, bytes.Repeat([]byte{0xff}, 10), byte(1)), "Message.Group at byte 3: varint overflows 64 bits"},
		{"Message", cat(v, byte(1), msgGroup, []byte{0xff, 0xff}), "Message.Group at byte 3: truncated"},
		{"Message", cat(v, byte(1), msgEntries, uint64(1)<<60, make([]byte, 10)), "Message.len(Entries) at byte 4: count 1152921504606846976 exceeds"},
		{"Message", cat(v, byte(1), msgEntries, uint64(max64), make([]byte, 10)), "Message.len(Entries)"},
		{"Message", cat(v, byte(1), msgEntries, 0), "Message.len(Entries) at byte 4: zero value marked present"},
		{"Message", cat(v, byte(1), msgEntries, 1, 1, 1, 1, byte(EntryNormal), 1<<40, "xx"), "Message.Entries[0].Data at byte 9: length 1099511627776 exceeds the remaining 2 bytes"},
		{"Message", cat(v, byte(1), msgEntries, 2, 1, 1, 1, byte(1), 0, 2, 1, 1, byte(9), 0), "Message.Entries[1].Type at byte 13: unknown entry type 9"},
		{"Message", cat(v, byte(1), msgReject, byte(0)), "Message.Reject at byte 4: zero value marked present"},
		{"Message", cat(v, byte(1), msgReject, byte(99)), "Message.Reject at byte 4: unknown reject reason 99"},
		{"Message", cat(v, byte(1), msgTrace, 0), "Message.Trace at byte 4: zero value marked present"},
		{"Message", cat(v, byte(1), msgSnapshot, 1, uint64(1)<<60, "abc"), "Message.Snapshot.Meta.Config.len(Voters) at byte 6: count"},
		{"Message", cat(v, byte(1), msgSnapshot, 1, 1, 5, 1, []byte{0x80}), "Message.Snapshot.Meta.Config.Learners[0] at byte 9: truncated"},
		{"Message", cat(v, byte(1), msgSnapshot, []byte{0x80}), "Message.Snapshot.Meta.Index at byte 5: truncated"},
		{"Message", cat(v, byte(1), msgSnapshot, 1, 0, 0, 9, "abc"), "Message.Snapshot.Data at byte 8: length 9 exceeds"},
		{"Message", cat(v, byte(1), 0, byte(0)), "Message at byte 3: 1 trailing bytes"},
		{"Message", cat(byte(0), byte(1), 0), "Message.version at byte 0: unknown format version 0"},
		{"Message", cat(byte(2), byte(1), 0), "unknown format version 2"},
		{"Entry", cat(v, 1, 1, 1, byte(4), 0), "Entry.Type at byte 4: unknown entry type 4"},
		{"Entry", cat(v, 1, 1, 1, byte(1), 3, "ab"), "Entry.Data at byte 5: length 3 exceeds the remaining 2 bytes"},
		{"Entry", cat(byte(7)), "Entry.version at byte 0: unknown format version 7"},
		{"ConfChange", cat(byte(ConfRemove+1), 1), "ConfChange.Type at byte 0: unknown conf change type 4"},
		{"Config", cat(3, 1, 2), "Config.len(Voters) at byte 0: count 3 exceeds what the remaining 2 bytes can hold"},
		{"Config", cat(1, 1, 2, 1, []byte{0x80}), "Config.Learners[1] at byte 4: truncated"},
		{"HardState", cat(byte(2), 0, 0, 0), "HardState.version at byte 0: unknown format version 2"},
		{"HardState", cat(v, 0, 0, []byte{0x80, 0x80, 0x00}), "HardState.Chosen at byte 3: varint not minimally encoded"},
		{"Meta", cat(v, 1, 0, 1<<62), "Meta.Config.len(Learners) at byte 3: count"},
		{"Snapshot", cat(0, 0, 0, 1), "Snapshot.Data at byte 3: length 1 exceeds"},
		{"Messages", nil, "Messages.version at byte 0: truncated"},
		{"Messages", cat(byte(2), 0), "Messages.version at byte 0: unknown format version 2"},
		{"Messages", cat(byte(frameVersion), uint64(1)<<60, "0123456789"), "Messages.count at byte 1: count 1152921504606846976 exceeds"},
		{"Messages", cat(byte(frameVersion), 3, make([]byte, 11)), "Messages.count at byte 1: count 3 exceeds what the remaining 11 bytes can hold"},
		{"Messages", cat(byte(frameVersion), 1, 50, v, byte(1), 0), "Messages[0].length at byte 2: length 50 exceeds the remaining 3 bytes"},
		{"Messages", cat(byte(frameVersion), 1, 2, v, byte(1), 0), "Messages[0].present at byte 5: truncated"},
		{"Messages", cat(byte(frameVersion), 1, 4, v, byte(1), 0, 0), "Messages[0] at byte 6: 1 trailing bytes"},
		{"Messages", cat(byte(frameVersion), 1, 3, byte(9), byte(1), 0), "Messages[0].version at byte 3: unknown format version 9"},
		{"Messages", cat(byte(frameVersion), 2, 3, v, byte(1), 0, accept.Size()-1, accept.Marshal()[:accept.Size()-1]),
			"Messages[1].Entries[1].Data at byte 26: length 4 exceeds the remaining 3 bytes"},
		{"Messages", cat(byte(frameVersion), 0, 0), "Messages at byte 2: 1 trailing bytes"},
	}
	for _, tt := range tests {
		checkCorrupt(t, tt.kind, tt.in, tt.want)
	}

	var m Message
	err := m.Unmarshal(cat(byte(9), byte(1), 0))
	if !errors.Is(err, ErrUnknownVersion) {
		t.Errorf("unknown version: error %v does not match ErrUnknownVersion", err)
	}
	err = m.Unmarshal(cat(v, byte(1), 0, 0))
	if errors.Is(err, ErrUnknownVersion) {
		t.Errorf("trailing bytes: error %v matches ErrUnknownVersion", err)
	}
}

// TestHugeCountsDoNotAllocate checks that claimed counts and lengths are
// checked against the input before anything is allocated for them.
func TestHugeCountsDoNotAllocate(t *testing.T) {
	inputs := []struct {
		kind string
		in   []byte
	}{
		{"Message", cat(byte(formatVersion), byte(1), msgEntries, 1<<24, make([]byte, 100))},
		{"Message", cat(byte(formatVersion), byte(1), msgTrace, 1<<30, make([]byte, 100))},
		{"Config", cat(1<<26, make([]byte, 100))},
		{"Messages", cat(byte(frameVersion), 1<<26, make([]byte, 100))},
	}
	for _, in := range inputs {
		var before, after runtime.MemStats
		runtime.ReadMemStats(&before)
		for range 10 {
			checkCorrupt(t, in.kind, in.in, "exceeds")
		}
		runtime.ReadMemStats(&after)
		if n := after.TotalAlloc - before.TotalAlloc; n > 1<<16 {
			t.Errorf("%s: decoding a huge claimed count allocated %d bytes", in.kind, n)
		}
	}
}

func TestUnmarshalErrorLeavesValue(t *testing.T) {
	orig := sampleMessages()[6]
	m := orig
	enc := orig.Marshal()
	if err := m.Unmarshal(enc[:len(enc)-1]); err == nil {
		t.Fatal("truncated message decoded")
	}
	if !reflect.DeepEqual(m, orig) {
		t.Fatal("failed Unmarshal changed the message")
	}
}

// TestUnmarshalCopies checks that decoded byte fields do not alias the
// input and cannot overwrite each other through append.
func TestUnmarshalCopies(t *testing.T) {
	orig := sampleMessages()[6]
	enc := orig.Marshal()
	var m Message
	if err := m.Unmarshal(enc); err != nil {
		t.Fatal(err)
	}
	clear(enc)
	if !reflect.DeepEqual(m, orig) {
		t.Fatal("decoded message changed with its input")
	}
	for i := range m.Entries {
		d := m.Entries[i].Data
		if cap(d) != len(d) {
			t.Fatalf("Entries[%d].Data has spare capacity %d", i, cap(d)-len(d))
		}
		m.Entries[i].Data = append(d, 0xAA)
	}
	m.Trace = append(m.Trace, 0xAA)
	for i := range m.Entries {
		if !bytes.Equal(m.Entries[i].Data[:len(orig.Entries[i].Data)], orig.Entries[i].Data) {
			t.Fatalf("appending to one field changed Entries[%d].Data", i)
		}
	}

	var e Entry
	enc = sampleEntries()[5].Marshal()
	if err := e.Unmarshal(enc); err != nil {
		t.Fatal(err)
	}
	clear(enc)
	if !bytes.Equal(e.Data, sampleEntries()[5].Data) {
		t.Fatal("decoded entry changed with its input")
	}
}

// Fuzz tests. Each checks that decoding never panics, that every error
// matches ErrCorrupt, and that whatever decodes re-encodes to the same bytes
// and decodes to the same value again.

func FuzzUnmarshalMessage(f *testing.F) {
	for _, m := range sampleMessages() {
		if m.Size() < 4096 {
			f.Add(m.Marshal())
		}
	}
	f.Add([]byte{})
	f.Add([]byte{formatVersion, 1, 0xff, 0xff, 0x07})
	f.Fuzz(func(t *testing.T, in []byte) {
		fuzzCodec[Message](t, in)
	})
}

func FuzzUnmarshalEntry(f *testing.F) {
	for _, e := range sampleEntries() {
		if e.Size() < 4096 {
			f.Add(e.Marshal())
		}
	}
	f.Add([]byte{formatVersion, 0x80})
	f.Fuzz(func(t *testing.T, in []byte) {
		fuzzCodec[Entry](t, in)
	})
}

// FuzzUnmarshalOther covers the remaining types; the first byte picks one.
func FuzzUnmarshalOther(f *testing.F) {
	for _, c := range sampleConfChanges() {
		f.Add(append([]byte{0}, c.Marshal()...))
	}
	for _, c := range sampleConfigs()[:5] {
		f.Add(append([]byte{1}, c.Marshal()...))
	}
	for _, h := range sampleHardStates() {
		f.Add(append([]byte{2}, h.Marshal()...))
	}
	for _, m := range sampleMetas()[:5] {
		f.Add(append([]byte{3}, m.Marshal()...))
	}
	for _, s := range sampleSnapshots()[:3] {
		f.Add(append([]byte{4}, s.Marshal()...))
	}
	f.Fuzz(func(t *testing.T, in []byte) {
		if len(in) == 0 {
			return
		}
		switch in[0] % 5 {
		case 0:
			fuzzCodec[ConfChange](t, in[1:])
		case 1:
			fuzzCodec[Config](t, in[1:])
		case 2:
			fuzzCodec[HardState](t, in[1:])
		case 3:
			fuzzCodec[Meta](t, in[1:])
		case 4:
			fuzzCodec[Snapshot](t, in[1:])
		}
	})
}

func fuzzCodec[T any, P codec[T]](t *testing.T, in []byte) {
	var x T
	if err := P(&x).Unmarshal(in); err != nil {
		if !errors.Is(err, ErrCorrupt) {
			t.Fatalf("error %q does not match ErrCorrupt", err)
		}
		return
	}
	enc := P(&x).Marshal()
	if !bytes.Equal(enc, in) {
		t.Fatalf("decode then encode is not canonical:\n  in %x\n out %x", in, enc)
	}
	if P(&x).Size() != len(enc) {
		t.Fatalf("Size() = %d, encoding has %d bytes", P(&x).Size(), len(enc))
	}
	var y T
	if err := P(&y).Unmarshal(enc); err != nil {
		t.Fatalf("re-decoding: %v", err)
	}
	if !reflect.DeepEqual(x, y) {
		t.Fatalf("re-decoded value differs:\n%+v\n%+v", x, y)
	}
}

func FuzzDecodeMessages(f *testing.F) {
	msgs := sampleMessages()
	f.Add(AppendMessages(nil, nil))
	f.Add(AppendMessages(nil, msgs[:3]))
	f.Add(AppendMessages(nil, msgs[5:11]))
	f.Add(AppendMessages(nil, msgs[12:13]))
	f.Fuzz(func(t *testing.T, in []byte) {
		got, err := DecodeMessages(in)
		if err != nil {
			if !errors.Is(err, ErrCorrupt) {
				t.Fatalf("error %q does not match ErrCorrupt", err)
			}
			return
		}
		enc := AppendMessages(nil, got)
		if !bytes.Equal(enc, in) {
			t.Fatalf("decode then encode is not canonical:\n  in %x\n out %x", in, enc)
		}
		again, err := DecodeMessages(enc)
		if err != nil {
			t.Fatalf("re-decoding: %v", err)
		}
		if !reflect.DeepEqual(got, again) {
			t.Fatalf("re-decoded frame differs")
		}
	})
}

// Benchmarks.

func benchAccept() Message {
	return Message{
		Type: MsgAccept, Group: 12345, From: 1, To: 2, Ballot: Ballot{7, 1},
		Index: 1000, LastIndex: 1015, Chosen: 999, Entries: entries(16, 64, 1000),
	}
}

func benchHeartbeats(n int) []Message {
	msgs := make([]Message, n)
	for i := range msgs {
		msgs[i] = Message{Type: MsgHeartbeat, Group: uint64(1000 + i), From: 1, To: 2, Ballot: Ballot{7, 1}, Chosen: 100000 + uint64(i), Seq: 88}
	}
	return msgs
}

func BenchmarkMessageMarshal(b *testing.B) {
	m := benchAccept()
	b.SetBytes(int64(m.Size()))
	b.ReportAllocs()
	for b.Loop() {
		_ = m.Marshal()
	}
}

func BenchmarkMessageAppend(b *testing.B) {
	m := benchAccept()
	buf := make([]byte, 0, m.Size())
	b.SetBytes(int64(m.Size()))
	b.ReportAllocs()
	for b.Loop() {
		buf = m.Append(buf[:0])
	}
}

func BenchmarkMessageUnmarshal(b *testing.B) {
	m := benchAccept()
	enc := m.Marshal()
	b.SetBytes(int64(len(enc)))
	b.ReportAllocs()
	var got Message
	for b.Loop() {
		if err := got.Unmarshal(enc); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkAppendMessagesHeartbeats(b *testing.B) {
	msgs := benchHeartbeats(100)
	buf := AppendMessages(nil, msgs)
	b.SetBytes(int64(len(buf)))
	b.ReportAllocs()
	for b.Loop() {
		buf = AppendMessages(buf[:0], msgs)
	}
}

func BenchmarkDecodeMessagesHeartbeats(b *testing.B) {
	frame := AppendMessages(nil, benchHeartbeats(100))
	b.SetBytes(int64(len(frame)))
	b.ReportAllocs()
	for b.Loop() {
		if _, err := DecodeMessages(frame); err != nil {
			b.Fatal(err)
		}
	}
}
