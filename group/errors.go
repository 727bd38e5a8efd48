package group

import (
	"errors"
	"fmt"
)

// NotLeaderError is returned for a request that only the leader may serve.
// Leader is the replica this one believes leads, or zero if it knows none.
type NotLeaderError struct {
	Leader uint64
}

func (e *NotLeaderError) Error() string {
	if e.Leader == 0 {
		return "group: not the leader; leader unknown"
	}
	return fmt.Sprintf("group: not the leader; try replica %d", e.Leader)
}

var (
	// ErrProposalDropped means the leader cannot take a proposal now: its
	// pipeline window is full, a configuration change or a leader transfer
	// is in progress. The caller may retry.
	ErrProposalDropped = errors.New("group: proposal dropped")
	// ErrInvalidConfChange means a configuration change does not apply to the
	// current configuration (for example promoting a replica that is not a
	// learner).
	ErrInvalidConfChange = errors.New("group: invalid configuration change")
	// ErrConfChangeInFlight means a configuration change was refused
	// because another one is proposed and not chosen yet: one change at a
	// time. It matches ErrProposalDropped too. The caller may retry once
	// the change in flight is applied.
	ErrConfChangeInFlight = fmt.Errorf("group: a configuration change is in flight: %w", ErrProposalDropped)
	// ErrLearnerBehind means a learner can't be promoted yet: it does not
	// hold the configuration that made it a learner (it has had no
	// snapshot), or it lags the chosen point by more than MaxInflight.
	ErrLearnerBehind = errors.New("group: learner not caught up")
	// ErrTransferTargetDown means a leader transfer was refused because the
	// target's node does not support this one (see Liveness): it is likely
	// down or cut off, and waiting for it would only hold proposals back.
	ErrTransferTargetDown = errors.New("group: transfer target's node is not live")
)
