package linz

import (
	"context"
	"fmt"
	"maps"
	"math/rand/v2"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/anishathalye/porcupine"
	"github.com/shardd/shardd/router"
)

// Workload is concurrent clients that get, put and compare-and-swap a few
// keys through router Clients, each operation recorded in History: the
// load under which the linearizability and chaos tests inject faults.
// Workers write values unique to the run ("<worker>.<seq>"), and a CAS
// expects the last value its worker saw in the key, so that CAS chains
// form wherever no other worker wrote in between.
type Workload struct {
	// History records every operation.
	History *History
	// Routers are the clients: worker i uses Routers[i%len(Routers)].
	Routers []*router.Client
	// Keys are the keys the workers pick from, uniformly.
	Keys []string
	// OpTimeout bounds one operation, its retries included.
	OpTimeout time.Duration
	// WriteOncePercent of the operations put a key of their own, outside
	// the history ("<key>/<value>", in the same range as key unless a
	// split cut between them); Written lists those acknowledged, and
	// CheckWritten reads them back. The default value is 0: none.
	WriteOncePercent int
	// Read, if set, serves the workers' gets instead of rc.Get: a
	// deliberately broken client, to show that the check finds what it
	// lets through.
	Read func(ctx context.Context, rc *router.Client, key string) ([]byte, error)

	// written are, by worker, the write-once keys acknowledged.
	written [][]string

	stop    chan struct{}
	stopped sync.Once
	wg      sync.WaitGroup
	// clients numbers porcupine's processes: one per worker, and a new
	// one after each unknown outcome (an operation left open to the end
	// of the history must be its process's last).
	clients atomic.Int64
}

// Start runs workers goroutines until Stop; worker i's choices come from
// rand.NewPCG(seed, i).
func (w *Workload) Start(workers int, seed uint64) {
	w.stop = make(chan struct{})
	w.written = make([][]string, workers)
	w.clients.Store(int64(workers))
	for i := range workers {
		w.wg.Go(func() { w.run(i, rand.New(rand.NewPCG(seed, uint64(i)))) })
	}
}

// Stop stops the workers and waits for them. It is idempotent.
func (w *Workload) Stop() {
	w.stopped.Do(func() { close(w.stop) })
	w.wg.Wait()
}

// run is one worker: WriteOncePercent write-once puts, and of the rest
// 40% gets, 35% puts, 25% compare-and-swaps.
func (w *Workload) run(worker int, rng *rand.Rand) {
	rc := w.Routers[worker%len(w.Routers)]
	client := worker
	seen := map[string]string{}
	for seq := 0; ; seq++ {
		select {
		case <-w.stop:
			return
		default:
		}
		key := w.Keys[rng.IntN(len(w.Keys))]
		value := fmt.Sprintf("%d.%d", worker, seq)
		if w.WriteOncePercent > 0 && rng.IntN(100) < w.WriteOncePercent {
			if err := w.putOnce(rc, key, value); err != nil {
				time.Sleep(time.Duration(10+rng.IntN(40)) * time.Millisecond)
			} else {
				w.written[worker] = append(w.written[worker], onceKey(key, value))
			}
			continue
		}
		var in Input
		switch p := rng.IntN(100); {
		case p < 40:
			in = Input{Kind: Get, Key: key}
		case p < 75:
			in = Input{Kind: Put, Key: key, Value: value}
		default:
			in = Input{Kind: CAS, Key: key, Expected: seen[key], Value: value}
		}
		out, unknown, err := w.Do(client, rc, in)
		if unknown {
			client = int(w.clients.Add(1)) - 1
		}
		switch {
		case err != nil:
			// Back off a little, so that a worker does not spin on a
			// cluster that refuses everything.
			time.Sleep(time.Duration(10+rng.IntN(40)) * time.Millisecond)
		case in.Kind == Put || out.Swapped:
			seen[key] = value
		default:
			seen[key] = out.Value
		}
	}
}

// Do runs one operation through rc as porcupine process client, bounded
// by OpTimeout, and records it. It returns what the store answered, and
// whether the outcome is unknown.
func (w *Workload) Do(client int, rc *router.Client, in Input) (out Output, unknown bool, err error) {
	ctx, cancel := context.WithTimeout(context.Background(), w.OpTimeout)
	defer cancel()
	call := w.History.Invoke(client, in)
	switch in.Kind {
	case Get:
		var v []byte
		if w.Read != nil {
			v, err = w.Read(ctx, rc, in.Key)
		} else {
			v, _, err = rc.Get(ctx, []byte(in.Key))
		}
		out.Value = string(v)
	case Put:
		err = rc.Put(ctx, []byte(in.Key), []byte(in.Value))
	case CAS:
		var r router.CASResult
		r, err = rc.CompareAndSwap(ctx, router.CAS{Key: []byte(in.Key), Expected: []byte(in.Expected),
			ExpectAbsent: in.Expected == "", NewValue: []byte(in.Value)})
		out.Swapped, out.Value = r.Swapped, string(r.Current)
	}
	return out, call.Finish(out, err), err
}

