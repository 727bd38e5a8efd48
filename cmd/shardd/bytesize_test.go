package main

import (
	"strings"
	"testing"
)

func TestByteSize(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want int64
		str  string
	}{
		{"4194304", 4 << 20, "4MiB"}, {"4MiB", 4 << 20, "4MiB"}, {"4096KiB", 4 << 20, "4MiB"}, {"1GiB", 1 << 30, "1GiB"},
		{"100", 100, "100B"}, {"100B", 100, "100B"}, {" 2 MiB", 2 << 20, "2MiB"}, {"0", 0, "0"}, {"1536KiB", 1536 << 10, "1536KiB"},
	} {
		var b byteSize
		if err := b.Set(tc.in); err != nil || int64(b) != tc.want || b.String() != tc.str {
			t.Errorf("Set(%q): %d (%s), %v; want %d (%s)", tc.in, b, b.String(), err, tc.want, tc.str)
		}
	}
	for _, bad := range []string{"", "MiB", "1.5MiB", "-1", "4MB", "x", "99999999999GiB"} {
		var b byteSize
		if err := b.Set(bad); err == nil {
			t.Errorf("Set(%q) accepted: %d", bad, b)
		}
	}
}

// TestStartStoreFlags: the store's sizes reach the node's config; 0 turns
// the chunked WAL preallocation off (Pebble's own then).
func TestStartStoreFlags(t *testing.T) {
	o, err := startOpts(t, "--id=1", "--data-dir=/d")
	if cfg := o.nodeConfig(nil); err != nil || cfg.MemTableSize != 64<<20 || cfg.WALPreallocation != 4<<20 {
		t.Errorf("defaults: memtables %d, WAL preallocation %d (%v)", cfg.MemTableSize, cfg.WALPreallocation, err)
	}
	o, err = startOpts(t, "--id=1", "--data-dir=/d", "--memtable-size=8MiB", "--wal-preallocation=0")
	if cfg := o.nodeConfig(nil); err != nil || cfg.MemTableSize != 8<<20 || cfg.WALPreallocation >= 0 {
		t.Errorf("--memtable-size=8MiB --wal-preallocation=0: memtables %d, WAL preallocation %d (%v)", cfg.MemTableSize, cfg.WALPreallocation, err)
	}
	for _, bad := range []string{"--memtable-size=512KiB", "--memtable-size=4GiB"} {
		if _, err := startOpts(t, "--id=1", "--data-dir=/d", bad); err == nil || !strings.Contains(err.Error(), "--memtable-size must be at least 1MiB") {
			t.Errorf("%s: %v", bad, err)
		}
	}
}
