package kvsm

import "bytes"

// A split is proposed through the log of the range it cuts, so that every
// replica cuts it at the same point of the log: the commands before the
// split apply to the whole range, those after it only to the left half,
// and a command proposed for a key of the right half that reaches the log
// after the split applies nowhere (OutOfRange) and is retried by its
// client at the right half's range.

// NewSplit is the command that cuts the range at key: the range keeps the
// keys below it and the range newRange, which the node creates from the
// split, takes the rest.
func NewSplit(key []byte, newRange uint64) Command {
	return Command{Op: OpSplit, Key: key, NewRange: newRange}
}

// applySplit cuts the range's bounds at c.Key if it lies strictly inside
// them; Succeeded reports whether it did. A split whose key is no longer
// inside the range (a retried split, or one planned against bounds that
// another split changed since) changes nothing.
func (m *Range) applySplit(c *Command) Result {
	if !m.bounded || !m.contains(c.Key) || bytes.Equal(c.Key, m.start) {
		return Result{}
	}
	m.end = c.Key
	return Result{Succeeded: true}
}

// SetBounds tells the range which keys it holds, [start, end) with an
// empty end for the end of the key space. Until it is called, a Range
// checks no key. The node calls it when it opens or creates the replica,
// and when a snapshot replaces the range.
func (m *Range) SetBounds(start, end []byte) {
	m.start, m.end, m.bounded = start, end, true
}

// Bounds returns the keys the range holds after the values it applied.
func (m *Range) Bounds() (start, end []byte) { return m.start, m.end }

func (m *Range) contains(k []byte) bool {
	return bytes.Compare(k, m.start) >= 0 && (len(m.end) == 0 || bytes.Compare(k, m.end) < 0)
}

// holds reports whether every key c writes or checks lies in the range.
func (m *Range) holds(c *Command) bool {
	if !m.bounded {
		return true
	}
	if c.Op != OpBatch {
		return m.contains(c.Key)
	}
	for i := range c.Ops {
		if !m.contains(c.Ops[i].Key) {
			return false
		}
	}
	for i := range c.Checks {
		if !m.contains(c.Checks[i].Key) {
			return false
		}
	}
	return true
}
