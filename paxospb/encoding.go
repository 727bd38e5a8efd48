package paxospb

import (
	"encoding/binary"
	"errors"
	"math/bits"
	"slices"
	"strconv"
)

// The binary encoding.
//
// Every unsigned integer is a minimally encoded base-128 varint ("uv", as
// written by binary.AppendUvarint). Every byte string is a uv length followed
// by that many bytes. Every enum is one byte. The grammar is:
//
//	Entry      = version EntryBody
//	EntryBody  = Slot:uv Ballot.Round:uv Ballot.Node:uv Type:byte Data:bytes
//	ConfChange = Type:byte Replica:uv
//	Config     = len(Voters):uv Voters:uv* len(Learners):uv Learners:uv*
//	HardState  = version Promised.Round:uv Promised.Node:uv Chosen:uv
//	Meta       = version MetaBody
//	MetaBody   = Index:uv Config
//	Snapshot   = MetaBody Data:bytes
//	Message    = version Type:byte present:uv Field*
//	Frame      = frameVersion count:uv (length:uv Message)*
//
// version and frameVersion are one byte each, currently 1. Message, Entry,
// HardState and Meta carry a version because they are sent or stored on
// their own; Entry and Meta drop it when nested in a Message or Snapshot,
// whose own version covers them. ConfChange, Config and Snapshot carry none.
//
// A Message writes only its non-zero fields. present is a bit set naming
// them, and the fields follow in bit order (see the msg* constants): the
// uint64 fields as uv, Reject as one byte, Entries as a uv count followed by
// that many EntryBody, Snapshot as a Snapshot, and Trace as bytes. The fields
// that nearly every message carries have the low seven bits, so that a
// heartbeat's bit set is one byte.
//
// The encoding is canonical: Unmarshal accepts only what Append writes, so
// decoding and re-encoding reproduces the input byte for byte. It rejects
// non-minimal varints, fields marked present whose value is zero, unknown
// present bits, enum values above the largest this package defines, and
// trailing bytes. Append does not validate enum values; it writes them as
// they are, and Unmarshal rejects the ones it does not know. Neither checks
// that the fields suit the message type.

const (
	// formatVersion is the leading byte of an encoded Message, Entry,
	// HardState or Meta.
	formatVersion = 1
	// frameVersion is the leading byte of a frame written by AppendMessages.
	frameVersion = 1
)

// Bits of a Message's present set, in the order the fields are encoded.
const (
	msgGroup = 1 << iota
	msgFrom
	msgTo
	msgBallotRound
	msgBallotNode
	msgChosen
	msgSeq
	msgIndex
	msgLastIndex
	msgEntries
	msgReject
	msgHintRound
	msgHintNode
	msgTrace
	msgTransferRound
	msgTransferNode
	msgSnapshot
	msgEpoch

	msgAllFields = msgEpoch<<1 - 1
)

// The largest enum values Unmarshal accepts. They must follow the constants
// in types.go.
const (
	maxEntryType      = EntryConfChange
	maxConfChangeType = ConfRemove
	maxMessageType    = msgTypeCount - 1
	maxRejectReason   = RejectNotMember
)

// Lower bounds on encoded sizes, used to refuse counts that the remaining
// input cannot hold before allocating for them.
const (
	minEntryBodySize    = 5 // Slot, Ballot.Round, Ballot.Node, Type, len(Data)
	minMessageSize      = 3 // version, Type, present
	minFramedMessageLen = 1 + minMessageSize
)

// ErrCorrupt is matched (errors.Is) by every error that Unmarshal and
// DecodeMessages return. The error names the field that could not be decoded
// and the byte offset at which it starts.
var ErrCorrupt = errors.New("paxospb: corrupt encoding")

// ErrUnknownVersion is matched (errors.Is), besides ErrCorrupt, by the error
// for an input whose version byte this package does not know, such as one
// written by a newer release.
var ErrUnknownVersion = errors.New("paxospb: unknown format version")

