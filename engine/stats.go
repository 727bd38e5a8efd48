package engine

import (
	"math/bits"
	"sync"
	"time"
)

// recordsHistBuckets is the number of power-of-two buckets in
// CommitStats.RecordsPerSync: bucket i counts syncs that carried records in
// [2^i, 2^(i+1)), and the last bucket holds everything larger.
const recordsHistBuckets = 20

// CommitStats counts the commits an Engine made to Pebble, whether from
// Batch.Commit or from a Committer round. They are cumulative since Open.
type CommitStats struct {
	// Commits is the number of non-empty batches applied to Pebble.
	Commits uint64
	// Syncs is the number of those that were synced. Each is one WAL fsync
	// requested; Pebble can merge concurrent requests further, so this is an
	// upper bound on the fsyncs that the disk saw.
	Syncs uint64
	// SyncedRecords is the number of records (Batch.Count) carried by synced
	// commits. SyncedRecords/Syncs is the mean group-commit width.
	SyncedRecords uint64
	// SyncedBytes is the number of batch bytes carried by synced commits.
	SyncedBytes uint64
	// SyncLatency is the total wall time spent in synced commits.
	SyncLatency time.Duration
	// MaxSyncLatency is the slowest synced commit.
	MaxSyncLatency time.Duration
	// RecordsPerSync is a power-of-two histogram of records per synced
	// commit: bucket i counts syncs with records in [2^i, 2^(i+1)).
	RecordsPerSync [recordsHistBuckets]uint64
	// BackgroundErrors counts errors of Pebble's background work (flushes,
	// compactions). Pebble retries those itself; a growing count is a sign
	// of a sick disk.
	BackgroundErrors uint64
}

// MeanRecordsPerSync returns SyncedRecords/Syncs, or 0 without syncs.
func (s CommitStats) MeanRecordsPerSync() float64 {
	if s.Syncs == 0 {
		return 0
	}
	return float64(s.SyncedRecords) / float64(s.Syncs)
}

// MeanSyncLatency returns SyncLatency/Syncs, or 0 without syncs.
func (s CommitStats) MeanSyncLatency() time.Duration {
	if s.Syncs == 0 {
		return 0
	}
	return s.SyncLatency / time.Duration(s.Syncs)
}

// histBucket returns the RecordsPerSync bucket of n records.
func histBucket(n int) int {
	if n <= 1 {
		return 0
	}
	b := bits.Len(uint(n)) - 1
	if b >= recordsHistBuckets {
		b = recordsHistBuckets - 1
	}
	return b
}

// statsRecorder accumulates CommitStats. A mutex is cheap next to an fsync.
type statsRecorder struct {
	mu sync.Mutex
	s  CommitStats
}

func (r *statsRecorder) recordCommit(sync bool, records, bytes int, d time.Duration) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.s.Commits++
	if !sync {
		return
	}
	r.s.Syncs++
	r.s.SyncedRecords += uint64(records)
	r.s.SyncedBytes += uint64(bytes)
	r.s.SyncLatency += d
	r.s.MaxSyncLatency = max(r.s.MaxSyncLatency, d)
	r.s.RecordsPerSync[histBucket(records)]++
}

func (r *statsRecorder) recordBackgroundError() {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.s.BackgroundErrors++
}

func (r *statsRecorder) snapshot() CommitStats {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.s
}
