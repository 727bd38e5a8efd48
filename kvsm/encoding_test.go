package kvsm

import (
	"errors"
	"math/rand/v2"
	"reflect"
	"testing"
)

func randBytes(r *rand.Rand) []byte {
	if r.IntN(4) == 0 {
		return nil
	}
	b := make([]byte, 1+r.IntN(20))
	for i := range b {
		b[i] = byte(r.Uint32())
	}
	return b
}

func randCommand(r *rand.Rand, nested bool) Command {
	c := Command{Op: Op(1 + r.IntN(int(opMax))),
		Key: randBytes(r), Value: randBytes(r), Expected: randBytes(r),
		ExpectAbsent: r.IntN(2) == 0, Delete: r.IntN(2) == 0}
	if c.Op == OpBatch && !nested {
		for range r.IntN(4) {
			c.Ops = append(c.Ops, randCommand(r, true))
		}
		for range r.IntN(3) {
			c.Checks = append(c.Checks, Check{Key: randBytes(r), Expected: randBytes(r), ExpectAbsent: r.IntN(2) == 0})
		}
	}
	if nested {
		c.Op = OpPut
	} else {
		c.Proposer = Proposer{Node: r.Uint64N(10), Incarnation: r.Uint64N(5), Seq: r.Uint64()}
		c.Session = Session{ClientID: r.Uint64(), Seq: r.Uint64N(1000), AckedBelow: r.Uint64N(1000)}
	}
	if c.Op == OpSplit {
		c.Session, c.NewRange = Session{}, r.Uint64()
	}
	return c
}

func TestRoundTrip(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	for i := range 2000 {
		var cmds []Command
		for range r.IntN(5) {
			cmds = append(cmds, randCommand(r, false))
		}
		at := r.Int64() - r.Int64()
		got, err := Decode(Encode(nil, at, cmds))
		if err != nil {
			t.Fatalf("case %d: %v", i, err)
		}
		if len(cmds) == 0 {
			cmds = []Command{}
		}
		if got.ProposedAt != at || !reflect.DeepEqual(got.Commands, cmds) {
			t.Fatalf("case %d: got %+v, want %+v", i, got, cmds)
		}
	}
}

func TestDecodeRejectsTruncationsAndGarbage(t *testing.T) {
	r := rand.New(rand.NewPCG(3, 4))
	enc := Encode(nil, 0, []Command{randCommand(r, false), randCommand(r, false)})
	for i := range len(enc) {
		if _, err := Decode(enc[:i]); !errors.Is(err, ErrCorrupt) {
			t.Fatalf("prefix of %d bytes: %v", i, err)
		}
	}
	if _, err := Decode(append(enc, 0)); !errors.Is(err, ErrCorrupt) {
		t.Fatalf("trailing byte accepted: %v", err)
	}
	nested := Encode(nil, 0, []Command{{Op: OpBatch, Ops: []Command{{Op: OpBatch, Ops: []Command{{Op: OpPut}}}}}})
	if _, err := Decode(nested); !errors.Is(err, ErrCorrupt) {
		t.Fatalf("nested batch accepted: %v", err)
	}
}

func FuzzDecode(f *testing.F) {
	r := rand.New(rand.NewPCG(5, 6))
	f.Add(Encode(nil, 0, []Command{randCommand(r, false)}))
	f.Add([]byte{1, 0xff, 0xff, 0xff, 0xff, 0x0f})
	f.Add([]byte{2, 0, 0xff, 0xff, 0xff, 0xff, 0x0f})
	f.Fuzz(func(t *testing.T, data []byte) {
		v, err := Decode(data)
		if err != nil || data[0] != valueV2 {
			return // version 1 values re-encode as version 2
		}
		again, err := Decode(Encode(nil, v.ProposedAt, v.Commands))
		if err != nil {
			t.Fatalf("re-encoding a decoded value failed: %v", err)
		}
		if !reflect.DeepEqual(again, v) {
			t.Fatalf("re-encoding changed the value: %+v, then %+v", v, again)
		}
	})
}

// TestDecodesVersion1Values pins the encoding of version 1, as written
// before sessions existed: such values sit in logs and must decode as
// they did.
func TestDecodesVersion1Values(t *testing.T) {
	old := []byte{
		1,    // version
		1,    // one command
		7, 9, // node, seq
		byte(OpBatch), 0, // op, flags
		0, 0, 0, // key, value, expected
		1,    // one op
		0, 0, // node, seq
		byte(OpPut), 0, // op, flags
		1, 'k', 1, 'v', 0, // key, value, expected
		0, // no ops
	}
	want := []Command{{Proposer: Proposer{Node: 7, Seq: 9}, Op: OpBatch, Ops: []Command{{Op: OpPut, Key: []byte("k"), Value: []byte("v")}}}}
	got, err := Decode(old)
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(got.Commands, want) {
		t.Fatalf("got %+v, want %+v", got, want)
	}
}

func TestChecksRoundTripAndAreRejectedOutsideBatches(t *testing.T) {
	cmds := []Command{{Op: OpBatch, Ops: []Command{{Op: OpPut, Key: []byte("a"), Value: []byte("1")}},
		Checks: []Check{{Key: []byte("m/rev"), Expected: []byte{0, 1}}, {Key: []byte("x"), ExpectAbsent: true}}}}
	got, err := Decode(Encode(nil, 0, cmds))
	if err != nil || !reflect.DeepEqual(got.Commands, cmds) {
		t.Fatalf("got %+v (%v), want %+v", got, err, cmds)
	}
	// A put carrying checks is not something the encoder is asked to
	// write; if a value claims one, it is corrupt.
	bad := Encode(nil, 0, []Command{{Op: OpPut, Key: []byte("k"), Checks: []Check{{Key: []byte("k")}}}})
	if _, err := Decode(bad); !errors.Is(err, ErrCorrupt) {
		t.Fatalf("checks on a put accepted: %v", err)
	}
	nested := Encode(nil, 0, []Command{{Op: OpBatch, Ops: []Command{{Op: OpPut, Checks: []Check{{Key: []byte("k")}}}}}})
	if _, err := Decode(nested); !errors.Is(err, ErrCorrupt) {
		t.Fatalf("checks on a nested op accepted: %v", err)
	}
}