// decodeError is the error of a failed decode.
type decodeError struct {
	// path names the field, outermost first, e.g. "Message.Entries[2].Data".
	path string
	// offset is where the field starts in the input.
	offset int
	reason string
	// version reports an unknown version byte.
	version bool
}

// Error returns the message, naming the field, its offset and the problem.
func (e *decodeError) Error() string {
	return "paxospb: corrupt " + e.path + " at byte " + strconv.Itoa(e.offset) + ": " + e.reason
}

// Unwrap makes errors.Is match ErrCorrupt, and ErrUnknownVersion for an
// unknown version.
func (e *decodeError) Unwrap() []error {
	if e.version {
		return []error{ErrCorrupt, ErrUnknownVersion}
	}
	return []error{ErrCorrupt}
}

// within prefixes the error's field path with the field that contains it.
func (e *decodeError) within(field string) {
	if e.path == "" {
		e.path = field
	} else {
		e.path = field + "." + e.path
	}
}

// uvarintLen returns the encoded length of v.
func uvarintLen(v uint64) int { return (bits.Len64(v|1) + 6) / 7 }

// bytesLen returns the encoded length of the byte string b.
func bytesLen(b []byte) int { return uvarintLen(uint64(len(b))) + len(b) }

// appendBytes appends the byte string v to b.
func appendBytes(b, v []byte) []byte {
	b = binary.AppendUvarint(b, uint64(len(v)))
	return append(b, v...)
}

// Entry.

// bodySize returns the length of x's encoding without the version byte.
func (x *Entry) bodySize() int {
	return uvarintLen(x.Slot) + uvarintLen(x.Ballot.Round) + uvarintLen(x.Ballot.Node) + 1 + bytesLen(x.Data)
}

// appendBody appends x's encoding without the version byte.
func (x *Entry) appendBody(b []byte) []byte {
	b = binary.AppendUvarint(b, x.Slot)
	b = binary.AppendUvarint(b, x.Ballot.Round)
	b = binary.AppendUvarint(b, x.Ballot.Node)
	b = append(b, byte(x.Type))
	return appendBytes(b, x.Data)
}

// Size returns the length of x's encoding.
func (x *Entry) Size() int { return 1 + x.bodySize() }

// Append appends x's encoding to b and returns the extended slice.
func (x *Entry) Append(b []byte) []byte {
	return x.appendBody(append(b, formatVersion))
}

// Marshal returns x's encoding in a new slice.
func (x *Entry) Marshal() []byte { return x.Append(make([]byte, 0, x.Size())) }

// Unmarshal sets x to the Entry encoded in data. It copies Data out of data,
// so the caller may reuse data afterwards; an empty Data decodes as nil. On
// error x is unchanged.
func (x *Entry) Unmarshal(data []byte) error {
	d := decoder{data: data}
	var v Entry
	d.version()
	d.entryBody(&v)
	if err := d.finish("Entry"); err != nil {
		return err
	}
	*x = v
	return nil
}

// ConfChange.

// Size returns the length of x's encoding.
func (x *ConfChange) Size() int { return 1 + uvarintLen(x.Replica) }

// Append appends x's encoding to b and returns the extended slice.
func (x *ConfChange) Append(b []byte) []byte {
	b = append(b, byte(x.Type))
	return binary.AppendUvarint(b, x.Replica)
}

// Marshal returns x's encoding in a new slice.
func (x *ConfChange) Marshal() []byte { return x.Append(make([]byte, 0, x.Size())) }

// Unmarshal sets x to the ConfChange encoded in data. On error x is
// unchanged.
func (x *ConfChange) Unmarshal(data []byte) error {
	d := decoder{data: data}
	var v ConfChange
	v.Type = ConfChangeType(d.enum("Type", uint8(maxConfChangeType), "conf change type"))
	v.Replica = d.uvarint("Replica")
	if err := d.finish("ConfChange"); err != nil {
		return err
	}
	*x = v
	return nil
}

// Config.

