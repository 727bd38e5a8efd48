// Package kvsm is the replicated key-value state machine of a range: the
// commands a range's Paxos log carries (their encoding, one file per
// request type in the shape of CockroachDB's batcheval), how each is
// applied, the conditions of compare-and-swap and conditional batches,
// and the client sessions that make writes exactly-once.
//
// Every replica applies the same chosen values in the same order through
// Range.Apply, so everything here must be deterministic: it reads and
// writes only the Store it is given and the values themselves (the only
// clock is the proposing leader's timestamp carried in each value).
//
// # Exactly-once writes
//
// A write from a client session carries (ClientID, ClientSeq) and the
// client's AckedBelow, as in RIFL (Lee et al., "Implementing
// Linearizability at Large Scale and Low Latency", SOSP 2015). The range
// remembers, per client, the result of every write it applied whose
// sequence number is at or above the client's acknowledgement, in
// range-local replicated records: they are written in the same batch as
// the write's data, survive restarts, and travel with snapshots. A write
// that arrives again (a client's retry after an unknown outcome, or a
// value a new leader re-proposed) is answered with the first result and
// applies nothing. A write numbered below the client's acknowledgement,
// whose result is gone, applies nothing and reports Forgotten: its
// outcome is unknown to this range, never "not applied".
//
// A session is forgotten SessionTTL after its last write (measured on the
// proposing leaders' clocks). Clients must not retry a write for longer
// than that; the router stops retrying long before (router.MaxRetryAge).
package kvsm
