package engine

import (
	"errors"
	"fmt"
	"math/rand/v2"
	"testing"
	"time"

	"github.com/cockroachdb/pebble/v2/vfs"
)

// TestEstimateDataSize: the estimate of a span grows with the data written
// in it once the memtables holding it are flushed, and spans around it
// stay small.
func TestEstimateDataSize(t *testing.T) {
	o := testOptions(vfs.NewMem())
	o.MemTableSize = 1 << 20 // flush after every MiB written
	e := mustOpen(t, o)
	defer e.Close()
	if _, err := e.EstimateDataSize([]byte("b"), []byte("a")); !errors.Is(err, ErrInvalidSpan) {
		t.Fatalf("inverted span: %v, want ErrInvalidSpan", err)
	}
	size := func(start, end string) uint64 {
		var hi []byte
		if end != "" {
			hi = []byte(end)
		}
		n, err := e.EstimateDataSize([]byte(start), hi)
		if err != nil {
			t.Fatal(err)
		}
		return n
	}
	if n := size("b", "c"); n != 0 {
		t.Fatalf("empty store: estimate %d", n)
	}
	// 4 MiB of incompressible values under "b", a little under "a" and
	// "c".
	rng := rand.New(rand.NewPCG(1, 2))
	value := make([]byte, 4<<10)
	for i := range 1024 {
		commit(t, e, false, func(b *Batch) {
			for j := range value {
				value[j] = byte(rng.Uint32())
			}
			b.Put(fmt.Appendf(nil, "b%05d", i), value)
			if i%256 == 0 {
				b.Put(fmt.Appendf(nil, "a%05d", i), []byte("small"))
				b.Put(fmt.Appendf(nil, "c%05d", i), []byte("small"))
			}
		})
	}
	// The last memtables flush in the background: wait (bounded) until
	// at least 3 of the 4 MiB are in sstables.
	deadline := time.Now().Add(10 * time.Second)
	for size("b", "c") < 3<<20 {
		if time.Now().After(deadline) {
			t.Fatalf("estimate of 4 MiB written under b: %d bytes after 10s", size("b", "c"))
		}
		time.Sleep(10 * time.Millisecond)
	}
	if b, all := size("b", "c"), size("", ""); all < b || b > 5<<20 {
		t.Errorf("estimate of b: %d, of everything: %d; want b in [3, 5] MiB and no more than everything", b, all)
	}
	if n := size("a", "b"); n > 1<<20 {
		t.Errorf("span a holds 4 small values, estimate %d", n)
	}
	if half := size("b", "b00512"); half < 1<<20 || half > 3<<20 {
		t.Errorf("half of span b: estimate %d, want about 2 MiB", half)
	}
}

// TestDiskUsage: what a node's status reports as its disk use grows with
// the data written (in the WAL before any flush; Pebble accounts for the
// live WAL with some lag, hence the loose bound), and a closed engine says
// so.
func TestDiskUsage(t *testing.T) {
	for _, fs := range []struct {
		name string
		fs   vfs.FS
	}{{"mem", vfs.NewMem()}, {"disk", vfs.Default}} {
		o := testOptions(fs.fs)
		if fs.fs == vfs.Default {
			o.Dir = t.TempDir()
		}
		e := mustOpen(t, o)
		before, err := e.DiskUsage()
		if err != nil {
			t.Fatal(err)
		}
		value := make([]byte, 64<<10)
		for i := range 32 {
			commit(t, e, true, func(b *Batch) { b.Put(fmt.Appendf(nil, "k%05d", i), value) })
		}
		after, err := e.DiskUsage()
		if err != nil || after.Pebble < before.Pebble+1<<20 || after.Allocated < 2<<20 {
			t.Errorf("%s: disk usage %+v before 2 MiB written, %+v after (err %v)", fs.name, before, after, err)
		}
		t.Logf("%s: %+v", fs.name, after)
		e.Close()
		if _, err := e.DiskUsage(); !errors.Is(err, ErrClosed) {
			t.Errorf("%s: after Close: %v, want ErrClosed", fs.name, err)
		}
	}
}