// idsSize returns the encoded length of a list of replica ids.
func idsSize(ids []uint64) int {
	n := uvarintLen(uint64(len(ids)))
	for _, id := range ids {
		n += uvarintLen(id)
	}
	return n
}

// appendIDs appends a list of replica ids: its length, then each id.
func appendIDs(b []byte, ids []uint64) []byte {
	b = binary.AppendUvarint(b, uint64(len(ids)))
	for _, id := range ids {
		b = binary.AppendUvarint(b, id)
	}
	return b
}

// Size returns the length of x's encoding.
func (x *Config) Size() int { return idsSize(x.Voters) + idsSize(x.Learners) }

// Append appends x's encoding to b and returns the extended slice.
func (x *Config) Append(b []byte) []byte {
	return appendIDs(appendIDs(b, x.Voters), x.Learners)
}

// Marshal returns x's encoding in a new slice.
func (x *Config) Marshal() []byte { return x.Append(make([]byte, 0, x.Size())) }

// Unmarshal sets x to the Config encoded in data. An empty Voters or
// Learners decodes as nil. On error x is unchanged.
func (x *Config) Unmarshal(data []byte) error {
	d := decoder{data: data}
	var v Config
	d.config(&v)
	if err := d.finish("Config"); err != nil {
		return err
	}
	*x = v
	return nil
}

// HardState.

// Size returns the length of x's encoding.
func (x *HardState) Size() int {
	return 1 + uvarintLen(x.Promised.Round) + uvarintLen(x.Promised.Node) + uvarintLen(x.Chosen)
}

// Append appends x's encoding to b and returns the extended slice.
func (x *HardState) Append(b []byte) []byte {
	b = append(b, formatVersion)
	b = binary.AppendUvarint(b, x.Promised.Round)
	b = binary.AppendUvarint(b, x.Promised.Node)
	return binary.AppendUvarint(b, x.Chosen)
}

// Marshal returns x's encoding in a new slice.
func (x *HardState) Marshal() []byte { return x.Append(make([]byte, 0, x.Size())) }

// Unmarshal sets x to the HardState encoded in data. On error x is
// unchanged.
func (x *HardState) Unmarshal(data []byte) error {
	d := decoder{data: data}
	var v HardState
	d.version()
	v.Promised.Round = d.uvarint("Promised.Round")
	v.Promised.Node = d.uvarint("Promised.Node")
	v.Chosen = d.uvarint("Chosen")
	if err := d.finish("HardState"); err != nil {
		return err
	}
	*x = v
	return nil
}

// Meta.

// bodySize returns the length of x's encoding without the version byte.
func (x *Meta) bodySize() int { return uvarintLen(x.Index) + x.Config.Size() }

// appendBody appends x's encoding without the version byte.
func (x *Meta) appendBody(b []byte) []byte {
	return x.Config.Append(binary.AppendUvarint(b, x.Index))
}

// Size returns the length of x's encoding.
func (x *Meta) Size() int { return 1 + x.bodySize() }

// Append appends x's encoding to b and returns the extended slice.
func (x *Meta) Append(b []byte) []byte { return x.appendBody(append(b, formatVersion)) }

// Marshal returns x's encoding in a new slice.
func (x *Meta) Marshal() []byte { return x.Append(make([]byte, 0, x.Size())) }

// Unmarshal sets x to the Meta encoded in data. An empty Config.Voters or
// Config.Learners decodes as nil. On error x is unchanged.
func (x *Meta) Unmarshal(data []byte) error {
	d := decoder{data: data}
	var v Meta
	d.version()
	d.metaBody(&v)
	if err := d.finish("Meta"); err != nil {
		return err
	}
	*x = v
	return nil
}

// Snapshot.

// Size returns the length of x's encoding.
func (x *Snapshot) Size() int { return x.Meta.bodySize() + bytesLen(x.Data) }

// Append appends x's encoding to b and returns the extended slice.
func (x *Snapshot) Append(b []byte) []byte { return appendBytes(x.Meta.appendBody(b), x.Data) }

