package service

import (
	"cmp"
	"context"
	"fmt"
	"slices"
	"sync"

	"github.com/shardd/shardd/kvpb"
)

// Automatic splits. Once per balancing round the leader asks the live
// nodes for the load and size of the ranges they lead (Admin RangeLoad,
// gatherLoad, whose reports the load balancer uses too), and splits
// those past Config.SplitSize at the middle of their bytes, or past
// Config.SplitQPS at the median of the keys their leader sampled,
// through Server.split: the same recorded, resumable operation as a split
// a user asks for. At most Config.MaxConcurrentSplits splits are under
// way at once, the ranges furthest past a threshold first.

const (
	// defaultSplitSize keeps a range small enough that moving a replica
	// (a snapshot of the range) takes seconds, and large enough that a
	// node's ranges number in the thousands, not millions, for terabytes.
	defaultSplitSize = 64 << 20
	// defaultSplitQPS is the load from which one range is worth two. On
	// the README's 2-core machine a three-node cluster serves 10,000 to
	// 20,000 writes/s over many ranges (60,000 for one range, where
	// batching many writes per Paxos value makes each cheap): a range at
	// 2,500 ops/s takes an eighth to a quarter of what the cluster can do,
	// enough that its leader alone can leave one node busier than the
	// others, so it is split and the balancer can spread the halves'
	// leaders. Below that, a split costs a group more for little to
	// spread. CockroachDB's default (kv.range_split.load_qps_threshold)
	// is the same figure.
	defaultSplitQPS = 2500
)

// splitCandidate is a range to split, and why.
type splitCandidate struct {
	rangeID uint64
	key     []byte
	reason  string  // "size" or "load"
	figure  float64 // bytes or ops/s
	limit   float64 // the threshold figure passed
}

// gatherLoad asks the live nodes for the load and size of the ranges they
// lead (Admin RangeLoad), once per round, for automatic splits and load
// balancing: one call per node, whose answer lists the node's leaderships.
// It returns the reports by node, or nil if neither wants them this round
// (both are off, or splits are and the splits under way are at their
// limit).
func (s *Server) gatherLoad() map[uint64][]*kvpb.RangeLoad {
	sizeOn := s.cfg.SplitSize > 0
	s.mu.Lock()
	tm := s.term
	if tm == nil || tm.rm == nil {
		s.mu.Unlock()
		return nil
	}
	splits := (sizeOn || s.cfg.SplitQPS > 0) && s.splitsUnderWayLocked(tm) < s.cfg.MaxConcurrentSplits
	if !splits && s.cfg.LoadThreshold < 0 {
		s.mu.Unlock()
		return nil
	}
	live := s.liveNodesLocked(tm)
	addrs := map[uint64]string{}
	for _, id := range live {
		addrs[id] = tm.nodes[id].Addr
	}
	s.mu.Unlock()

	req := &kvpb.RangeLoadRequest{}
	if splits && sizeOn {
		req.SizeSplitThreshold = uint64(s.cfg.SplitSize)
	}
	var mu sync.Mutex
	reports := map[uint64][]*kvpb.RangeLoad{}
	var wg sync.WaitGroup
	for _, id := range live {
		wg.Go(func() {
			err := s.callNode(addrs[id], func(ctx context.Context, c kvpb.AdminClient) error {
				resp, err := c.RangeLoad(ctx, req)
				if err != nil {
					return err
				}
				mu.Lock()
				reports[id] = resp.Ranges
				mu.Unlock()
				return nil
			})
			if err != nil {
				s.log.Info("cannot learn a node's range load; its ranges are not split this round", "node", id, "err", err)
			}
		})
	}
	wg.Wait()
	return reports
}

