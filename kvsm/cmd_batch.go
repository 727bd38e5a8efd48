package kvsm

import (
	"bytes"
	"fmt"

	"github.com/shardd/shardd/kvpb"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

func init() { register(OpBatch, evalBatch) }

// NewBatch is the command of a batch request, and the lowest and highest
// keys it touches or checks (all must lie in one range).
func NewBatch(req *kvpb.BatchRequest) (c Command, lo, hi []byte) {
	c = Command{Session: SessionOf(req.Header), Op: OpBatch}
	span := func(k []byte) {
		if lo == nil || bytes.Compare(k, lo) < 0 {
			lo = k
		}
		if hi == nil || bytes.Compare(k, hi) > 0 {
			hi = k
		}
	}
	for _, op := range req.Ops {
		var sub Command
		switch o := op.Op.(type) {
		case *kvpb.BatchOp_Put:
			sub = Command{Op: OpPut, Key: o.Put.Key, Value: o.Put.Value}
		case *kvpb.BatchOp_Delete:
			sub = Command{Op: OpDelete, Key: o.Delete.Key}
		}
		span(sub.Key)
		c.Ops = append(c.Ops, sub)
	}
	for _, cond := range req.Conditions {
		c.Checks = append(c.Checks, Check{Key: cond.Key, Expected: cond.ExpectedValue, ExpectAbsent: cond.ExpectAbsent})
		span(cond.Key)
	}
	return c, lo, hi
}

func evalBatch(rw ReadWriter, c *Command) Result {
	if failed := failedCheck(rw, c.Checks); failed != 0 {
		return Result{FailedCheck: failed} // writes nothing
	}
	for i := range c.Ops {
		eval(rw, &c.Ops[i])
	}
	return Result{Succeeded: true}
}

// BatchResponse is a batch's answer, or, if one of its conditions did not
// hold, FailedPrecondition naming it: nothing was written.
func BatchResponse(req *kvpb.BatchRequest, res Result) (*kvpb.BatchResponse, error) {
	if res.FailedCheck != 0 {
		return nil, failedCondition(req, res.FailedCheck-1)
	}
	return &kvpb.BatchResponse{}, nil
}

// failedCondition is the error of a conditional batch whose condition i
// did not hold.
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