// Marshal returns x's encoding in a new slice.
func (x *Snapshot) Marshal() []byte { return x.Append(make([]byte, 0, x.Size())) }

// Unmarshal sets x to the Snapshot encoded in data. It copies Data out of
// data, so the caller may reuse data afterwards; an empty Data, Voters or
// Learners decodes as nil. On error x is unchanged.
func (x *Snapshot) Unmarshal(data []byte) error {
	d := decoder{data: data}
	var v Snapshot
	d.snapshot(&v)
	if err := d.finish("Snapshot"); err != nil {
		return err
	}
	*x = v
	return nil
}

// Message.

// present returns the set of x's fields that are not zero.
func (x *Message) present() uint64 {
	var p uint64
	set := func(bit uint64, nonzero bool) {
		if nonzero {
			p |= bit
		}
	}
	set(msgGroup, x.Group != 0)
	set(msgFrom, x.From != 0)
	set(msgTo, x.To != 0)
	set(msgBallotRound, x.Ballot.Round != 0)
	set(msgBallotNode, x.Ballot.Node != 0)
	set(msgChosen, x.Chosen != 0)
	set(msgSeq, x.Seq != 0)
	set(msgIndex, x.Index != 0)
	set(msgLastIndex, x.LastIndex != 0)
	set(msgEntries, len(x.Entries) != 0)
	set(msgReject, x.Reject != 0)
	set(msgHintRound, x.Hint.Round != 0)
	set(msgHintNode, x.Hint.Node != 0)
	set(msgTrace, len(x.Trace) != 0)
	set(msgTransferRound, x.Transfer.Round != 0)
	set(msgTransferNode, x.Transfer.Node != 0)
	set(msgSnapshot, x.Snapshot != nil)
	set(msgEpoch, x.Epoch != 0)
	return p
}

// optLen returns the encoded length of an optional uint64 field.
func optLen(v uint64) int {
	if v == 0 {
		return 0
	}
	return uvarintLen(v)
}

// appendOpt appends an optional uint64 field, which is absent if zero.
func appendOpt(b []byte, v uint64) []byte {
	if v == 0 {
		return b
	}
	return binary.AppendUvarint(b, v)
}

// Size returns the length of x's encoding.
func (x *Message) Size() int {
	n := 2 + uvarintLen(x.present()) +
		optLen(x.Group) + optLen(x.From) + optLen(x.To) +
		optLen(x.Ballot.Round) + optLen(x.Ballot.Node) +
		optLen(x.Chosen) + optLen(x.Seq) + optLen(x.Index) + optLen(x.LastIndex) +
		optLen(x.Hint.Round) + optLen(x.Hint.Node) +
		optLen(x.Transfer.Round) + optLen(x.Transfer.Node)
	if len(x.Entries) != 0 {
		n += uvarintLen(uint64(len(x.Entries)))
		for i := range x.Entries {
			n += x.Entries[i].bodySize()
		}
	}
	if x.Reject != 0 {
		n++
	}
	if len(x.Trace) != 0 {
		n += bytesLen(x.Trace)
	}
	if x.Snapshot != nil {
		n += x.Snapshot.Size()
	}
	n += optLen(x.Epoch)
	return n
}

// Append appends x's encoding to b and returns the extended slice.
func (x *Message) Append(b []byte) []byte {
	b = append(b, formatVersion, byte(x.Type))
	b = binary.AppendUvarint(b, x.present())
	b = appendOpt(b, x.Group)
	b = appendOpt(b, x.From)
	b = appendOpt(b, x.To)
	b = appendOpt(b, x.Ballot.Round)
	b = appendOpt(b, x.Ballot.Node)
	b = appendOpt(b, x.Chosen)
	b = appendOpt(b, x.Seq)
	b = appendOpt(b, x.Index)
	b = appendOpt(b, x.LastIndex)
	if len(x.Entries) != 0 {
		b = binary.AppendUvarint(b, uint64(len(x.Entries)))
		for i := range x.Entries {
			b = x.Entries[i].appendBody(b)
		}
	}
	if x.Reject != 0 {
		b = append(b, byte(x.Reject))
	}
	b = appendOpt(b, x.Hint.Round)
	b = appendOpt(b, x.Hint.Node)
	if len(x.Trace) != 0 {
		b = appendBytes(b, x.Trace)
	}
	b = appendOpt(b, x.Transfer.Round)
	b = appendOpt(b, x.Transfer.Node)
	if x.Snapshot != nil {
		b = x.Snapshot.Append(b)
	}
	return appendOpt(b, x.Epoch)
}

