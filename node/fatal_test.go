package node

import (
	"context"
	"errors"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/cockroachdb/pebble/v2/vfs"
	"github.com/cockroachdb/pebble/v2/vfs/errorfs"
	"github.com/shardd/shardd/kvpb"
)

// TestDiskErrorStopsTheNode fails the WAL's syncs under a single-node
// range: the write must not be acknowledged and the node must stop, not
// carry on after a failed fsync.
func TestDiskErrorStopsTheNode(t *testing.T) {
	var failing atomic.Bool
	injected := errors.New("injected sync failure")
	fs := errorfs.Wrap(vfs.NewMem(), errorfs.InjectorFunc(func(op errorfs.Op) error {
		if failing.Load() && (op.Kind == errorfs.OpFileSync || op.Kind == errorfs.OpFileSyncData) &&
			strings.HasSuffix(op.Path, ".log") {
			return injected
		}
		return nil
	}))
	fatal := make(chan error, 1)
	c := newTestCluster(t, 1, splitRanges(1, 1), func(cfg *Config) {
		cfg.FS = fs
		cfg.OnFatal = func(err error) { fatal <- err }
	})
	put(t, c, 1, "before", "1")
	failing.Store(true)
	n := c.nodes[1]
	_, err := c.clients[1].Put(ctx(t), &kvpb.PutRequest{Key: []byte("after"), Value: []byte("2")})
	if err == nil {
		t.Fatal("a write was acknowledged although its fsync failed")
	}
	select {
	case err := <-fatal:
		if !errors.Is(err, injected) {
			t.Fatalf("fatal error %v does not wrap the injected one", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the node did not report the disk error")
	}
	select {
	case <-n.Done():
	case <-time.After(10 * time.Second):
		t.Fatal("the node did not stop after a failed fsync")
	}
	if n.Err() == nil {
		t.Fatal("Err is nil after a disk error")
	}
}

// TestFollowerDiskErrorAcksNothing: a follower whose fsync fails must not
// acknowledge the accept it failed to persist. With the third replica
// down, the leader's write then has no quorum and is never acknowledged;
// had the follower answered anyway, it would have been.
func TestFollowerDiskErrorAcksNothing(t *testing.T) {
	var failing atomic.Bool
	injected := errors.New("injected sync failure")
	fs := errorfs.Wrap(vfs.Default, errorfs.InjectorFunc(func(op errorfs.Op) error {
		if failing.Load() && (op.Kind == errorfs.OpFileSync || op.Kind == errorfs.OpFileSyncData) &&
			strings.HasSuffix(op.Path, ".log") {
			return injected
		}
		return nil
	}))
	ranges := splitRanges(1, 3)
	ranges[0].LeaderNodeId = 1
	c := newTestCluster(t, 3, ranges, func(cfg *Config) {
		if cfg.NodeID == 2 {
			cfg.FS = fs
		}
	})
	put(t, c, 1, "before", "1")
	c.nodes[3].Stop()
	failing.Store(true)
	wctx, cancel := context.WithTimeout(ctx(t), 2*time.Second)
	defer cancel()
	if _, err := c.clients[1].Put(wctx, &kvpb.PutRequest{Key: []byte("after"), Value: []byte("2")}); err == nil {
		t.Fatal("a write was acknowledged with only the leader's copy durable: the follower acked an accept it failed to persist")
	}
	select {
	case <-c.nodes[2].Done():
	case <-time.After(10 * time.Second):
		t.Fatal("the follower did not stop after a failed fsync")
	}
}
