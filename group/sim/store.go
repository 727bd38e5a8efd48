package sim

import (
	"maps"
	"slices"

	pb "github.com/shardd/shardd/paxospb"
)

// disk is a node's stored state: everything the replica's Readys asked to
// persist, and the state machine with its applied point.
//
// It keeps what the node runtime keeps, to recover as the node does (see
// the shortcuts in group/ready.go): the hard state is written only when
// the promise changes, so its Chosen is a stale hint; Meta is not stored,
// only the truncation it asks for; the configuration in force at the
// applied point is stored with the applied point instead.
type disk struct {
	hard    pb.HardState
	entries map[uint64]pb.Entry
	applied uint64
	// conf is the configuration in force at applied.
	conf pb.Config
	// app is the applied value of every slot from 1 to applied.
	app []string
}

func (d *disk) clone() disk {
	c := *d
	c.entries = maps.Clone(d.entries)
	c.app = slices.Clone(d.app)
	return c
}

// store models a node's storage engine with one write-ahead log, as Pebble
// has: a write is visible at once (live) but survives a crash only once a
// sync covered it, and a sync covers every write before it. A crash keeps
// the synced writes and a prefix of the unsynced ones (the log's tail may
// or may not have reached the disk), and loses the rest.
//
// The Ready contract (group/ready.go) says which writes are synced: step 1
// (HardState, Entries, Meta, Snapshot) is made durable before Messages
// leave; applying Committed (step 3) persists the applied point with the
// data but need not sync, so it is lost at a crash unless a later step 1
// synced it.
type store struct {
	live, durable disk
	// unsynced are the writes since the last sync, in log order.
	unsynced []func(*disk)
}

func newStore(meta pb.Meta) *store {
	d := disk{applied: meta.Index, conf: meta.Config, entries: make(map[uint64]pb.Entry)}
	return &store{live: d, durable: d.clone()}
}

// write applies f to the live state and logs it, unsynced.
func (s *store) write(f func(*disk)) {
	f(&s.live)
	s.unsynced = append(s.unsynced, f)
}

// sync makes every write so far durable.
func (s *store) sync() {
	for _, f := range s.unsynced {
		f(&s.durable)
	}
	s.unsynced = nil
}

// crash keeps the first keep unsynced writes, loses the others, and
// returns how many it lost. The live state becomes what a restart reads.
func (s *store) crash(keep int) (lost int) {
	keep = min(keep, len(s.unsynced))
	for _, f := range s.unsynced[:keep] {
		f(&s.durable)
	}
	lost = len(s.unsynced) - keep
	s.unsynced = nil
	s.live = s.durable.clone()
	return lost
}
