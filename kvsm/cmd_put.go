package kvsm

import "github.com/shardd/shardd/kvpb"

func init() { register(OpPut, evalPut) }

// NewPut is the command of a put request.
func NewPut(req *kvpb.PutRequest) Command {
	return Command{Session: SessionOf(req.Header), Op: OpPut, Key: req.Key, Value: req.Value}
}

func evalPut(rw ReadWriter, c *Command) Result {
	rw.Put(c.Key, c.Value)
	return Result{Succeeded: true}
}

// PutResponse is a put's answer.
func PutResponse(Result) *kvpb.PutResponse { return &kvpb.PutResponse{} }
