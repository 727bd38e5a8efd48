package node

import (
	"errors"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/cockroachdb/pebble/v2/vfs"
	"github.com/cockroachdb/pebble/v2/vfs/errorfs"
	"github.com/shardd/shardd/engine"
	pb "github.com/shardd/shardd/paxospb"
)

// startOn starts node id on dir of fs, or returns Start's error.
func startOn(t *testing.T, id uint64, fs vfs.FS, dir string) (*Node, error) {
	t.Helper()
	n, err := Start(Config{NodeID: id, Dir: dir, FS: fs, ListenAddr: "127.0.0.1:0", Logger: testLogger()})
	if err == nil {
		t.Cleanup(n.Stop)
	}
	return n, err
}

// TestStoreBelongsToNode: a data dir created by node 1 refuses node 7
// (issue 9, defect 4), and says what to do; node 1 itself starts on it,
// with the store id it got at its first start. The identity is durable as
// soon as Start returns: a crash right then keeps it, even in a new
// nested directory.
func TestStoreBelongsToNode(t *testing.T) {
	fs := vfs.NewCrashableMem()
	const dir = "data/shardd/node1"
	n, err := startOn(t, 1, fs, dir)
	if err != nil {
		t.Fatal(err)
	}
	storeID := n.StoreID()
	if storeID == "" {
		t.Fatal("no store id")
	}
	crashed := fs.CrashClone(vfs.CrashCloneCfg{UnsyncedDataPercent: 0})
	n.Stop()

	for name, fs := range map[string]vfs.FS{"after a clean stop": fs, "after a crash": crashed} {
		_, err = startOn(t, 7, fs, dir)
		want := "node: data dir data/shardd/node1 belongs to node 1, not node 7: start with --id 1 or an empty directory"
		if !errors.Is(err, ErrIdentity) || err.Error() != want {
			t.Fatalf("%s: node 7 on node 1's data dir: %v\nwant: %s", name, err, want)
		}
		n, err = startOn(t, 1, fs, dir)
		if err != nil {
			t.Fatalf("%s: node 1 on its own data dir: %v", name, err)
		}
		if n.StoreID() != storeID {
			t.Fatalf("%s: store id %q, was %q", name, n.StoreID(), storeID)
		}
		n.Stop()
	}
	// Another store gets another id.
	other, err := startOn(t, 1, vfs.NewMem(), dir)
	if err != nil {
		t.Fatal(err)
	}
	if other.StoreID() == storeID {
		t.Fatalf("two stores got the same id %q", storeID)
	}
}

// TestJoinCluster: the first cluster id a node joins is durable; it then
// accepts that one only, also after a restart.
func TestJoinCluster(t *testing.T) {
	fs := vfs.NewMem()
	n, err := startOn(t, 3, fs, "n3")
	if err != nil {
		t.Fatal(err)
	}
	if n.ClusterID() != "" {
		t.Fatalf("a new store is in cluster %q", n.ClusterID())
	}
	if err := n.JoinCluster(""); err == nil {
		t.Fatal("joined the empty cluster id")
	}
	for range 2 {
		if err := n.JoinCluster("cluster-a"); err != nil {
			t.Fatal(err)
		}
	}
	n.Stop()
	n, err = startOn(t, 3, fs, "n3")
	if err != nil {
		t.Fatal(err)
	}
	if n.ClusterID() != "cluster-a" {
		t.Fatalf("after a restart the node is in cluster %q, want cluster-a", n.ClusterID())
	}
	err = n.JoinCluster("cluster-b")
	want := "node: data dir n3 belongs to cluster cluster-a, but the placement service belongs to cluster cluster-b: " +
		"point --placement at the placement service of cluster cluster-a, or start with an empty directory"
	if !errors.Is(err, ErrIdentity) || err.Error() != want {
		t.Fatalf("joining another cluster: %v\nwant: %s", err, want)
	}
	if err := n.JoinCluster("cluster-a"); err != nil || n.ClusterID() != "cluster-a" {
		t.Fatalf("after a refusal: %v, cluster %q", err, n.ClusterID())
	}
}

// TestCreateEmptyPersistsFirst: a message for a group the node does not
// host creates an empty replica, whose meta must be durable before the
// replica is registered, where a concurrent message could reach it and
// make it promise. The node is idle, so the first WAL sync after the
// message arrives is the one of the meta's commit: the test looks at the
// registry while it runs.
func TestCreateEmptyPersistsFirst(t *testing.T) {
	const g = 99
	var (
		node       atomic.Pointer[Node]
		firstSync  atomic.Bool
		registered atomic.Bool
	)
	fs := errorfs.Wrap(vfs.NewMem(), errorfs.InjectorFunc(func(op errorfs.Op) error {
		n := node.Load()
		if n != nil && (op.Kind == errorfs.OpFileSync || op.Kind == errorfs.OpFileSyncData) &&
			strings.HasSuffix(op.Path, ".log") && firstSync.CompareAndSwap(false, true) {
			registered.Store(n.replica(g) != nil)
		}
		return nil
	}))
	n, err := startOn(t, 1, fs, "n1")
	if err != nil {
		t.Fatal(err)
	}
	node.Store(n)
	n.HandleMessages(2, []pb.Message{{Group: g, From: 2, To: 1}})
	node.Store(nil)
	if n.replica(g) == nil {
		t.Fatal("no replica for the message's group")
	}
	if st, err := n.eng.LoadGroup(engine.GroupID(g)); err != nil || st.Meta == nil {
		t.Fatalf("the empty replica's meta is not stored: %+v %v", st, err)
	}
	if !firstSync.Load() {
		t.Fatal("no WAL sync seen: the test is not testing")
	}
	if registered.Load() {
		t.Fatal("the empty replica was registered while its meta was being synced")
	}
}
