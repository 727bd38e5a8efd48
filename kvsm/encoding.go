package kvsm

import (
	"encoding/binary"
	"errors"
	"fmt"
)

// Value is one Paxos value: the commands a leader proposed together, and
// when, on its clock, it proposed them (nanoseconds since the Unix epoch;
// zero if unknown). That time is the state machine's only clock: client
// sessions expire by it, identically on every replica.
type Value struct {
	ProposedAt int64
	Commands   []Command
}

// ErrCorrupt is returned for a value that is not a valid encoding.
var ErrCorrupt = errors.New("kvsm: corrupt command encoding")

// Encoding versions: 1 carried (node, seq) per command and no time; 2
// adds the value's time, the proposer's incarnation and the session.
const (
	valueV1 = 1
	valueV2 = 2
)

// Encode appends the encoding of cmds, proposed at proposedAt, as one
// Paxos value.
func Encode(b []byte, proposedAt int64, cmds []Command) []byte {
	b = append(b, valueV2)
	b = binary.AppendVarint(b, proposedAt)
	b = binary.AppendUvarint(b, uint64(len(cmds)))
	for i := range cmds {
		b = cmds[i].append(b, true)
	}
	return b
}

const (
	flagExpectAbsent = 1 << iota
	flagDelete
	// flagChecks says a count of checks follows the ops.
	flagChecks
)

// append encodes c; top-level commands carry their ids, a batch's ops
// don't.
func (c *Command) append(b []byte, top bool) []byte {
	if top {
		p, s := &c.Proposer, &c.Session
		b = binary.AppendUvarint(b, p.Node)
		b = binary.AppendUvarint(b, p.Incarnation)
		b = binary.AppendUvarint(b, p.Seq)
		b = binary.AppendUvarint(b, s.ClientID)
		b = binary.AppendUvarint(b, s.Seq)
		b = binary.AppendUvarint(b, s.AckedBelow)
	}
	var flags byte
	if c.ExpectAbsent {
		flags |= flagExpectAbsent
	}
	if c.Delete {
		flags |= flagDelete
	}
	if len(c.Checks) > 0 {
		flags |= flagChecks
	}
	b = append(b, byte(c.Op), flags)
	b = appendBytes(b, c.Key)
	b = appendBytes(b, c.Value)
	b = appendBytes(b, c.Expected)
	if c.Op == OpSplit {
		b = binary.AppendUvarint(b, c.NewRange)
	}
	b = binary.AppendUvarint(b, uint64(len(c.Ops)))
	for i := range c.Ops {
		b = c.Ops[i].append(b, false)
	}
	if len(c.Checks) > 0 {
		b = binary.AppendUvarint(b, uint64(len(c.Checks)))
		for _, k := range c.Checks {
			var f byte
			if k.ExpectAbsent {
				f = flagExpectAbsent
			}
			b = append(b, f)
			b = appendBytes(b, k.Key)
			b = appendBytes(b, k.Expected)
		}
	}
	return b
}

func appendBytes(b, v []byte) []byte {
	b = binary.AppendUvarint(b, uint64(len(v)))
	return append(b, v...)
}

// Decode decodes a value written by Encode (or by the version before it).
// The commands alias data.
func Decode(data []byte) (Value, error) {
	d := decoder{b: data}
	var v Value
	switch d.version = d.byte(); d.version {
	case valueV1:
	case valueV2:
		v.ProposedAt = d.varint()
	default:
		return Value{}, fmt.Errorf("%w: version %d", ErrCorrupt, d.version)
	}
	n := d.count()
	v.Commands = make([]Command, 0, n)
	for range n {
		v.Commands = append(v.Commands, d.command(0))
	}
	if d.err != nil {
		return Value{}, d.err
	}
	if len(d.b) != 0 {
		return Value{}, fmt.Errorf("%w: %d trailing bytes", ErrCorrupt, len(d.b))
	}
	return v, nil
}

type decoder struct {
	b       []byte
	version byte
	err     error
}

func (d *decoder) fail(what string) {
	if d.err == nil {
		d.err = fmt.Errorf("%w: %s", ErrCorrupt, what)
	}
	d.b = nil
}

func (d *decoder) byte() byte {
	if len(d.b) == 0 {
		d.fail("truncated")
		return 0
	}
	c := d.b[0]
	d.b = d.b[1:]
	return c
}

func (d *decoder) uvarint() uint64 {
	v, n := binary.Uvarint(d.b)
	if n <= 0 {
		d.fail("bad varint")
		return 0
	}
	d.b = d.b[n:]
	return v
}

// varint reads what binary.AppendVarint wrote: a zig-zag uvarint.
func (d *decoder) varint() int64 {
	u := d.uvarint()
	return int64(u>>1) ^ -int64(u&1)
}

// count reads a count that can't exceed the bytes left, so a corrupt count
// can't make us allocate more than the input.
func (d *decoder) count() int {
	n := d.uvarint()
	if n > uint64(len(d.b)) {
		d.fail("count exceeds input")
		return 0
	}
	return int(n)
}

func (d *decoder) bytes() []byte {
	n := d.count()
	if d.err != nil || n == 0 {
		return nil
	}
	v := d.b[:n:n]
	d.b = d.b[n:]
	return v
}

func (d *decoder) command(depth int) Command {
	var c Command
	switch {
	case d.version == valueV1:
		// Version 1 numbered every command, nested ones too, by (node,
		// seq) alone.
		c.Proposer.Node, c.Proposer.Seq = d.uvarint(), d.uvarint()
	case depth == 0:
		c.Proposer = Proposer{Node: d.uvarint(), Incarnation: d.uvarint(), Seq: d.uvarint()}
		c.Session = Session{ClientID: d.uvarint(), Seq: d.uvarint(), AckedBelow: d.uvarint()}
	}
	c.Op = Op(d.byte())
	flags := d.byte()
	if d.err == nil && (c.Op == 0 || c.Op > opMax) {
		d.fail(fmt.Sprintf("op %d", c.Op))
	}
	c.ExpectAbsent = flags&flagExpectAbsent != 0
	c.Delete = flags&flagDelete != 0
	c.Key = d.bytes()
	c.Value = d.bytes()
	c.Expected = d.bytes()
	if c.Op == OpSplit {
		if depth > 0 || c.Session.ClientID != 0 {
			d.fail("split inside a batch or a session")
			return c
		}
		c.NewRange = d.uvarint()
	}
	n := d.count()
	if n > 0 && depth > 0 {
		d.fail("nested batch")
		return c
	}
	for range n {
		sub := d.command(depth + 1)
		if d.err == nil && sub.Op != OpPut && sub.Op != OpDelete {
			d.fail(fmt.Sprintf("op %d inside a batch", sub.Op))
		}
		c.Ops = append(c.Ops, sub)
	}
	if flags&flagChecks != 0 {
		if depth > 0 || c.Op != OpBatch {
			d.fail("checks outside a batch")
			return c
		}
		n := d.count()
		if d.err == nil && n == 0 {
			d.fail("empty checks") // the encoder never writes that
		}
		for range n {
			var k Check
			k.ExpectAbsent = d.byte()&flagExpectAbsent != 0
			k.Key = d.bytes()
			k.Expected = d.bytes()
			c.Checks = append(c.Checks, k)
		}
	}
	return c
}
