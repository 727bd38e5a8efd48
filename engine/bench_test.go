package engine

import (
	"fmt"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/cockroachdb/pebble/v2/vfs"
)

// benchEngine opens an engine with production options on a real temporary
// directory, so that Commit(true) pays a real fsync. The returned counter
// counts the WAL fsyncs that reach the filesystem: Pebble may merge
// concurrent sync requests, so this is the number the disk sees.
func benchEngine(b *testing.B) (*Engine, *atomic.Int64) {
	b.Helper()
	fs := &syncCountingFS{FS: vfs.Default, suffix: ".log"}
	o := DefaultOptions()
	o.FS = fs
	o.Dir = b.TempDir()
	o.Logger = quietLogger{}
	e, err := Open(o)
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { _ = e.Close() })
	return e, &fs.syncs
}

// syncCountingFS counts syncs of the files whose names end in suffix
// (".log": the WAL). It wraps every way a file is opened for writing,
// including ReuseForWrite, which Pebble uses to recycle old WAL files
// (errorfs does not wrap that one).
type syncCountingFS struct {
	vfs.FS
	suffix string
	syncs  atomic.Int64
}

func (fs *syncCountingFS) wrap(f vfs.File, name string, err error) (vfs.File, error) {
	if err != nil || !strings.HasSuffix(name, fs.suffix) {
		return f, err
	}
	return &syncCountingFile{File: f, n: &fs.syncs}, nil
}

func (fs *syncCountingFS) Create(name string, c vfs.DiskWriteCategory) (vfs.File, error) {
	f, err := fs.FS.Create(name, c)
	return fs.wrap(f, name, err)
}

func (fs *syncCountingFS) ReuseForWrite(oldname, newname string, c vfs.DiskWriteCategory) (vfs.File, error) {
	f, err := fs.FS.ReuseForWrite(oldname, newname, c)
	return fs.wrap(f, newname, err)
}

func (fs *syncCountingFS) OpenReadWrite(name string, c vfs.DiskWriteCategory, opts ...vfs.OpenOption) (vfs.File, error) {
	f, err := fs.FS.OpenReadWrite(name, c, opts...)
	return fs.wrap(f, name, err)
}

type syncCountingFile struct {
	vfs.File
	n *atomic.Int64
}

func (f *syncCountingFile) Sync() error {
	f.n.Add(1)
	return f.File.Sync()
}

func (f *syncCountingFile) SyncData() error {
	f.n.Add(1)
	return f.File.SyncData()
}

func (f *syncCountingFile) SyncTo(length int64) (bool, error) {
	f.n.Add(1)
	return f.File.SyncTo(length)
}

// BenchmarkGroupCommit measures the node's group commit: each iteration is
// one batch holding a 64-byte entry and a hard state for each of N groups,
// committed with ONE sync. entries/s grows with N while syncs/s stays near
// the disk's fsync rate: that is the point of group commit.
func BenchmarkGroupCommit(b *testing.B) {
	entry := make([]byte, 64)
	hs := make([]byte, 16)
	for _, groups := range []int{1, 100, 1000} {
		b.Run(fmt.Sprintf("groups=%d", groups), func(b *testing.B) {
			e, fsyncs := benchEngine(b)
			b.SetBytes(int64(groups * (len(entry) + len(hs))))
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				batch := e.NewBatch()
				for g := range groups {
					batch.PutEntry(GroupID(g), uint64(i), entry)
					batch.SetHardState(GroupID(g), hs)
				}
				if err := batch.Commit(true); err != nil {
					b.Fatal(err)
				}
				batch.Close()
			}
			sec := b.Elapsed().Seconds()
			b.ReportMetric(float64(b.N*groups)/sec, "entries/s")
			b.ReportMetric(float64(e.Stats().Syncs)/sec, "syncs/s")
			b.ReportMetric(float64(fsyncs.Load())/sec, "wal-fsyncs/s")
		})
	}
}

// BenchmarkCommitter compares many goroutines (16 on 2 cores) each
// committing a one-group batch with sync: through a Committer (merged
// rounds, one fsync each) and directly (each its own Pebble commit, which
// Pebble's WAL writer still coalesces into shared fsyncs).
func BenchmarkCommitter(b *testing.B) {
	entry := make([]byte, 64)
	hs := make([]byte, 16)
	for _, mode := range []string{"committer", "direct"} {
		b.Run("mode="+mode, func(b *testing.B) {
			e, fsyncs := benchEngine(b)
			var c *Committer
			if mode == "committer" {
				c = NewCommitter(e)
				defer c.Close()
			}
			var next atomic.Uint64
			b.SetParallelism(8)
			b.ResetTimer()
			b.RunParallel(func(pb *testing.PB) {
				g := GroupID(next.Add(1))
				slot := uint64(0)
				for pb.Next() {
					slot++
					batch := e.NewBatch()
					batch.PutEntry(g, slot, entry)
					batch.SetHardState(g, hs)
					var err error
					if c != nil {
						err = c.Commit(batch, true)
					} else {
						err = batch.Commit(true)
					}
					batch.Close()
					if err != nil {
						b.Error(err)
						return
					}
				}
			})
			sec := b.Elapsed().Seconds()
			wal := fsyncs.Load()
			b.ReportMetric(float64(b.N)/sec, "batches/s")
			b.ReportMetric(float64(e.Stats().Syncs)/sec, "syncs/s")
			b.ReportMetric(float64(wal)/sec, "wal-fsyncs/s")
			b.ReportMetric(float64(b.N)/float64(max(wal, 1)), "batches/fsync")
		})
	}
}

// BenchmarkReplicaWrite measures the storage work one replica does for one
// client write when every Paxos value carries one command (1,000 groups,
// 256 writers): the accepted entry, synced in a batch shared by the
// writes of one scheduling cycle, then the applied data and applied point
// in an unsynced batch, and the log truncation every 64 slots. A
// three-replica cluster on one machine does this three times per write,
// so cpu-µs/write times three is the cluster's storage floor per write.
func BenchmarkReplicaWrite(b *testing.B) {
	for _, perCycle := range []int{20, 100} {
		b.Run(fmt.Sprintf("writes-per-sync=%d", perCycle), func(b *testing.B) { benchmarkReplicaWrite(b, perCycle) })
	}
}

func benchmarkReplicaWrite(b *testing.B, perCycle int) {
	const groups = 1000
	e, _ := benchEngine(b)
	entry := make([]byte, 64)
	value := make([]byte, 16)
	slots := make([]uint64, groups)
	cpu0 := processCPU()
	b.ResetTimer()
	for i := 0; i < b.N; i += perCycle {
		n := min(perCycle, b.N-i)
		accept, apply := e.NewBatch(), e.NewBatch()
		for j := range n {
			g := GroupID((i + j) * 7919 % groups)
			slots[g]++
			accept.PutEntry(g, slots[g], entry)
			apply.Put(fmt.Appendf(nil, "k%04d-%08x", g*10, i+j), value)
			apply.SetApplied(g, slots[g])
			if slots[g]%64 == 0 {
				apply.DeleteEntries(g, 0, slots[g]+1)
			}
		}
		if err := accept.Commit(true); err != nil {
			b.Fatal(err)
		}
		if err := apply.Commit(false); err != nil {
			b.Fatal(err)
		}
		accept.Close()
		apply.Close()
	}
	b.StopTimer()
	b.ReportMetric(float64((processCPU()-cpu0).Microseconds())/float64(b.N), "cpu-µs/write")
}

// processCPU returns the user and system CPU time this process has used.
func processCPU() time.Duration {
	var ru syscall.Rusage
	_ = syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
