package node

import (
	"context"
	"slices"
	"time"

	"github.com/shardd/shardd/kvpb"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// Draining. Before a node stops on purpose (a rolling restart, a
// decommission), it hands every leadership it holds to another voter, so
// that its ranges pause for a leader transfer rather than for an election
// timeout after it is gone. While draining it keeps serving as a follower,
// tells the placement service (which then moves nothing onto it), and
// hands off any leadership it gains again (an election it won because a
// peer was down) once a peer can take it.

// drainRound is how often a draining node looks for leaderships to hand
// off: each round starts the transfers the last one did not finish.
const drainRound = 20 * time.Millisecond

// hopelessRounds ends a drain early once, for that many rounds in a row,
// no range the node leads had a voter up to take it (the last node of a
// cluster that stops): waiting for the timeout would change nothing.
const hopelessRounds = 5

// Draining reports whether the node is draining.
func (n *Node) Draining() bool { return n.draining.Load() }

// Drain hands off every leadership of the node until it leads no range or
// ctx ends, and returns how many it still leads. The node stays draining
// afterwards. A range is handed to a voter whose node supports ours (so it
// is up), in turn, so that the load spreads.
func (n *Node) Drain(ctx context.Context) (left int) {
	if !n.draining.Swap(true) {
		n.updateHealth()
		n.log.Info("draining: handing off leaderships")
	}
	start := time.Now()
	t := time.NewTicker(drainRound)
	defer t.Stop()
	hopeless := 0
	for round := 0; ; round++ {
		led := n.led()
		if len(led) == 0 {
			n.log.Info("drained: the node leads no range", "took", time.Since(start).Round(time.Millisecond))
			return 0
		}
		targets := 0
		for i, r := range led {
			if n.handOffTarget(r, round+i) != 0 {
				targets++
			}
			n.onWorker(r, func() { n.handOff(r, round+i) })
		}
		if hopeless = hopeless + 1; targets > 0 {
			hopeless = 0
		}
		if hopeless == hopelessRounds {
			n.log.Info("drain ended: no other replica of the ranges the node leads is up", "leading", len(led))
			return len(led)
		}
		select {
		case <-ctx.Done():
			n.log.Info("drain ended before every leadership was handed off", "leading", len(led))
			return len(led)
		case <-n.stopped:
			return len(led)
		case <-t.C:
		}
	}
}

// led returns the initialized replicas this node leads.
func (n *Node) led() []*replica {
	n.mu.RLock()
	defer n.mu.RUnlock()
	var out []*replica
	for _, r := range n.replicas {
		if r.leader.Load() == n.cfg.NodeID && len(r.desc.Load().GetReplicas()) > 0 {
			out = append(out, r)
		}
	}
	return out
}

// handOff starts handing r's leadership to a voter, unless a transfer is
// under way (a new target every round would restart it before it could
// finish); it runs on r's worker.
func (n *Node) handOff(r *replica, k int) {
	if r.rn.Transferring() {
		return
	}
	if to := n.handOffTarget(r, k); to != 0 {
		_ = r.rn.TransferLeader(to)
	}
}

// handOffTarget picks the voter of r's range, other than us, to hand its
// leadership to: the k-th (mod their number) among those whose nodes
// support ours, or 0 if none does.
func (n *Node) handOffTarget(r *replica, k int) uint64 {
	now := n.Now()
	var up []uint64
	for _, v := range votersOf(r.desc.Load()).Voters {
		if v == n.cfg.NodeID {
			continue
		}
		if _, until := n.live.SupportFrom(v); now < until {
			up = append(up, v)
		}
	}
	if len(up) == 0 {
		return 0
	}
	slices.Sort(up)
	return up[k%len(up)]
}

// Drain implements the Admin RPC: see kvpb.AdminServer.
func (s *adminServer) Drain(ctx context.Context, req *kvpb.DrainRequest) (*kvpb.DrainResponse, error) {
	timeout := time.Duration(req.GetTimeoutMillis()) * time.Millisecond
	if timeout <= 0 {
		return nil, status.Error(codes.InvalidArgument, "timeout_millis must be positive")
	}
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	left := s.n.Drain(ctx)
	if req.GetStop() {
		s.n.stopRequested.Store(true)
		// After the answer has left: Stop ends the gRPC server.
		go func() {
			time.Sleep(100 * time.Millisecond)
			s.n.Stop()
		}()
	}
	return &kvpb.DrainResponse{LeadersLeft: uint32(left)}, nil
}

// StopRequested reports whether the node stopped because an operator asked
// it to (Admin Drain with stop), rather than by itself.
func (n *Node) StopRequested() bool { return n.stopRequested.Load() }
