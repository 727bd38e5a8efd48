package router

import (
	"context"
	"errors"
	"sync/atomic"
	"testing"
	"time"

	"github.com/shardd/shardd/kvpb"
)

// pushSource is a Watcher whose first watch fails at once and whose
// second pushes a split of range 1, then waits for the end.
type pushSource struct {
	watches atomic.Int32
	ended   chan struct{}
}

func (s *pushSource) Lookup(context.Context, []byte) ([]*kvpb.RangeDescriptor, map[uint64]string, error) {
	return []*kvpb.RangeDescriptor{desc(1, 1, "", "m"), desc(2, 1, "m", "")}, map[uint64]string{1: "127.0.0.1:1"}, nil
}

func (s *pushSource) Watch(ctx context.Context, apply func([]*kvpb.RangeDescriptor, map[uint64]string)) error {
	if s.watches.Add(1) == 1 {
		return errors.New("the first watch fails")
	}
	apply([]*kvpb.RangeDescriptor{desc(1, 2, "", "f"), desc(3, 2, "f", "m")}, map[uint64]string{2: "127.0.0.1:2"})
	<-ctx.Done()
	close(s.ended)
	return ctx.Err()
}

func TestWatcherKeepsTheCacheFresh(t *testing.T) {
	src := &pushSource{ended: make(chan struct{})}
	c, err := New(t.Context(), Config{Source: src, InitialBackoff: time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(5 * time.Second)
	for len(c.Ranges()) != 3 {
		if time.Now().After(deadline) {
			t.Fatalf("after %d watches the cache holds %v", src.watches.Load(), c.Ranges())
		}
		time.Sleep(time.Millisecond)
	}
	got := c.Ranges()
	if got[0].RangeId != 1 || got[0].Generation != 2 || got[1].RangeId != 3 || got[2].RangeId != 2 {
		t.Errorf("cache after the split: %v", got)
	}
	c.mu.RLock()
	addr := c.addrs[2]
	c.mu.RUnlock()
	if addr != "127.0.0.1:2" {
		t.Errorf("node 2's address from the watch: %q", addr)
	}
	if n := c.Stats().Lookups; n != 1 {
		t.Errorf("%d lookups, want only New's", n)
	}
	c.Close() // ends the watch and waits for it
	select {
	case <-src.ended:
	default:
		t.Error("Close returned with the watch still running")
	}
}
