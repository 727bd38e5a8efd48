package engine

import (
	"errors"
	"fmt"
	"maps"
	"math"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/cockroachdb/pebble/v2/vfs"
)

func TestOptionsValidate(t *testing.T) {
	good := testOptions(vfs.NewMem())
	if err := good.Validate(); err != nil {
		t.Fatalf("good options: %v", err)
	}
	d := DefaultOptions()
	if d.FS != vfs.Default || d.CacheSize != defaultCacheSize || d.MemTableSize != defaultMemTableSize || d.Logger == nil {
		t.Fatalf("DefaultOptions = %+v", d)
	}
	for _, tc := range []struct {
		field string
		mut   func(o *Options)
	}{
		{"Dir", func(o *Options) { o.Dir = "" }},
		{"FS", func(o *Options) { o.FS = nil }},
		{"CacheSize", func(o *Options) { o.CacheSize = -1 }},
		{"MemTableSize", func(o *Options) { o.MemTableSize = 1 }},
		{"MemTableSize", func(o *Options) { o.MemTableSize = 8 << 30 }},
		{"MaxConcurrentCompactions", func(o *Options) { o.MaxConcurrentCompactions = -1 }},
		{"Logger", func(o *Options) { o.Logger = nil }},
	} {
		o := good
		tc.mut(&o)
		err := o.Validate()
		if err == nil || !strings.Contains(err.Error(), tc.field) {
			t.Errorf("%s: Validate = %v, want an error naming the field", tc.field, err)
		}
	}
	if _, err := Open(Options{FS: vfs.NewMem()}); err == nil {
		t.Fatal("Open without Dir succeeded")
	}
}

func TestBatchCountLenEmpty(t *testing.T) {
	e := openMem(t)
	b := e.NewBatch()
	defer b.Close()
	if !b.Empty() || b.Count() != 0 {
		t.Fatalf("new batch: Empty=%v Count=%d", b.Empty(), b.Count())
	}
	l0 := b.Len()
	b.SetHardState(1, []byte("hs"))
	b.PutEntry(1, 5, []byte("e5"))
	b.DeleteEntries(1, 0, 3)
	b.DeleteEntries(1, 3, 3) // empty range: no record
	b.SetApplied(1, 4)
	b.SetGroupMeta(1, []byte("m"))
	b.DeleteGroup(2)
	b.Put([]byte("k"), []byte("v"))
	b.Delete([]byte("k2"))
	b.DeleteSpan([]byte("x"), nil)
	if b.Empty() || b.Count() != 9 {
		t.Fatalf("Empty=%v Count=%d, want false 9", b.Empty(), b.Count())
	}
	if b.Len() <= l0 {
		t.Fatalf("Len %d did not grow from %d", b.Len(), l0)
	}
	if err := b.Commit(true); err != nil {
		t.Fatal(err)
	}
	if err := b.Commit(true); !errors.Is(err, ErrBatchCommitted) {
		t.Fatalf("second Commit = %v, want ErrBatchCommitted", err)
	}
	b.Close()
	b.Close() // idempotent
	if s := e.Stats(); s.Commits != 1 || s.Syncs != 1 || s.SyncedRecords != 9 || s.RecordsPerSync[histBucket(9)] != 1 {
		t.Fatalf("stats after one synced commit of 9 records: %+v", s)
	}
}

func TestEmptyCommit(t *testing.T) {
	e := openMem(t)
	b := e.NewBatch()
	defer b.Close()
	if err := b.Commit(true); err != nil {
		t.Fatal(err)
	}
	if s := e.Stats(); s.Commits != 0 || s.Syncs != 0 {
		t.Fatalf("empty commit counted: %+v", s)
	}
}