// Marshal returns x's encoding in a new slice of exactly Size bytes.
func (x *Message) Marshal() []byte { return x.Append(make([]byte, 0, x.Size())) }

// Unmarshal sets x to the Message encoded in data. On error x is unchanged.
//
// Unmarshal copies the byte fields (Trace and every Entry.Data and
// Snapshot.Data) out of data, so the caller may reuse data afterwards. To
// save allocations the copies share one backing array per call, at most as
// large as data; each field's capacity ends at its length, so appending to
// one never overwrites another, but keeping any one of them keeps the whole
// array alive. Empty slices decode as nil.
func (x *Message) Unmarshal(data []byte) error {
	d := decoder{data: data}
	var v Message
	d.version()
	d.message(&v)
	if err := d.finish("Message"); err != nil {
		return err
	}
	*x = v
	return nil
}

// AppendMessages appends a frame holding msgs to b and returns the extended
// slice: a version byte, the number of messages, and each message's length
// and encoding.
func AppendMessages(b []byte, msgs []Message) []byte {
	n := 1 + uvarintLen(uint64(len(msgs)))
	for i := range msgs {
		s := msgs[i].Size()
		n += uvarintLen(uint64(s)) + s
	}
	b = slices.Grow(b, n)
	b = append(b, frameVersion)
	b = binary.AppendUvarint(b, uint64(len(msgs)))
	for i := range msgs {
		b = binary.AppendUvarint(b, uint64(msgs[i].Size()))
		b = msgs[i].Append(b)
	}
	return b
}

// DecodeMessages decodes a frame written by AppendMessages. It copies byte
// fields out of data as Message.Unmarshal does, with one backing array per
// message. An empty frame decodes as nil.
func DecodeMessages(data []byte) ([]Message, error) {
	d := decoder{data: data}
	if d.byte("version") != frameVersion && d.err == nil {
		d.failVersion(0, data[0])
	}
	n := d.count("count", minFramedMessageLen)
	if d.err != nil || n == 0 {
		return nil, d.finish("Messages")
	}
	msgs := make([]Message, n)
	for i := range msgs {
		start := d.off
		l := d.uvarint("length")
		if d.err == nil && l > uint64(len(data)-d.off) {
			d.failAt(start, "length", "length "+strconv.FormatUint(l, 10)+" exceeds the remaining "+strconv.Itoa(len(data)-d.off)+" bytes")
		}
		if d.err != nil {
			d.err.within("Messages[" + strconv.Itoa(i) + "]")
			return nil, d.err
		}
		end := d.off + int(l)
		md := decoder{data: data[:end], off: d.off}
		md.version()
		md.message(&msgs[i])
		if md.err == nil && md.off != end {
			md.failAt(md.off, "", strconv.Itoa(end-md.off)+" trailing bytes")
		}
		if md.err != nil {
			md.err.within("Messages[" + strconv.Itoa(i) + "]")
			return nil, md.err
		}
		d.off = end
	}
	if err := d.finish("Messages"); err != nil {
		return nil, err
	}
	return msgs, nil
}

// decoder reads an encoding. Its error is sticky: after the first failure
// the decoder is at the end of its input, every read returns zero and the
// first error stays, so callers check d.err only before allocating and where
// they add context to the error.
type decoder struct {
	data []byte
	off  int
	err  *decodeError
	// arena backs the copies of the byte fields.
	arena []byte
}

