package transport

import (
	"math/rand/v2"
	"sync"
	"time"

	pb "github.com/shardd/shardd/paxospb"
)

// Faults injects network faults into what one Transport sends and
// receives, so that multi-node tests can partition, degrade and slow links
// between real processes. Most faults act on the sending side: a partition
// between nodes A and B is A.Faults().Cut(B) plus B.Faults().Cut(A), and a
// one-way cut is just one of the two. CutFrom drops what a peer sends on
// the receiving side instead, so that one process can be cut off from its
// peers both ways without their cooperation (a process that is killed and
// restarted forgets its own faults, not the ones its peers hold).
//
// Message faults are applied by the destination's sender goroutine when it
// builds frames, so they cost a Send caller nothing and a delayed link
// still delivers in order. Dropped messages count as Stats.Dropped.Fault.
// Faults is safe for concurrent use; a change applies to the next frame
// built, not to one already on the wire.
type Faults struct {
	seed uint64

	mu    sync.Mutex
	links map[uint64]*link
	// from holds the peers whose frames and snapshots are dropped on
	// arrival (CutFrom).
	from map[uint64]bool
}

// link is the fault state of the link to one destination.
type link struct {
	cut   bool
	drop  float64
	delay time.Duration
	// rng decides drops. It is seeded by (Config.FaultSeed, destination)
	// and drawn once per message in send order, so a run's drop decisions
	// replay exactly however the messages were batched into frames.
	rng *rand.Rand
}

func newFaults(seed uint64) *Faults {
	return &Faults{seed: seed, links: make(map[uint64]*link), from: make(map[uint64]bool)}
}

// linkLocked returns the fault state for to, creating it. f.mu is held.
func (f *Faults) linkLocked(to uint64) *link {
	l := f.links[to]
	if l == nil {
		l = &link{rng: rand.New(rand.NewPCG(f.seed, to))}
		f.links[to] = l
	}
	return l
}

// Cut drops every message and snapshot this transport sends to node to,
// until Heal or HealAll.
func (f *Faults) Cut(to uint64) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.linkLocked(to).cut = true
}

// Heal removes every fault on the link to node to: the cut, the drop
// probability and the delay.
func (f *Faults) Heal(to uint64) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if l := f.links[to]; l != nil {
		l.cut, l.drop, l.delay = false, 0, 0
	}
}

// CutFrom drops every frame and snapshot that arrives from node from,
// until HealFrom or HealAll. Frames are dropped whole after they are read
// from the stream, so the peer's stream stays open and its sender sees no
// error, as on a link that silently loses packets one way; a snapshot is
// refused with Unavailable.
func (f *Faults) CutFrom(from uint64) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.from[from] = true
}

// HealFrom removes the cut of CutFrom(from).
func (f *Faults) HealFrom(from uint64) {
	f.mu.Lock()
	defer f.mu.Unlock()
	delete(f.from, from)
}

// HealAll removes every fault on every link, both directions.
func (f *Faults) HealAll() {
	f.mu.Lock()
	defer f.mu.Unlock()
	for _, l := range f.links {
		l.cut, l.drop, l.delay = false, 0, 0
	}
	clear(f.from)
}

// SetDrop makes each message to node to be dropped with probability p,
// which is clamped to [0, 1]. Snapshots are not affected.
func (f *Faults) SetDrop(to uint64, p float64) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.linkLocked(to).drop = min(max(p, 0), 1)
}

// SetDelay holds each frame to node to for d before sending it. The delay
// is served by the destination's one sender goroutine, so order is kept
// and messages queue up (and coalesce) behind a delayed frame, as they
// would behind a slow link. Snapshots are not affected.
func (f *Faults) SetDelay(to uint64, d time.Duration) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.linkLocked(to).delay = max(d, 0)
}

// cut reports whether the link to node to is cut.
func (f *Faults) cut(to uint64) bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	l := f.links[to]
	return l != nil && l.cut
}

// cutFrom reports whether what node from sends is dropped on arrival.
func (f *Faults) cutFrom(from uint64) bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.from[from]
}

// filter applies the faults on the link to node to to a batch about to be
// framed. It moves the messages to keep, with their costs, to the front of
// msgs and costs and returns how many there are, and the delay to serve
// before each frame.
func (f *Faults) filter(to uint64, msgs []pb.Message, costs []int) (kept int, delay time.Duration) {
	f.mu.Lock()
	defer f.mu.Unlock()
	l := f.links[to]
	switch {
	case l == nil:
		return len(msgs), 0
	case l.cut:
		return 0, 0
	case l.drop == 0:
		return len(msgs), l.delay
	}
	for i := range msgs {
		if l.rng.Float64() < l.drop {
			continue
		}
		msgs[kept], costs[kept] = msgs[i], costs[i]
		kept++
	}
	return kept, l.delay
}