// onceKey is the write-once key of value under register key.
func onceKey(key, value string) string { return key + "/" + value }

// putOnce puts the write-once key of value under key, bounded by
// OpTimeout.
func (w *Workload) putOnce(rc *router.Client, key, value string) error {
	ctx, cancel := context.WithTimeout(context.Background(), w.OpTimeout)
	defer cancel()
	return rc.Put(ctx, []byte(onceKey(key, value)), []byte(value))
}

// Written returns the write-once keys whose put was acknowledged, after
// Stop.
func (w *Workload) Written() []string { return slices.Concat(w.written...) }

// CheckWritten reads back, after Stop, every write-once key whose put was
// acknowledged, and returns a line for each that is missing or holds
// another value: an acknowledged write lost. It scans the write-once keys
// of each register key (one Scan each, within timeout), not one Get per
// key: a long run writes tens of thousands.
func (w *Workload) CheckWritten(timeout time.Duration) []string {
	var lost []string
	for _, key := range w.Keys {
		ctx, cancel := context.WithTimeout(context.Background(), timeout)
		// The write-once keys of key are key + "/" + value: they sort in
		// [key + "/", key + "0"), since '0' follows '/'.
		kvs, _, err := w.Routers[0].Scan(ctx, []byte(onceKey(key, "")), []byte(key+"0"), 0)
		cancel()
		if err != nil {
			return append(lost, fmt.Sprintf("scanning the write-once keys of %s: %v", key, err))
		}
		found := make(map[string]string, len(kvs))
		for _, kv := range kvs {
			found[string(kv.Key)] = string(kv.Value)
		}
		for _, k := range w.Written() {
			if !strings.HasPrefix(k, onceKey(key, "")) {
				continue
			}
			if v, ok := found[k]; !ok || v != k[len(key)+1:] {
				lost = append(lost, fmt.Sprintf("acknowledged write %s=%s: read %q (found %v)", k, k[len(key)+1:], v, ok))
			}
		}
	}
	return lost
}

// ReadAll reads every key once more, after Stop, each on a process of its
// own, and returns what it read by key. The reads are in the history, held
// to the same rules as every other operation; a read that fails is an
// error.
func (w *Workload) ReadAll() (map[string]string, error) {
	final := map[string]string{}
	for _, k := range w.Keys {
		out, _, err := w.Do(int(w.clients.Add(1))-1, w.Routers[0], Input{Kind: Get, Key: k})
		if err != nil {
			return final, fmt.Errorf("final read of %s: %w", k, err)
		}
		final[k] = out.Value
	}
	return final, nil
}

// LostWrites checks that each key's final value, read after every other
// operation returned, is the value of the key's last acknowledged write
// (the one that returned last), or of a write that may have come after
// it: one that had not returned when the last acknowledged one was
// invoked, or whose outcome is unknown. It returns a line for each key
// that breaks this: an acknowledged write lost. Linearizability implies
// it; this check is cheap, never runs out of time, and names the write.
func LostWrites(ops []porcupine.Operation, final map[string]string) []string {
	type write struct {
		call, ret int64
		unknown   bool
	}
	writes := map[string]map[string]write{} // key -> value -> its write
	last := map[string]porcupine.Operation{}
	for _, op := range ops {
		in, out := op.Input.(Input), op.Output.(Output)
		if in.Kind == Get || (in.Kind == CAS && !out.Unknown && !out.Swapped) {
			continue
		}
		if writes[in.Key] == nil {
			writes[in.Key] = map[string]write{}
		}
		writes[in.Key][in.Value] = write{op.Call, op.Return, out.Unknown}
		if l, ok := last[in.Key]; !out.Unknown && (!ok || op.Return > l.Return) {
			last[in.Key] = op
		}
	}
	var lost []string
	for _, key := range slices.Sorted(maps.Keys(last)) {
		l, v := last[key], final[key]
		if v == l.Input.(Input).Value {
			continue
		}
		w, ok := writes[key][v]
		if !ok || (!w.unknown && w.ret < l.Call) {
			lost = append(lost, fmt.Sprintf("key %s reads %s at the end: the last acknowledged write is lost: %s",
				key, quote(v), line(l)))
		}
	}
	return lost
}

// LongestGap returns the longest stretch within [from, to] (times since
// the history began) with no successful operation on any of keys, and
// when it began: how long a fault or a range operation stalled the
// clients of those keys.
func LongestGap(ops []porcupine.Operation, keys []string, from, to time.Duration) (gap, at time.Duration) {
	var ends []int64
	for _, op := range ops {
		if !op.Output.(Output).Unknown && slices.Contains(keys, op.Input.(Input).Key) &&
			op.Return >= int64(from) && op.Return <= int64(to) {
			ends = append(ends, op.Return)
		}
	}
	slices.Sort(ends)
	last := int64(from)
	for _, e := range append(ends, int64(to)) {
		if time.Duration(e-last) > gap {
			gap, at = time.Duration(e-last), time.Duration(last)
		}
		last = e
	}
	return gap, at
}
