package node

import (
	"fmt"

	"github.com/shardd/shardd/batch"
	"github.com/shardd/shardd/kvpb"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// failedCheck evaluates a conditional batch's checks against the state the
// batch is applied to (the engine plus the writes applied before it in the
// same cycle). It returns the index of the first check that does not hold,
// plus one, or zero if they all hold. Every replica evaluates the same
// checks against the same state, so they all agree.
func (o *overlay) failedCheck(checks []batch.Check) int {
	for i := range checks {
		k := &checks[i]
		if cur, found := o.get(k.Key); !expectationHolds(cur, found, k.Expected, k.ExpectAbsent) {
			return i + 1
		}
	}
	return 0
}

// expectationHolds reports whether a key's current state (cur, found)
// is the expected value, or, with expectAbsent, no value: the comparison
// of a CAS and of a batch's checks.
func expectationHolds(cur []byte, found bool, expected []byte, expectAbsent bool) bool {
	if expectAbsent {
		return !found
	}
	return found && string(cur) == string(expected)
}

// failedCondition is the error of a conditional batch whose condition i
// did not hold: nothing was written.
func failedCondition(req *kvpb.BatchRequest, i int) error {
	msg := fmt.Sprintf("batch not applied: condition %d failed", i)
	if i >= 0 && i < len(req.Conditions) {
		c := req.Conditions[i]
		if c.ExpectAbsent {
			msg = fmt.Sprintf("batch not applied: condition %d failed: key %q exists", i, c.Key)
		} else {
			msg = fmt.Sprintf("batch not applied: condition %d failed: key %q does not hold the expected value", i, c.Key)
		}
	}
	return status.Error(codes.FailedPrecondition, msg)
}