func TestGroupRecords(t *testing.T) {
	e := openMem(t)
	commit(t, e, true, func(b *Batch) {
		for _, g := range []GroupID{3, 1, 2, math.MaxUint64} {
			b.SetHardState(g, []byte(fmt.Sprintf("hs%d", g)))
			b.SetGroupMeta(g, []byte(fmt.Sprintf("meta%d", g)))
			b.SetApplied(g, uint64(g)*10)
			for _, slot := range []uint64{300, 2, 1, 256, math.MaxUint64} {
				b.PutEntry(g, slot, []byte(fmt.Sprintf("g%d-s%d", g, slot)))
			}
		}
		b.SetHardState(4, []byte{}) // empty but present
		b.Put([]byte("user"), []byte("data"))
	})
	groups, err := e.Groups()
	if err != nil {
		t.Fatal(err)
	}
	if want := []GroupID{1, 2, 3, 4, math.MaxUint64}; !reflect.DeepEqual(groups, want) {
		t.Fatalf("Groups = %v, want %v", groups, want)
	}
	st, err := e.LoadGroup(2)
	if err != nil {
		t.Fatal(err)
	}
	want := GroupState{
		ID: 2, HardState: []byte("hs2"), Meta: []byte("meta2"), Applied: 20, HasApplied: true,
		Entries: []Entry{
			{1, []byte("g2-s1")}, {2, []byte("g2-s2")}, {256, []byte("g2-s256")},
			{300, []byte("g2-s300")}, {math.MaxUint64, []byte(fmt.Sprintf("g2-s%d", uint64(math.MaxUint64)))},
		},
	}
	if !reflect.DeepEqual(st, want) {
		t.Fatalf("LoadGroup(2) =\n%+v\nwant\n%+v", st, want)
	}
	st4, err := e.LoadGroup(4)
	if err != nil {
		t.Fatal(err)
	}
	if !st4.Exists() || st4.HardState == nil || len(st4.HardState) != 0 || st4.Meta != nil || st4.HasApplied {
		t.Fatalf("LoadGroup(4) = %+v, want only an empty hard state", st4)
	}
	if st5, err := e.LoadGroup(5); err != nil || st5.Exists() {
		t.Fatalf("LoadGroup(5) = %+v, %v; want nothing", st5, err)
	}

	ents, err := e.Entries(2, 2, 300)
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(ents, want.Entries[1:3]) {
		t.Fatalf("Entries(2, 2, 300) = %v", ents)
	}
	if ents, _ := e.Entries(2, 301, math.MaxUint64); len(ents) != 1 || ents[0].Slot != math.MaxUint64 {
		t.Fatalf("Entries to MaxUint64 must include the last slot: %v", ents)
	}
	if ents, _ := e.Entries(2, 5, 5); len(ents) != 0 {
		t.Fatalf("empty range returned %v", ents)
	}

	// Truncate the log: [0, 256) goes, 256 and up stay.
	commit(t, e, true, func(b *Batch) { b.DeleteEntries(2, 0, 256) })
	ents, _ = e.Entries(2, 0, math.MaxUint64)
	if len(ents) != 3 || ents[0].Slot != 256 {
		t.Fatalf("after truncation: %v", ents)
	}
	// Other groups untouched.
	if ents, _ := e.Entries(1, 0, math.MaxUint64); len(ents) != 5 {
		t.Fatalf("group 1 lost entries: %v", ents)
	}
	// DeleteEntries to MaxUint64 takes the last slot too.
	commit(t, e, true, func(b *Batch) { b.DeleteEntries(1, 2, math.MaxUint64) })
	if ents, _ := e.Entries(1, 0, math.MaxUint64); len(ents) != 1 || ents[0].Slot != 1 {
		t.Fatalf("group 1 after DeleteEntries(2, max): %v", ents)
	}

	// DeleteGroup removes all of one group and nothing else, including at
	// the top of the id space and the user data.
	commit(t, e, true, func(b *Batch) {
		b.DeleteGroup(2)
		b.DeleteGroup(math.MaxUint64)
	})
	groups, _ = e.Groups()
	if want := []GroupID{1, 3, 4}; !reflect.DeepEqual(groups, want) {
		t.Fatalf("Groups after DeleteGroup = %v, want %v", groups, want)
	}
	if st, _ := e.LoadGroup(2); st.Exists() {
		t.Fatalf("group 2 survives DeleteGroup: %+v", st)
	}
	if st, _ := e.LoadGroup(3); len(st.Entries) != 5 || !st.HasApplied {
		t.Fatalf("group 3 damaged: %+v", st)
	}
	if v, ok, err := e.Get([]byte("user")); err != nil || !ok || string(v) != "data" {
		t.Fatalf("user data after DeleteGroup: %q %v %v", v, ok, err)
	}
}