// failAt records the first failure and moves to the end of the input, so
// that every later read fails too and returns zero.
func (d *decoder) failAt(off int, field, reason string) {
	if d.err == nil {
		d.err = &decodeError{path: field, offset: off, reason: reason}
	}
	d.off = len(d.data)
}

func (d *decoder) failVersion(off int, v byte) {
	d.failAt(off, "version", "unknown format version "+strconv.Itoa(int(v)))
	d.err.version = true
}

// finish checks that the input was consumed and returns the error, if any,
// with root as the outermost field.
func (d *decoder) finish(root string) error {
	if d.err == nil && d.off != len(d.data) {
		d.failAt(d.off, "", strconv.Itoa(len(d.data)-d.off)+" trailing bytes")
	}
	if d.err == nil {
		return nil
	}
	d.err.within(root)
	return d.err
}

func (d *decoder) byte(field string) byte {
	if d.off >= len(d.data) {
		d.failAt(d.off, field, "truncated")
		return 0
	}
	c := d.data[d.off]
	d.off++
	return c
}

func (d *decoder) version() {
	if v := d.byte("version"); v != formatVersion && d.err == nil {
		d.failVersion(d.off-1, v)
	}
}

// enum reads a one-byte enum and checks it is at most max.
func (d *decoder) enum(field string, max uint8, what string) uint8 {
	c := d.byte(field)
	if c > max {
		d.failAt(d.off-1, field, "unknown "+what+" "+strconv.Itoa(int(c)))
		return 0
	}
	return c
}

func (d *decoder) uvarint(field string) uint64 {
	if d.off < len(d.data) && d.data[d.off] < 0x80 {
		v := d.data[d.off]
		d.off++
		return uint64(v)
	}
	v, n := binary.Uvarint(d.data[d.off:])
	switch {
	case n == 0:
		d.failAt(d.off, field, "truncated")
		return 0
	case n < 0:
		d.failAt(d.off, field, "varint overflows 64 bits")
		return 0
	case d.data[d.off+n-1] == 0:
		d.failAt(d.off, field, "varint not minimally encoded")
		return 0
	}
	d.off += n
	return v
}

// nonzero reads a uint64 that is present only because it is not zero.
func (d *decoder) nonzero(field string) uint64 {
	start := d.off
	v := d.uvarint(field)
	if v == 0 {
		d.failAt(start, field, "zero value marked present")
	}
	return v
}

// count reads a number of items and checks that the rest of the input could
// hold that many items of at least min bytes each.
func (d *decoder) count(field string, min int) int {
	start := d.off
	n := d.uvarint(field)
	if d.err != nil {
		return 0
	}
	if limit := (len(d.data) - d.off) / min; n > uint64(limit) {
		d.failAt(start, field, "count "+strconv.FormatUint(n, 10)+" exceeds what the remaining "+strconv.Itoa(len(d.data)-d.off)+" bytes can hold")
		return 0
	}
	return int(n)
}

// bytes reads a byte string and returns a copy of it, or nil if it is empty.
func (d *decoder) bytes(field string) []byte {
	start := d.off
	n := d.uvarint(field)
	if d.err != nil || n == 0 {
		return nil
	}
	rest := len(d.data) - d.off
	if n > uint64(rest) {
		d.failAt(start, field, "length "+strconv.FormatUint(n, 10)+" exceeds the remaining "+strconv.Itoa(rest)+" bytes")
		return nil
	}
	src := d.data[d.off : d.off+int(n)]
	d.off += int(n)
	if cap(d.arena)-len(d.arena) < len(src) {
		// The byte fields still to come lie in the rest of the input, so
		// one arena of this size holds them all.
		d.arena = make([]byte, 0, rest)
	}
	i := len(d.arena)
	d.arena = append(d.arena, src...)
	return d.arena[i:len(d.arena):len(d.arena)]
}

