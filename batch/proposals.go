package batch

import (
	"sync/atomic"

	"github.com/shardd/shardd/kvsm"
)

// Proposals collects the commands waiting to be proposed to one group.
// The node runtime drains it once per scheduling cycle into a single Paxos
// value: under load one slot carries many commands, so the Paxos cost per
// command falls as the load rises. It is not safe for concurrent use; the
// runtime guards it with the group's lock.
type Proposals struct {
	cmds  []kvsm.Command
	bytes int
}

// size estimates a command's encoded size.
func size(c *kvsm.Command) int {
	s := len(c.Key) + len(c.Value) + len(c.Expected) + 32
	for i := range c.Ops {
		s += size(&c.Ops[i])
	}
	return s
}

// Add queues a command.
func (p *Proposals) Add(c kvsm.Command) {
	p.cmds = append(p.cmds, c)
	p.bytes += size(&c)
}

// Bytes returns the estimated encoded size of the queued commands.
func (p *Proposals) Bytes() int { return p.bytes }

// Len returns the number of queued commands.
func (p *Proposals) Len() int { return len(p.cmds) }

// Take returns up to maxBytes worth of queued commands (at least one) and
// their encoding as one value proposed at proposedAt (see kvsm.Value),
// and removes them from the queue.
func (p *Proposals) Take(maxBytes int, proposedAt int64) ([]kvsm.Command, []byte) {
	if len(p.cmds) == 0 {
		return nil, nil
	}
	n, total := 0, 0
	for n < len(p.cmds) {
		s := size(&p.cmds[n])
		if n > 0 && total+s > maxBytes {
			break
		}
		total += s
		n++
	}
	taken := p.cmds[:n:n]
	p.cmds = p.cmds[n:]
	p.bytes -= total
	if len(p.cmds) == 0 {
		p.cmds = nil
	}
	return taken, kvsm.Encode(make([]byte, 0, total+16), proposedAt, taken)
}

// Stats count the coalescing of client commands into Paxos values across
// a node, for metrics and benchmarks. (The coalescing of records into
// fsyncs is counted where it happens: engine.CommitterStats.)
type Stats struct {
	// Values and Commands: proposals made and the commands they carried.
	Values, Commands atomic.Int64
}

// CommandsPerValue is the mean number of commands per Paxos value.
func (s *Stats) CommandsPerValue() float64 { return ratio(s.Commands.Load(), s.Values.Load()) }

func ratio(a, b int64) float64 {
	if b == 0 {
		return 0
	}
	return float64(a) / float64(b)
}
