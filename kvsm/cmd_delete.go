package kvsm

import "github.com/shardd/shardd/kvpb"

func init() { register(OpDelete, evalDelete) }

// NewDelete is the command of a delete request.
func NewDelete(req *kvpb.DeleteRequest) Command {
	return Command{Session: SessionOf(req.Header), Op: OpDelete, Key: req.Key}
}

func evalDelete(rw ReadWriter, c *Command) Result {
	_, found := rw.Get(c.Key)
	rw.Delete(c.Key)
	return Result{Found: found, Succeeded: true}
}

// DeleteResponse is a delete's answer: whether the key existed.
func DeleteResponse(res Result) *kvpb.DeleteResponse {
	return &kvpb.DeleteResponse{Found: res.Found}
}