func (d *decoder) entryBody(e *Entry) {
	e.Slot = d.uvarint("Slot")
	e.Ballot.Round = d.uvarint("Ballot.Round")
	e.Ballot.Node = d.uvarint("Ballot.Node")
	e.Type = EntryType(d.enum("Type", uint8(maxEntryType), "entry type"))
	e.Data = d.bytes("Data")
}

func (d *decoder) ids(field string) []uint64 {
	n := d.count("len("+field+")", 1)
	if d.err != nil || n == 0 {
		return nil
	}
	ids := make([]uint64, n)
	for i := range ids {
		ids[i] = d.uvarint("")
		if d.err != nil {
			d.err.within(field + "[" + strconv.Itoa(i) + "]")
			return nil
		}
	}
	return ids
}

func (d *decoder) config(c *Config) {
	c.Voters = d.ids("Voters")
	c.Learners = d.ids("Learners")
}

func (d *decoder) metaBody(m *Meta) {
	m.Index = d.uvarint("Index")
	if d.err != nil {
		return
	}
	d.config(&m.Config)
	if d.err != nil {
		d.err.within("Config")
	}
}

func (d *decoder) snapshot(s *Snapshot) {
	d.metaBody(&s.Meta)
	if d.err != nil {
		d.err.within("Meta")
		return
	}
	s.Data = d.bytes("Data")
}

func (d *decoder) message(m *Message) {
	m.Type = MessageType(d.enum("Type", uint8(maxMessageType), "message type"))
	start := d.off
	p := d.uvarint("present")
	if p&^msgAllFields != 0 {
		d.failAt(start, "present", "unknown field bits "+strconv.FormatUint(p&^msgAllFields, 2))
	}
	if d.err != nil {
		return
	}
	opt := func(bit uint64, field string) uint64 {
		if p&bit == 0 {
			return 0
		}
		return d.nonzero(field)
	}
	m.Group = opt(msgGroup, "Group")
	m.From = opt(msgFrom, "From")
	m.To = opt(msgTo, "To")
	m.Ballot.Round = opt(msgBallotRound, "Ballot.Round")
	m.Ballot.Node = opt(msgBallotNode, "Ballot.Node")
	m.Chosen = opt(msgChosen, "Chosen")
	m.Seq = opt(msgSeq, "Seq")
	m.Index = opt(msgIndex, "Index")
	m.LastIndex = opt(msgLastIndex, "LastIndex")
	if p&msgEntries != 0 {
		start := d.off
		n := d.count("len(Entries)", minEntryBodySize)
		if n == 0 {
			d.failAt(start, "len(Entries)", "zero value marked present")
		}
		if d.err != nil {
			return
		}
		m.Entries = make([]Entry, n)
		for i := range m.Entries {
			d.entryBody(&m.Entries[i])
			if d.err != nil {
				d.err.within("Entries[" + strconv.Itoa(i) + "]")
				return
			}
		}
	}
	if p&msgReject != 0 {
		m.Reject = RejectReason(d.enum("Reject", uint8(maxRejectReason), "reject reason"))
		if m.Reject == 0 {
			d.failAt(d.off-1, "Reject", "zero value marked present")
		}
	}
	m.Hint.Round = opt(msgHintRound, "Hint.Round")
	m.Hint.Node = opt(msgHintNode, "Hint.Node")
	if p&msgTrace != 0 {
		start := d.off
		m.Trace = d.bytes("Trace")
		if m.Trace == nil {
			d.failAt(start, "Trace", "zero value marked present")
		}
	}
	m.Transfer.Round = opt(msgTransferRound, "Transfer.Round")
	m.Transfer.Node = opt(msgTransferNode, "Transfer.Node")
	if p&msgSnapshot != 0 && d.err == nil {
		m.Snapshot = new(Snapshot)
		d.snapshot(m.Snapshot)
		if d.err != nil {
			d.err.within("Snapshot")
		}
	}
	m.Epoch = opt(msgEpoch, "Epoch")
}
