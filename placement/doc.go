// Package placement is the pure core of shardd's placement service: the
// authoritative map from key ranges to range descriptors, the changes that
// evolve it, and the planners that decide what to change.
//
// Everything here is a deterministic value with no I/O, no goroutines, no
// randomness and no wall clock. The replicated placement service, package
// placement/service, keeps a RangeMap in the memory of its leader: it
// builds every edit as a Split, Merge, SetReplicas or SetLeader change,
// applies it to a copy with RangeMap.Apply, and persists the changed
// descriptors in its own Paxos group with a write that is fenced by the
// map's revision. Because a failed Apply changes nothing, an invalid
// change never reaches the store; a new leader rebuilds the map from the
// stored descriptors with NewRangeMap, which checks every invariant.
//
// # The map
//
// A RangeMap holds descriptors sorted by start key, non-overlapping and
// covering the whole key space: the first range starts at the empty key
// (minus infinity) and the last one ends at the empty key (plus infinity).
// Range ids are unique and non-zero; every range has at least one voter and
// no node twice; the leader hint is zero (unknown) or one of the voters.
// Every change that creates or alters a descriptor's keys or replicas bumps
// its generation, so routers and nodes can tell a stale descriptor from a
// fresh one. Leadership is only a hint and does not bump the generation.
//
// # Bootstrap and planning
//
// InitialRanges and EvenSplitKeys build the first map of a new cluster.
// PlanLeaderBalance proposes leader transfers that spread leadership evenly
// over the live nodes, PlanReplicaBalance replica moves that even out the
// replicas per node, PlanLoadBalance leader transfers and replica moves
// that spread the ops/s the ranges' leaders serve (within the other two
// planners' bands), and PlanRepair proposes replica moves away from dead
// nodes. The planners only read descriptors; carrying a plan out (add a
// learner, snapshot, promote, remove; or hand off a lease) is the job of
// the nodes and of the service that drives them.
package placement
