package node

import (
	"context"
	"time"

	"github.com/shardd/shardd/group"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// transferPoll is how often awaitTransfer looks at the group. A transfer
// to a caught-up voter takes a few round trips, so this is what its
// caller waits beyond them at most.
const transferPoll = 2 * time.Millisecond

// awaitTransfer waits until the leader transfer of range r to node to,
// which this node leads and has started, completes: this replica follows
// to and has heard from it as leader. It fails with Aborted (run it again)
// if the group abandons the transfer (the target did not catch up within
// an election timeout), if leadership ends up elsewhere, or if no word
// from the target as leader came within an election timeout of the
// hand-off.
func (n *Node) awaitTransfer(ctx context.Context, r *replica, to uint64) error {
	tick := time.NewTicker(transferPoll)
	defer tick.Stop()
	for {
		st, err := await(ctx, n, func(done func(group.Status, error)) {
			n.onWorker(r, func() { done(r.rn.Status(), nil) })
		})
		if err != nil {
			return err
		}
		switch {
		case st.Role == group.Leader && st.Transferee == to:
			// Under way: the target is catching up.
		case st.Role == group.Leader && to == n.cfg.NodeID:
			return nil // asked to hand it to itself: nothing to do
		case st.Role == group.Leader:
			return status.Errorf(codes.Aborted, "range %d: node %d did not catch up within an election timeout: the transfer to it was abandoned, node %d still leads",
				r.id, to, n.cfg.NodeID)
		case st.Transferring:
			// Handed off: waiting to hear from the target as leader.
		case st.Leader == to:
			return nil
		case st.Leader == 0:
			return status.Errorf(codes.Aborted, "range %d: handed off to node %d, which did not show up as leader within an election timeout", r.id, to)
		default:
			return status.Errorf(codes.Aborted, "range %d: node %d leads, not node %d", r.id, st.Leader, to)
		}
		select {
		case <-tick.C:
		case <-ctx.Done():
			return status.FromContextError(ctx.Err()).Err()
		case <-n.stopped:
			return status.Error(codes.Unavailable, "node stopped")
		}
	}
}
