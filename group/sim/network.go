package sim

import (
	"cmp"
	"slices"

	"github.com/shardd/shardd/group"
	pb "github.com/shardd/shardd/paxospb"
)

type envelope struct {
	at  int64
	seq uint64 // breaks ties in delivery order deterministically
	m   pb.Message
}

// link is a directed link: cut[link{a, b}] drops what a sends to b, which
// says nothing of what b sends to a.
type link struct{ from, to uint64 }

// send puts a message on the simulated network, where it may be lost,
// duplicated, delayed (beyond the lease and the election timeout, at
// times) or cut by a partition.
func (w *World) send(m pb.Message) {
	if w.cut[link{m.From, m.To}] || w.chance(w.f.drop) {
		w.count(Drops)
		return
	}
	copies := 1
	if w.chance(w.f.dup) {
		copies = 2
		w.count(Dups)
	}
	for range copies {
		delay := 100_000 + w.rng.Int64N(3*ms)
		switch {
		case w.chance(w.f.overLeaseDelay):
			// Arrives after the sender's lease, the receiver's promise and
			// any election timeout ran out: a heartbeat, promise or support
			// response from another era.
			delay += leaseDuration + 2*electionTicks*tick + w.rng.Int64N(2*leaseDuration)
			w.count(OverLeaseDelays)
		case w.chance(w.f.longDelay):
			delay += w.rng.Int64N(60 * ms)
			w.count(LongDelays)
		}
		w.seq++
		w.net = append(w.net, envelope{at: w.now + delay, seq: w.seq, m: m})
	}
}

// deliver hands every message that is due to its replica. A paused node's
// messages wait for it in the network: it gets them all when it resumes.
func (w *World) deliver() {
	slices.SortFunc(w.net, func(a, b envelope) int {
		return cmp.Or(cmp.Compare(a.at, b.at), cmp.Compare(a.seq, b.seq))
	})
	i, backlog := 0, 0 // the backlog is kept in place, at the front
	for ; i < len(w.net) && w.net[i].at <= w.now; i++ {
		m := w.net[i].m
		n := w.node(m.To)
		if n == nil || !n.up || w.cut[link{m.From, m.To}] {
			continue
		}
		if n.paused() {
			w.net[backlog] = w.net[i]
			backlog++
			continue
		}
		w.count(Delivered)
		w.step1(n, m) // may send: append to w.net
	}
	w.net = append(w.net[:backlog], w.net[i:]...)
}

// step1 feeds one message to n's liveness or replica.
func (w *World) step1(n *node, m pb.Message) {
	switch m.Type {
	case pb.MsgSupportRequest, pb.MsgSupportResponse:
		if n.lv != nil {
			if resp, ok := n.lv.Handle(m); ok {
				w.send(resp)
			}
		}
		return
	case pb.MsgQuiesce, pb.MsgRelease:
		w.tracef("%d -> %d: %v %v chosen %d", m.From, m.To, m.Type, m.Ballot, m.Chosen)
	}
	n.r.Step(m)
	if m.Type == pb.MsgTimeoutNow {
		if st := n.r.Status(); st.Role == group.Candidate {
			n.transferBallot = st.Ballot // counted as a transfer if it wins
		}
	}
}

// partition replaces the current partition by a random one: usually a
// clean split, sometimes a bridge, where one replica still talks to both
// sides (Jepsen's "bridge" nemesis): connectivity is then not transitive.
func (w *World) partition() {
	ns := w.live()
	if len(ns) < 2 {
		return
	}
	clear(w.cut)
	side := make(map[uint64]int)
	for _, n := range ns {
		side[n.id] = w.rng.IntN(2)
	}
	if w.chance(0.3) {
		side[w.pick(ns).id] = 2 // the bridge
	}
	for _, a := range w.nodes {
		for _, b := range w.nodes {
			if sa, sb := side[a.id], side[b.id]; sa != sb && sa != 2 && sb != 2 {
				w.cut[link{a.id, b.id}] = true
			}
		}
	}
	w.count(Partitions)
	w.tracef("partition %v", side)
}

// isolate cuts n off from everyone: the partition that tests leases
// hardest, since the old leader keeps believing in its lease while the
// others elect a new one.
func (w *World) isolate(n *node) {
	clear(w.cut)
	for _, o := range w.nodes {
		if o != n {
			w.cut[link{n.id, o.id}] = true
			w.cut[link{o.id, n.id}] = true
		}
	}
	w.count(Isolations)
	w.tracef("isolate %d", n.id)
}

// cutOneWay adds a link failure in one direction only: from one node to
// another, or everything into or out of one node. A leader that can send
// but not hear keeps its followers' promises alive while its own lease
// runs out; one that hears but can't send is deposed without knowing it.
func (w *World) cutOneWay() {
	a, b := w.pick(w.nodes), w.pick(w.nodes)
	if a == b {
		return
	}
	switch w.rng.IntN(3) {
	case 0:
		w.cut[link{a.id, b.id}] = true
		w.tracef("cut %d -> %d", a.id, b.id)
	case 1:
		for _, o := range w.nodes {
			if o != a {
				w.cut[link{a.id, o.id}] = true
			}
		}
		w.tracef("cut %d -> everyone", a.id)
	case 2:
		for _, o := range w.nodes {
			if o != a {
				w.cut[link{o.id, a.id}] = true
			}
		}
		w.tracef("cut everyone -> %d", a.id)
	}
	w.count(OneWayCuts)
}
