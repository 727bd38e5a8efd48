package kvsm

import "github.com/shardd/shardd/kvpb"

func init() { register(OpCAS, evalCAS) }

// NewCAS is the command of a compare-and-swap request.
func NewCAS(req *kvpb.CompareAndSwapRequest) Command {
	return Command{Session: SessionOf(req.Header), Op: OpCAS, Key: req.Key, Value: req.NewValue,
		Expected: req.ExpectedValue, ExpectAbsent: req.ExpectAbsent, Delete: req.Delete}
}

func evalCAS(rw ReadWriter, c *Command) Result {
	cur, found := rw.Get(c.Key)
	ok := expectationHolds(cur, found, c.Expected, c.ExpectAbsent)
	if ok {
		if c.Delete {
			rw.Delete(c.Key)
		} else {
			rw.Put(c.Key, c.Value)
		}
	}
	return Result{Found: found, Value: cur, Succeeded: ok}
}

// CASResponse is a compare-and-swap's answer: whether it swapped, and
// what the key held before.
func CASResponse(res Result) *kvpb.CompareAndSwapResponse {
	return &kvpb.CompareAndSwapResponse{Succeeded: res.Succeeded, Found: res.Found, Value: res.Value}
}
