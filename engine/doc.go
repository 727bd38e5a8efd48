// Package engine is a node's one durable store: the Paxos state of every
// group replica the node hosts, and the user data those groups replicate,
// in ONE Pebble DB.
//
// The engine knows no Paxos rules. It stores opaque byte records per group
// (hard state, accepted entries by slot, applied point, metadata,
// range-local replicated records) and user key/value pairs, and it offers the two things a multi-group node needs
// from its disk: atomic batches that span many groups and user data (one
// fsync for all of them: group commit), and snapshots of a group's span.
//
// # Key layout
//
// Every key starts with a one-byte prefix that separates the store's own
// records, the groups' local state and the user data. Integers are 8-byte
// big-endian, so byte order is numeric order: a group's records are
// contiguous, groups never interleave, and a group's entries sort by slot.
//
//	+--------+--------------+------+-------------+-------------------------+
//	| prefix | group id     | kind | suffix      | value                   |
//	+--------+--------------+------+-------------+-------------------------+
//	| 0x00   |              | 0x01 |             | store identity          |
//	| 0x00   |              | 0x02 | group 8B BE | replica tombstone       |
//	+--------+--------------+------+-------------+-------------------------+
//	| 0x01   | 8 bytes BE   | 0x01 |             | hard state (opaque)     |
//	| 0x01   | 8 bytes BE   | 0x02 |             | applied point, 8 B BE   |
//	| 0x01   | 8 bytes BE   | 0x03 |             | group meta (opaque)     |
//	| 0x01   | 8 bytes BE   | 0x04 | slot 8 B BE | accepted entry (opaque) |
//	| 0x01   | 8 bytes BE   | 0x05 | any bytes   | range-local record      |
//	+--------+--------------+------+-------------+-------------------------+
//	| 0x02   | user key (any bytes, to the end of the key)  | user value    |
//	+--------+----------------------------------------------+---------------+
//
// The user data of all groups shares the 0x02 space: a range is a span of
// it, not a prefix, so splitting a range into two groups moves no bytes.
// The group's meta is where the caller keeps the range bounds. Removing a
// group's state (DeleteGroup) and truncating its log (DeleteEntries) are one
// range tombstone each.
//
// The store identity (StoreIdent: node id, random store id, cluster id)
// belongs to no group: a node writes it at its first start and refuses to
// serve a store that names another node. A replica tombstone (the
// generation at which a group left the node) is a store record too, so
// that DeleteGroup, which removes the group's records beside it, leaves
// it: see SetReplicaTombstone.
//
// Range-local records (kind 0x05, keyed by a suffix of the caller's, like
// CockroachDB's range-ID replicated keys) are replicated state of the
// group that is not user data: the client sessions of exactly-once writes,
// for one. The caller writes them in the batch that applies the entry they
// come from, so they match the applied point after a crash, as the user
// data does. They sort after the entries, so LoadGroup, which reads the
// small records and then the log, stops before them, and DeleteEntries,
// which ends at the last slot, never reaches them. DeleteGroup removes
// them with the rest of the group.
//
// # Durability and failure
//
// A Batch commit is atomic. A synced commit is durable when it returns, and
// so is every commit before it (the WAL is sequential); an unsynced commit
// may be lost in a crash until a later synced commit returns. Put the user
// data of applied entries and the new applied point in one batch: after a
// crash both or neither are visible.
//
// The first storage error of a commit fails the Engine for good: every
// later commit and read returns the same error wrapping ErrFailed. After a
// failed fsync the kernel may have dropped the dirty pages, so a retry that
// "succeeds" could acknowledge data that is gone; and Pebble has already
// put the failed batch in its memtable, so reads could show it. The node
// must stop and recover from what is on disk.
//
// Pebble reports a failed WAL write or fsync only through Logger.Fatalf
// (DB.Apply then returns nil), so the engine intercepts Fatalf. Other fatal
// errors (a failed MANIFEST write) must not return into Pebble; the engine
// panics there, recovers the panic in the calls it made itself (Open,
// commits, snapshot ingest) and reports the failure. A fatal error in
// Pebble's background work, and a failure to create or close a WAL while
// rotating it (Pebble v2.1.7 panics in rotateWAL), stop the process.
//
// # Group commit
//
// A Batch carries records of any number of groups, so a node's scheduler
// can persist every ready group of a cycle with one synced Commit. When
// several goroutines produce batches, a Committer merges whatever is queued
// into one Pebble batch and one fsync, and wakes all their callers with the
// shared result.
//
// # Snapshots
//
// ExportSnapshot streams a group's metadata, its range-local records and
// its span of user data from a consistent Pebble snapshot as bounded
// SnapshotChunks (the header with the metadata first, then the records,
// then the data, a trailer with counts and checksum last).
// SnapshotWriter ingests such a stream: it stages the data in sstables and
// adds them to Pebble with one atomic Ingest, so after a crash the group
// has either its old state or the whole snapshot, never a mix; the
// snapshot's range-local records replace the group's old ones wholesale.
// See SnapshotWriter for the argument.
package engine
