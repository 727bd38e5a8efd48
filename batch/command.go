package batch

import (
	"encoding/binary"
	"errors"
	"fmt"
)

// Op names what a Command does to the key-value state.
type Op uint8

const (
	OpPut Op = iota + 1
	OpDelete
	// OpCAS writes Value (or deletes, with Delete) if the key holds
	// Expected, or is absent with ExpectAbsent.
	OpCAS
	// OpBatch applies Ops (puts and deletes) atomically.
	OpBatch
	opMax = OpBatch
)

// Command is one client write. Node and Seq identify it so that the node
// that proposed it can hand the result to the waiting client once it is
// applied; every replica applies it the same way.
type Command struct {
	Node, Seq    uint64
	Op           Op
	Key, Value   []byte
	Expected     []byte
	ExpectAbsent bool
	Delete       bool
	Ops          []Command // OpBatch only: puts and deletes, without Node and Seq
	// Checks (OpBatch only) must all hold when the batch is applied, or
	// none of its Ops is: the fencing compare of a conditional batch.
	Checks []Check
}

// Check is one condition of a conditional batch: Key holds Expected, or,
// with ExpectAbsent, does not exist.
type Check struct {
	Key, Expected []byte
	ExpectAbsent  bool
}

// Result is what applying a Command returned.
type Result struct {
	// Found reports whether the key existed before the command (delete,
	// CAS); Value is what it held (CAS).
	Found     bool
	Value     []byte
	Succeeded bool
	// FailedCheck is, for a batch whose checks did not all hold, the index
	// of the first failing one plus one; zero otherwise.
	FailedCheck int
}

// ErrCorrupt is returned for a value that is not a valid encoding.
var ErrCorrupt = errors.New("batch: corrupt command encoding")

const valueVersion = 1

// Encode appends the encoding of cmds as one Paxos value.
func Encode(b []byte, cmds []Command) []byte {
	b = append(b, valueVersion)
	b = binary.AppendUvarint(b, uint64(len(cmds)))
	for i := range cmds {
		b = cmds[i].append(b)
	}
	return b
}

const (
	flagExpectAbsent = 1 << iota
	flagDelete
	// flagChecks says a count of checks follows the ops. Commands without
	// checks never set it, so their encoding is what it was before checks
	// existed, and values written then decode unchanged.
	flagChecks
)

func (c *Command) append(b []byte) []byte {
	b = binary.AppendUvarint(b, c.Node)
	b = binary.AppendUvarint(b, c.Seq)
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
	b = binary.AppendUvarint(b, uint64(len(c.Ops)))
	for i := range c.Ops {
		b = c.Ops[i].append(b)
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

// Decode decodes a value written by Encode. The commands alias data.
func Decode(data []byte) ([]Command, error) {
	d := decoder{b: data}
	if v := d.byte(); v != valueVersion {
		return nil, fmt.Errorf("%w: version %d", ErrCorrupt, v)
	}
	n := d.count()
	cmds := make([]Command, 0, n)
	for range n {
		cmds = append(cmds, d.command(0))
	}
	if d.err != nil {
		return nil, d.err
	}
	if len(d.b) != 0 {
		return nil, fmt.Errorf("%w: %d trailing bytes", ErrCorrupt, len(d.b))
	}
	return cmds, nil
}

type decoder struct {
	b   []byte
	err error
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
	c.Node = d.uvarint()
	c.Seq = d.uvarint()
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
	n := d.count()
	if n > 0 && depth > 0 {
		d.fail("nested batch")
		return c
	}
	for range n {
		c.Ops = append(c.Ops, d.command(depth+1))
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