// TestRangeLocalRecords checks the range-local records' life: written and
// read per group by suffix, in suffix order; not part of LoadGroup; kept by
// DeleteEntries, even of every slot; removed by DeleteGroup; never mixed
// up with a neighbour group's, also at the top of the id space.
func TestRangeLocalRecords(t *testing.T) {
	e := openMem(t)
	commit(t, e, true, func(b *Batch) {
		for _, g := range []GroupID{1, 2, 3, math.MaxUint64} {
			b.SetApplied(g, 7)
			b.PutEntry(g, math.MaxUint64, []byte("last entry"))
			b.PutRangeLocal(g, []byte("s/2"), []byte(fmt.Sprintf("g%d two", g)))
			b.PutRangeLocal(g, []byte("s/10"), []byte(fmt.Sprintf("g%d ten", g)))
			b.PutRangeLocal(g, []byte{}, []byte("empty suffix"))
			b.PutRangeLocal(g, []byte("s/\xff"), []byte{})
		}
		b.PutRangeLocal(4, []byte("only"), []byte("a group with nothing else"))
		b.Put([]byte("s/2"), []byte("user data"))
	})
	want := "=empty suffix\ns/10=g2 ten\ns/2=g2 two\ns/\xff=\n"
	if got := rangeLocalOf(t, e, 2); got != want {
		t.Fatalf("ScanRangeLocal(2) =\n%s\nwant\n%s", got, want)
	}
	if v, ok, err := e.GetRangeLocal(2, []byte("s/10")); err != nil || !ok || string(v) != "g2 ten" {
		t.Fatalf("GetRangeLocal(2, s/10) = %q %v %v", v, ok, err)
	}
	if v, ok, err := e.GetRangeLocal(2, []byte("s/\xff")); err != nil || !ok || v == nil || len(v) != 0 {
		t.Fatalf("GetRangeLocal of an empty value = %q %v %v, want present and empty", v, ok, err)
	}
	for _, suffix := range []string{"s/1", "s/", "s/100"} {
		if v, ok, err := e.GetRangeLocal(2, []byte(suffix)); err != nil || ok {
			t.Fatalf("GetRangeLocal(2, %q) = %q %v %v, want absent", suffix, v, ok, err)
		}
	}
	if v, ok, _ := e.Get([]byte("s/2")); !ok || string(v) != "user data" {
		t.Fatalf("user key s/2 = %q %v", v, ok)
	}
	if st, _ := e.LoadGroup(2); len(st.Entries) != 1 || st.Applied != 7 {
		t.Fatalf("LoadGroup(2) = %+v, want one entry and no records", st)
	}
	if st, _ := e.LoadGroup(4); st.Exists() {
		t.Fatalf("LoadGroup(4) = %+v, want nothing: range-local records are not Paxos state", st)
	}
	if groups, _ := e.Groups(); !reflect.DeepEqual(groups, []GroupID{1, 2, 3, 4, math.MaxUint64}) {
		t.Fatalf("Groups = %v", groups)
	}
	var prefixed []string
	for _, g := range []GroupID{2, math.MaxUint64} {
		if err := e.ScanRangeLocal(g, []byte("s/1"), func(suffix, _ []byte) bool {
			prefixed = append(prefixed, string(suffix))
			return true
		}); err != nil {
			t.Fatal(err)
		}
	}
	if !reflect.DeepEqual(prefixed, []string{"s/10", "s/10"}) {
		t.Fatalf("ScanRangeLocal with prefix s/1 = %q, want s/10 of each group", prefixed)
	}
	stop := 0
	if err := e.ScanRangeLocal(2, nil, func(_, _ []byte) bool { stop++; return stop < 2 }); err != nil || stop != 2 {
		t.Fatalf("ScanRangeLocal did not stop when fn returned false: %d calls, %v", stop, err)
	}

	// Truncating the whole log leaves the records; deleting one takes
	// just that one.
	commit(t, e, true, func(b *Batch) {
		b.DeleteEntries(2, 0, math.MaxUint64)
		b.DeleteRangeLocal(2, []byte("s/2"))
	})
	if st, _ := e.LoadGroup(2); len(st.Entries) != 0 {
		t.Fatalf("entries survive DeleteEntries: %+v", st)
	}
	if got, want := rangeLocalOf(t, e, 2), "=empty suffix\ns/10=g2 ten\ns/\xff=\n"; got != want {
		t.Fatalf("after DeleteEntries and DeleteRangeLocal(s/2):\n%s\nwant\n%s", got, want)
	}

	// DeleteGroup takes them, and only the group's own.
	commit(t, e, true, func(b *Batch) {
		b.DeleteGroup(2)
		b.DeleteGroup(math.MaxUint64)
	})
	for _, g := range []GroupID{2, math.MaxUint64} {
		if got := rangeLocalOf(t, e, g); got != "" {
			t.Fatalf("group %d's records survive DeleteGroup:\n%s", g, got)
		}
	}
	for _, g := range []GroupID{1, 3} {
		if got := rangeLocalOf(t, e, g); strings.Count(got, "\n") != 4 {
			t.Fatalf("group %d's records damaged:\n%s", g, got)
		}
	}
}

