package main

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"slices"
	"sort"
	"sync"
	"testing"
	"time"
)

// memStore is a store in memory, linearizable under one mutex: the run
// loop's tests drive it instead of a cluster.
type memStore struct {
	mu   sync.Mutex
	data map[string][]byte
}

func newMemStore() *memStore { return &memStore{data: map[string][]byte{}} }

func (m *memStore) Get(_ context.Context, key []byte) ([]byte, bool, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	v, ok := m.data[string(key)]
	return slices.Clone(v), ok, nil
}

func (m *memStore) Put(_ context.Context, key, value []byte) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.data[string(key)] = slices.Clone(value)
	return nil
}

func (m *memStore) Scan(_ context.Context, start []byte, limit int) (int, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	n := 0
	for k := range m.data {
		if k >= string(start) {
			n++
		}
	}
	return min(n, limit), nil
}

func (m *memStore) CompareAndSwap(_ context.Context, key, expected []byte, found bool, value []byte) (bool, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	v, ok := m.data[string(key)]
	if ok != found || (ok && !bytes.Equal(v, expected)) {
		return false, nil
	}
	m.data[string(key)] = slices.Clone(value)
	return true, nil
}

func testConfig() runConfig {
	return runConfig{keys: 300, valueSize: 16, clients: 4, distribution: "zipfian", scanLength: 10,
		sample: 10 * time.Millisecond, seed: 1}
}

// TestLoadWritesEveryRecord checks that the load phase writes records
// 0..keys-1 and nothing else.
func TestLoadWritesEveryRecord(t *testing.T) {
	st := newMemStore()
	cfg := testConfig()
	if err := load(context.Background(), st, cfg, io.Discard); err != nil {
		t.Fatal(err)
	}
	if len(st.data) != cfg.keys {
		t.Fatalf("%d records after the load, want %d", len(st.data), cfg.keys)
	}
	for i := range uint64(cfg.keys) {
		if v, ok := st.data[string(keyName(i))]; !ok || len(v) != cfg.valueSize {
			t.Fatalf("record %d: %q, %v", i, v, ok)
		}
	}
}

// TestRunCountsOperations runs every workload for a fixed number of
// operations and checks the counts: all of them done, split as the mix
// says, none failed; E's inserts are new records.
func TestRunCountsOperations(t *testing.T) {
	const ops = 4000
	for _, w := range workloads {
		st := newMemStore()
		cfg := testConfig()
		cfg.ops = ops
		if err := load(context.Background(), st, cfg, io.Discard); err != nil {
			t.Fatal(err)
		}
		res, err := run(context.Background(), st, w, cfg, nil, io.Discard)
		if err != nil {
			t.Fatal(err)
		}
		if res.All.Count != ops || res.All.Errors != 0 {
			t.Errorf("workload %s: %d operations, %d errors; want %d and none", w.name, res.All.Count, res.All.Errors, ops)
		}
		if res.CPU != nil {
			t.Errorf("workload %s: CPU measured with no processes to measure", w.name)
		}
		for _, row := range res.Ops {
			op := slices.Index(opNames[:], row.Op)
			if share := float64(row.Count) / ops; share < w.mix[op]-0.05 || share > w.mix[op]+0.05 {
				t.Errorf("workload %s: %s is %.3f of the operations, want %.2f", w.name, row.Op, share, w.mix[op])
			}
		}
		if w.name == "E" {
			inserts := res.Ops[sort.Search(len(res.Ops), func(i int) bool { return res.Ops[i].Op >= "insert" })].Count
			if got := int64(len(st.data) - cfg.keys); got != inserts {
				t.Errorf("workload E: %d new records after %d inserts", got, inserts)
			}
		}
	}
}

// TestReadModifyWriteRetries checks that a read-modify-write that loses
// its compare-and-swap reads again and retries, counting the conflict,
// and gives up after maxRMWAttempts.
func TestReadModifyWriteRetries(t *testing.T) {
	st := &racingStore{memStore: newMemStore(), losses: 2}
	rec := newRecorder(time.Now())
	key := keyName(7)
	if err := readModifyWrite(context.Background(), st, key, []byte("new"), rec); err != nil {
		t.Fatal(err)
	}
	if v, _, _ := st.Get(context.Background(), key); string(v) != "new" {
		t.Errorf("value after the read-modify-write: %q, want new", v)
	}
	if _, _, c := rec.totals(); c != 2 {
		t.Errorf("%d conflicts counted, want 2", c)
	}
	st.losses = maxRMWAttempts
	if err := readModifyWrite(context.Background(), st, key, []byte("newer"), rec); err != errRMWContended {
		t.Errorf("after %d lost compare-and-swaps: error %v, want errRMWContended", maxRMWAttempts, err)
	}
}

// racingStore writes the key between a read and the next
// compare-and-swap, losses times, as a racing client would.
type racingStore struct {
	*memStore
	losses int
}

func (r *racingStore) CompareAndSwap(ctx context.Context, key, expected []byte, found bool, value []byte) (bool, error) {
	if r.losses > 0 {
		r.losses--
		r.Put(ctx, key, fmt.Appendf(nil, "theirs %d", r.losses))
	}
	return r.memStore.CompareAndSwap(ctx, key, expected, found, value)
}
