package engine

import (
	"flag"
	"math/rand/v2"
	"strconv"
	"testing"

	"github.com/cockroachdb/pebble/v2/vfs"
)

var (
	flagSeeds = flag.Int("engine.seeds", 0, "number of seeds for the randomized engine tests (0 = each test's default)")
	flagSeed  = flag.Uint64("engine.seed", 0, "run the randomized engine tests with this one seed only (0 = off)")
)

// forEachSeed runs fn as a subtest per seed. Seeds are 1..n (n from
// -engine.seeds or def), or the single -engine.seed. The subtest name holds
// the seed, and a failure prints how to replay it.
func forEachSeed(t *testing.T, def int, fn func(t *testing.T, rng *rand.Rand)) {
	t.Helper()
	seeds := make([]uint64, 0, def)
	switch {
	case *flagSeed != 0:
		seeds = append(seeds, *flagSeed)
	default:
		n := def
		if *flagSeeds > 0 {
			n = *flagSeeds
		}
		if testing.Short() && *flagSeeds == 0 {
			n = max(1, n/2)
		}
		for i := 1; i <= n; i++ {
			seeds = append(seeds, uint64(i))
		}
	}
	for _, seed := range seeds {
		t.Run("seed="+strconv.FormatUint(seed, 10), func(t *testing.T) {
			t.Cleanup(func() {
				if t.Failed() {
					t.Logf("replay with: go test ./engine/ -run '%s' -engine.seed=%d", t.Name(), seed)
				}
			})
			fn(t, rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15)))
		})
	}
}

// quietLogger drops Pebble's chatter; the engine's failLogger still sees
// Fatalf first.
type quietLogger struct{}

func (quietLogger) Infof(string, ...any)  {}
func (quietLogger) Errorf(string, ...any) {}
func (quietLogger) Fatalf(string, ...any) {}

// testOptions are small options on fs for fast tests.
func testOptions(fs vfs.FS) Options {
	o := DefaultOptions()
	o.FS = fs
	o.Dir = "db"
	o.CacheSize = 8 << 20
	o.MemTableSize = 4 << 20
	o.Logger = quietLogger{}
	return o
}

func mustOpen(t testing.TB, o Options) *Engine {
	t.Helper()
	e, err := Open(o)
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	return e
}

// openMem opens an engine on a fresh in-memory FS and closes it at cleanup.
func openMem(t testing.TB) *Engine {
	t.Helper()
	e := mustOpen(t, testOptions(vfs.NewMem()))
	t.Cleanup(func() { _ = e.Close() })
	return e
}

// commit builds a batch with fn and commits it.
func commit(t testing.TB, e *Engine, sync bool, fn func(b *Batch)) {
	t.Helper()
	b := e.NewBatch()
	defer b.Close()
	fn(b)
	if err := b.Commit(sync); err != nil {
		t.Fatalf("Commit: %v", err)
	}
}