// TestStoreIdent checks that the store identity survives a reopen, is
// replaced by a later write, stays out of the groups and the user data,
// and that a corrupt one is reported, not misread.
func TestStoreIdent(t *testing.T) {
	fs := vfs.NewMem()
	o := testOptions(fs)
	e := mustOpen(t, o)
	if id, ok, err := e.StoreIdent(); err != nil || ok {
		t.Fatalf("new store: StoreIdent = %+v %v %v, want none", id, ok, err)
	}
	want := StoreIdent{NodeID: 7, StoreID: "store-a"}
	commit(t, e, true, func(b *Batch) {
		b.SetStoreIdent(want)
		b.Put([]byte("k"), []byte("v"))
	})
	if err := e.Close(); err != nil {
		t.Fatal(err)
	}
	e = mustOpen(t, o)
	defer func() { _ = e.Close() }()
	if id, ok, err := e.StoreIdent(); err != nil || !ok || id != want {
		t.Fatalf("after reopen: StoreIdent = %+v %v %v, want %+v", id, ok, err, want)
	}
	want.ClusterID = "cluster-x"
	commit(t, e, true, func(b *Batch) { b.SetStoreIdent(want) })
	if id, _, _ := e.StoreIdent(); id != want {
		t.Fatalf("StoreIdent = %+v, want %+v", id, want)
	}
	if groups, err := e.Groups(); err != nil || len(groups) != 0 {
		t.Fatalf("the identity shows as groups %v (%v)", groups, err)
	}
	if got := scanAll(t, e, nil, nil, 0); len(got) != 1 {
		t.Fatalf("the identity shows in the user data: %v", got)
	}
	for _, bad := range [][]byte{nil, {7}, {7, 3, 'a'}, {7, 0, 0, 0}, {0x80}} {
		commit(t, e, true, func(b *Batch) { b.set(storeKey(storeKindIdent), bad) })
		if id, ok, err := e.StoreIdent(); !errors.Is(err, ErrCorrupt) || ok {
			t.Fatalf("identity %x read as %+v %v, err %v; want ErrCorrupt", bad, id, ok, err)
		}
	}
}

func TestGetPutDelete(t *testing.T) {
	e := openMem(t)
	if _, ok, err := e.Get([]byte("a")); ok || err != nil {
		t.Fatalf("Get on empty = %v %v", ok, err)
	}
	val := []byte("value")
	commit(t, e, false, func(b *Batch) {
		b.Put([]byte("a"), val)
		b.Put([]byte("empty"), nil)
		b.Put(nil, []byte("empty key"))
	})
	val[0] = 'X' // the batch copied it
	v, ok, err := e.Get([]byte("a"))
	if err != nil || !ok || string(v) != "value" {
		t.Fatalf("Get(a) = %q %v %v", v, ok, err)
	}
	v[0] = 'Y' // the result is a copy
	if v2, _, _ := e.Get([]byte("a")); string(v2) != "value" {
		t.Fatalf("Get returned an alias: %q", v2)
	}
	if v, ok, _ := e.Get([]byte("empty")); !ok || v == nil || len(v) != 0 {
		t.Fatalf("empty value: %q %v", v, ok)
	}
	if v, ok, _ := e.Get(nil); !ok || string(v) != "empty key" {
		t.Fatalf("empty key: %q %v", v, ok)
	}
	commit(t, e, true, func(b *Batch) { b.Delete([]byte("a")) })
	if _, ok, _ := e.Get([]byte("a")); ok {
		t.Fatal("deleted key still there")
	}
	// User data never shows up as groups.
	if gs, _ := e.Groups(); len(gs) != 0 {
		t.Fatalf("Groups = %v on user data only", gs)
	}
}

func scanAll(t *testing.T, e *Engine, start, end []byte, limit int) []string {
	t.Helper()
	var out []string
	err := e.Scan(start, end, limit, func(k, v []byte) bool {
		out = append(out, string(k)+"="+string(v))
		return true
	})
	if err != nil {
		t.Fatalf("Scan: %v", err)
	}
	return out
}