// autoSplit is one round of automatic splits: it starts, each in its own
// goroutine, the splits of the ranges past a threshold in this round's
// load reports (see gatherLoad), as many as MaxConcurrentSplits leaves
// room for.
func (s *Server) autoSplit(byNode map[uint64][]*kvpb.RangeLoad) {
	if s.cfg.SplitSize <= 0 && s.cfg.SplitQPS <= 0 {
		return
	}
	var reports []*kvpb.RangeLoad
	for _, rls := range byNode {
		reports = append(reports, rls...)
	}
	// Sorted, so that ties between candidates go the same way whatever
	// order the nodes answered in.
	slices.SortFunc(reports, func(a, b *kvpb.RangeLoad) int { return cmp.Compare(a.RangeId, b.RangeId) })
	s.mu.Lock()
	tm := s.term
	if tm == nil || tm.rm == nil {
		s.mu.Unlock()
		return
	}
	todo := s.pickSplitsLocked(tm, reports)
	s.mu.Unlock()

	for _, c := range todo {
		s.log.Info("splitting a range automatically", "range", c.rangeID, "reason", c.reason,
			c.unit(), fmt.Sprintf("%.0f", c.figure), "threshold", fmt.Sprintf("%.0f", c.limit), "key", fmt.Sprintf("%q", c.key))
		s.wg.Go(func() {
			_, err := s.split(s.ctx, c.key)
			s.mu.Lock()
			delete(s.autoSplitting, c.rangeID)
			s.mu.Unlock()
			if err != nil {
				s.log.Info("automatic split not done; a later round sees the range again", "range", c.rangeID, "err", err)
			}
		})
	}
}

// pickSplitsLocked returns the ranges of reports to split now, and marks
// them as being split automatically: those past a threshold with a split
// key, not busy, whose report and map agree on the range, the furthest
// past their threshold first, as many as MaxConcurrentSplits leaves room
// for.
func (s *Server) pickSplitsLocked(tm *term, reports []*kvpb.RangeLoad) []splitCandidate {
	sizeOn, loadOn := s.cfg.SplitSize > 0, s.cfg.SplitQPS > 0
	var candidates []splitCandidate
	for _, rl := range reports {
		d, ok := tm.rm.Get(rl.RangeId)
		if !ok || d.Generation != rl.Generation || tm.ops[rl.RangeId] != nil || s.autoSplitting[rl.RangeId] {
			// The map and the report disagree on the range (one of them
			// is behind a split), or it is busy: a later round sees.
			continue
		}
		switch {
		case sizeOn && rl.Bytes >= uint64(s.cfg.SplitSize) && rl.SizeSplitKey != nil:
			candidates = append(candidates, splitCandidate{rl.RangeId, rl.SizeSplitKey, "size", float64(rl.Bytes), float64(s.cfg.SplitSize)})
		case loadOn && rl.OpsPerSecond >= s.cfg.SplitQPS && rl.LoadSplitKey != nil:
			candidates = append(candidates, splitCandidate{rl.RangeId, rl.LoadSplitKey, "load", rl.OpsPerSecond, s.cfg.SplitQPS})
		}
	}
	// The ranges furthest past their threshold first; a range reported
	// twice (by an old leader and a new one) is split once.
	slices.SortFunc(candidates, func(a, b splitCandidate) int { return cmp.Compare(b.figure/b.limit, a.figure/a.limit) })
	free := s.cfg.MaxConcurrentSplits - s.splitsUnderWayLocked(tm)
	var todo []splitCandidate
	for _, c := range candidates {
		if len(todo) >= free {
			break
		}
		if s.autoSplitting[c.rangeID] {
			continue
		}
		if s.autoSplitting == nil {
			s.autoSplitting = map[uint64]bool{}
		}
		s.autoSplitting[c.rangeID] = true
		todo = append(todo, c)
	}
	return todo
}

// unit names what a candidate's figure counts, for the log.
func (c splitCandidate) unit() string {
	if c.reason == "size" {
		return "bytes"
	}
	return "ops/s"
}

// splitsUnderWayLocked counts the splits under way: those recorded, and
// the automatic ones not yet recorded.
func (s *Server) splitsUnderWayLocked(tm *term) int {
	n := 0
	for _, op := range tm.ops {
		if op.GetSplit() != nil {
			n++
		}
	}
	for id := range s.autoSplitting {
		if tm.ops[id] == nil {
			n++
		}
	}
	return n
}
