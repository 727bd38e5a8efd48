package engine

import (
	"fmt"
	"testing"
)

// TestWALPreallocation writes 5 MB to a store with production-sized
// memtables on the real filesystem, and checks the disk it takes (as du
// counts it): Pebble alone preallocates 70 MiB for each of the several WAL
// files that the first, small memtables get (issue 11: 423 MB for a node
// after 5 MB of writes); preallocating a chunk at a time keeps the WAL
// sized to the data. It also checks that the data reads back after a
// restart, from the chunk-preallocated WAL.
func TestWALPreallocation(t *testing.T) {
	footprint := func(prealloc int64) uint64 {
		o := DefaultOptions()
		o.Dir = t.TempDir()
		o.Logger = quietLogger{}
		o.CacheSize = 8 << 20
		o.WALPreallocation = prealloc
		e := mustOpen(t, o)
		value := make([]byte, 64<<10)
		for i := range 80 {
			commit(t, e, true, func(b *Batch) { b.Put(fmt.Appendf(nil, "k%05d", i), value) })
		}
		du, err := e.DiskUsage()
		if err != nil {
			t.Fatal(err)
		}
		if err := e.Close(); err != nil {
			t.Fatal(err)
		}
		e = mustOpen(t, o)
		defer e.Close()
		if v, found, err := e.Get([]byte("k00079")); err != nil || !found || len(v) != len(value) {
			t.Fatalf("after a restart, the last write reads %d bytes, found %v, err %v", len(v), found, err)
		}
		return du.Allocated
	}
	chunked, pebbles := footprint(defaultWALPreallocation), footprint(-1)
	t.Logf("5 MB written with 64 MiB memtables: %.1f MiB on disk preallocating %d MiB at a time, %.1f MiB with Pebble's preallocation",
		float64(chunked)/(1<<20), defaultWALPreallocation>>20, float64(pebbles)/(1<<20))
	if chunked > 32<<20 {
		t.Errorf("5 MB written take %d bytes on disk, want at most 32 MiB", chunked)
	}
	if pebbles < 2*chunked {
		t.Errorf("Pebble's own preallocation took %d bytes, not much more than %d: is the test still measuring it?", pebbles, chunked)
	}
}