func TestScan(t *testing.T) {
	e := openMem(t)
	commit(t, e, true, func(b *Batch) {
		for _, k := range []string{"a", "b", "ba", "c", "d", "\xff"} {
			b.Put([]byte(k), []byte(k+k))
		}
		// Group records must never appear in a scan.
		b.SetHardState(1, []byte("hs"))
		b.PutEntry(math.MaxUint64, 1, []byte("e"))
	})
	for _, tc := range []struct {
		start, end string
		nilEnd     bool
		limit      int
		want       string
	}{
		{"", "", true, 0, "a=aa b=bb ba=baba c=cc d=dd \xff=\xff\xff"},
		{"b", "c", false, 0, "b=bb ba=baba"},
		{"b", "c", false, 1, "b=bb"},
		{"b", "", true, 2, "b=bb ba=baba"},
		{"bb", "d", false, 0, "c=cc"},
		{"c", "c", false, 0, ""},
		{"e", "", true, 0, "\xff=\xff\xff"},
		{"", "a", false, 0, ""},
		{"", "ab", false, -1, "a=aa"},
	} {
		var end []byte
		if !tc.nilEnd {
			end = []byte(tc.end)
		}
		got := strings.Join(scanAll(t, e, []byte(tc.start), end, tc.limit), " ")
		if got != tc.want {
			t.Errorf("Scan(%q, %q nil=%v, %d) = %q, want %q", tc.start, tc.end, tc.nilEnd, tc.limit, got, tc.want)
		}
	}
	// fn returning false stops the scan.
	n := 0
	if err := e.Scan(nil, nil, 0, func(k, v []byte) bool { n++; return n < 2 }); err != nil || n != 2 {
		t.Fatalf("early stop: n=%d err=%v", n, err)
	}
	if err := e.Scan([]byte("b"), []byte("a"), 0, func(k, v []byte) bool { return true }); !errors.Is(err, ErrInvalidSpan) {
		t.Fatalf("Scan with start > end = %v, want ErrInvalidSpan", err)
	}
}

func TestReopenKeepsState(t *testing.T) {
	fs := vfs.NewMem()
	e := mustOpen(t, testOptions(fs))
	commit(t, e, true, func(b *Batch) {
		b.SetHardState(7, []byte("hs"))
		b.PutEntry(7, 1, []byte("e1"))
		b.Put([]byte("k"), []byte("v"))
	})
	if err := e.Close(); err != nil {
		t.Fatal(err)
	}
	e = mustOpen(t, testOptions(fs))
	defer e.Close()
	st, err := e.LoadGroup(7)
	if err != nil || string(st.HardState) != "hs" || len(st.Entries) != 1 {
		t.Fatalf("after reopen: %+v %v", st, err)
	}
	if v, ok, _ := e.Get([]byte("k")); !ok || string(v) != "v" {
		t.Fatalf("user data after reopen: %q %v", v, ok)
	}
}

func TestClosedEngine(t *testing.T) {
	e := mustOpen(t, testOptions(vfs.NewMem()))
	b := e.NewBatch()
	defer b.Close()
	b.Put([]byte("k"), []byte("v"))
	if err := e.Close(); err != nil {
		t.Fatal(err)
	}
	if err := e.Close(); !errors.Is(err, ErrClosed) {
		t.Fatalf("second Close = %v", err)
	}
	checks := map[string]error{
		"Commit": b.Commit(true),
		"Get":    func() error { _, _, err := e.Get([]byte("k")); return err }(),
		"Scan":   e.Scan(nil, nil, 0, func(k, v []byte) bool { return true }),
		"Load":   func() error { _, err := e.LoadGroup(1); return err }(),
		"Groups": func() error { _, err := e.Groups(); return err }(),
		"Entries": func() error {
			_, err := e.Entries(1, 0, 10)
			return err
		}(),
		"Export": e.ExportSnapshot(1, nil, nil, 100, func(SnapshotChunk) error { return nil }),
	}
	for name, err := range checks {
		if !errors.Is(err, ErrClosed) {
			t.Errorf("%s after Close = %v, want ErrClosed", name, err)
		}
	}
}

