package sim

import (
	"fmt"
	"strings"
)

// Event is something a run counts: a protocol path taken or a fault
// injected. The counts show what a run exercised, so that a configuration
// whose seeds never reach a path fails instead of passing vacuously.
type Event int

// Protocol events.
const (
	Proposed Event = iota
	// Chosen counts slots chosen, once each, when first applied anywhere.
	Chosen
	Elections
	// Transfers counts leader transfers completed: the target won.
	Transfers
	// LearnersAdded, Promotions and Removals count membership changes
	// applied, by kind.
	LearnersAdded
	Promotions
	Removals
	SnapshotsSent
	SnapshotsInstalled
	// Quiesces counts replicas going idle, Unquiesces their waking up.
	Quiesces
	Unquiesces
	// LeaseReads counts reads answered under a lease, without a round;
	// QuorumReads those that waited for a heartbeat round.
	LeaseReads
	QuorumReads
	Delivered
	// Fault events.
	Drops
	Dups
	// LongDelays are a few heartbeat intervals long; OverLeaseDelays
	// outlast the lease and the election timeout.
	LongDelays
	OverLeaseDelays
	Partitions
	OneWayCuts
	Isolations
	Crashes
	CrashesMidReady
	// LostWrites counts crashes that lost writes not yet synced.
	LostWrites
	Pauses
	ClockJumps
	Wipes
	numEvents
)

var eventNames = [numEvents]string{
	Proposed: "proposed", Chosen: "chosen", Elections: "elections", Transfers: "transfers",
	LearnersAdded: "learners-added", Promotions: "promotions", Removals: "removals",
	SnapshotsSent: "snapshots-sent", SnapshotsInstalled: "snapshots-installed",
	Quiesces: "quiesces", Unquiesces: "unquiesces", LeaseReads: "lease-reads", QuorumReads: "quorum-reads",
	Delivered: "delivered", Drops: "drops", Dups: "dups", LongDelays: "long-delays",
	OverLeaseDelays: "over-lease-delays", Partitions: "partitions", OneWayCuts: "one-way-cuts",
	Isolations: "isolations", Crashes: "crashes", CrashesMidReady: "crashes-mid-ready",
	LostWrites: "lost-unsynced-writes", Pauses: "pauses", ClockJumps: "clock-jumps", Wipes: "wipes",
}

func (e Event) String() string { return eventNames[e] }

// Stats count the events of one run, or of many added up.
type Stats struct {
	N [numEvents]int
}

// Add adds o's counts to s.
func (s *Stats) Add(o Stats) {
	for i := range s.N {
		s.N[i] += o.N[i]
	}
}

// String lists every count on one line.
func (s Stats) String() string {
	var b strings.Builder
	for e := range numEvents {
		if e > 0 {
			b.WriteByte(' ')
		}
		fmt.Fprintf(&b, "%v=%d", e, s.N[e])
	}
	return b.String()
}

// Missing returns the events of want that s never counted.
func (s Stats) Missing(want []Event) []Event {
	var out []Event
	for _, e := range want {
		if s.N[e] == 0 {
			out = append(out, e)
		}
	}
	return out
}

// MustExercise returns the events that the seeds of a configuration run
// with opt must, between them, count at least once: every protocol path
// the simulation claims to test and every fault it injects.
func MustExercise(opt Options) []Event {
	var out []Event
	for e := range numEvents {
		if e == Wipes && !opt.Wipes {
			continue
		}
		out = append(out, e)
	}
	return out
}

func (w *World) count(e Event) { w.stats.N[e]++ }