func TestHistBucket(t *testing.T) {
	for _, tc := range []struct{ n, b int }{{0, 0}, {1, 0}, {2, 1}, {3, 1}, {4, 2}, {1023, 9}, {1024, 10}, {1 << 40, recordsHistBuckets - 1}} {
		if got := histBucket(tc.n); got != tc.b {
			t.Errorf("histBucket(%d) = %d, want %d", tc.n, got, tc.b)
		}
	}
	s := CommitStats{Syncs: 4, SyncedRecords: 10, SyncLatency: 8}
	if s.MeanRecordsPerSync() != 2.5 || s.MeanSyncLatency() != 2 {
		t.Fatalf("means: %v %v", s.MeanRecordsPerSync(), s.MeanSyncLatency())
	}
	if (CommitStats{}).MeanRecordsPerSync() != 0 || (CommitStats{}).MeanSyncLatency() != 0 {
		t.Fatal("means of zero stats")
	}
}

// TestCloseDuringExport closes the engine while an export's callback is
// still reading from it. Close waits for the export; the callback's nested
// read gets ErrClosed instead of deadlocking against the pending Close.
func TestCloseDuringExport(t *testing.T) {
	e := mustOpen(t, testOptions(vfs.NewMem()))
	commit(t, e, true, func(b *Batch) {
		for i := range 100 {
			b.Put(fmt.Appendf(nil, "k%03d", i), []byte("v"))
		}
	})
	closed := make(chan error, 1)
	var nestedErr error
	err := e.ExportSnapshot(1, nil, nil, 64, func(c SnapshotChunk) error {
		if c.Seq != 0 {
			return nil
		}
		go func() { closed <- e.Close() }()
		// Wait until Close has marked the engine closed and waits for us.
		for {
			e.mu.Lock()
			isClosed := e.closed
			e.mu.Unlock()
			if isClosed {
				break
			}
			time.Sleep(time.Millisecond)
		}
		_, _, nestedErr = e.Get([]byte("k001"))
		return nil
	})
	if err != nil {
		t.Fatalf("export: %v", err)
	}
	if !errors.Is(nestedErr, ErrClosed) {
		t.Fatalf("nested read during Close = %v, want ErrClosed", nestedErr)
	}
	select {
	case err := <-closed:
		if err != nil {
			t.Fatalf("Close: %v", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Close did not return after the export finished")
	}
}

// TestReplicaTombstones checks that a tombstone survives a reopen and
// the DeleteGroup of its group, that a later one replaces it, that it
// shows neither as a group nor as user data, and that a corrupt one is
// reported.
func TestReplicaTombstones(t *testing.T) {
	fs := vfs.NewMem()
	o := testOptions(fs)
	e := mustOpen(t, o)
	if got, err := e.ReplicaTombstones(); err != nil || len(got) != 0 {
		t.Fatalf("new store: tombstones %v %v", got, err)
	}
	commit(t, e, true, func(b *Batch) {
		b.SetGroupMeta(3, []byte("m"))
		b.SetStoreIdent(StoreIdent{NodeID: 1, StoreID: "s"})
	})
	commit(t, e, true, func(b *Batch) {
		b.DeleteGroup(3)
		b.SetReplicaTombstone(3, 7)
		b.SetReplicaTombstone(1<<40, 1)
	})
	if err := e.Close(); err != nil {
		t.Fatal(err)
	}
	e = mustOpen(t, o)
	defer func() { _ = e.Close() }()
	commit(t, e, true, func(b *Batch) { b.DeleteGroup(3) })
	want := map[GroupID]uint64{3: 7, 1 << 40: 1}
	if got, err := e.ReplicaTombstones(); err != nil || !maps.Equal(got, want) {
		t.Fatalf("tombstones %v %v, want %v", got, err, want)
	}
	commit(t, e, true, func(b *Batch) { b.SetReplicaTombstone(3, 9) })
	if got, _ := e.ReplicaTombstones(); got[3] != 9 {
		t.Fatalf("tombstones %v after a later one of group 3 at 9", got)
	}
	if groups, err := e.Groups(); err != nil || len(groups) != 0 {
		t.Fatalf("tombstones show as groups %v (%v)", groups, err)
	}
	if got := scanAll(t, e, nil, nil, 0); len(got) != 0 {
		t.Fatalf("tombstones show in the user data: %v", got)
	}
	if id, ok, err := e.StoreIdent(); err != nil || !ok || id.NodeID != 1 {
		t.Fatalf("store identity %+v %v %v beside the tombstones", id, ok, err)
	}
	commit(t, e, true, func(b *Batch) { b.set(tombstoneKey(4), []byte{0x80}) })
	if _, err := e.ReplicaTombstones(); !errors.Is(err, ErrCorrupt) {
		t.Fatalf("corrupt tombstone: %v, want ErrCorrupt", err)
	}
}
