package client

import (
	"bytes"
	"context"
	"errors"
	"slices"
	"sync"
	"time"

	"github.com/shardd/shardd/kvpb"
	"github.com/shardd/shardd/placementpb"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"
)

// Client talks to the placement service: it sends every call to the
// leader, following NotPlacementLeader hints and trying the other
// processes when one is unreachable or has no leader, with a bounded
// number of attempts and backoff. It is safe for concurrent use.
type Client struct {
	opts []grpc.DialOption

	mu    sync.Mutex
	addrs []string // the known placement processes
	cur   int      // index in addrs of the one tried first
	conns map[string]*grpc.ClientConn
}

// New returns a Client of the placement processes at addrs. Without
// opts it connects without transport security. Close it when done.
func New(addrs []string, opts ...grpc.DialOption) (*Client, error) {
	if len(addrs) == 0 {
		return nil, errors.New("placement client: no placement addresses given")
	}
	if len(opts) == 0 {
		opts = []grpc.DialOption{grpc.WithTransportCredentials(insecure.NewCredentials())}
	}
	return &Client{opts: opts, addrs: slices.Clone(addrs), conns: map[string]*grpc.ClientConn{}}, nil
}

// Close closes the Client's connections.
func (c *Client) Close() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	var errs []error
	for _, conn := range c.conns {
		errs = append(errs, conn.Close())
	}
	clear(c.conns)
	return errors.Join(errs...)
}

func (c *Client) target() (string, placementpb.PlacementClient, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	addr := c.addrs[c.cur]
	conn := c.conns[addr]
	if conn == nil {
		var err error
		if conn, err = grpc.NewClient(addr, c.opts...); err != nil {
			return addr, nil, err
		}
		c.conns[addr] = conn
	}
	return addr, placementpb.NewPlacementClient(conn), nil
}

// redirect makes the next call go to the leader the error names, or, if it
// names none, to the next known process. It reports whether the error is
// worth a retry.
func (c *Client) redirect(addr string, err error) bool {
	st := status.Convert(err)
	switch st.Code() {
	case codes.FailedPrecondition:
		for _, d := range st.Details() {
			if nl, ok := d.(*placementpb.NotPlacementLeader); ok && nl.LeaderAddr != "" {
				c.mu.Lock()
				i := slices.Index(c.addrs, nl.LeaderAddr)
				if i < 0 {
					c.addrs = append(c.addrs, nl.LeaderAddr)
					i = len(c.addrs) - 1
				}
				c.cur = i
				c.mu.Unlock()
				return true
			}
		}
		return false
	case codes.Unavailable, codes.DeadlineExceeded:
		c.mu.Lock()
		if c.addrs[c.cur] == addr {
			c.cur = (c.cur + 1) % len(c.addrs)
		}
		c.mu.Unlock()
		return true
	}
	return false
}

// maxAttempts bounds one call's tries; the backoff between them grows from
// 20ms to 500ms, so a call gives up after roughly 15s at most (sooner if
// ctx ends), which outlasts a placement leader's failover.
const maxAttempts = 40

// perAttemptTimeout bounds one try, so that a hung process costs a try,
// not the whole call.
const perAttemptTimeout = 3 * time.Second

func call[T any](ctx context.Context, c *Client, fn func(context.Context, placementpb.PlacementClient) (T, error)) (T, error) {
	var zero T
	backoff := 20 * time.Millisecond
	var err error
	for range maxAttempts {
		var addr string
		var pc placementpb.PlacementClient
		if addr, pc, err = c.target(); err == nil {
			actx, cancel := context.WithTimeout(ctx, perAttemptTimeout)
			var v T
			v, err = fn(actx, pc)
			cancel()
			if err == nil {
				return v, nil
			}
		}
		if ctx.Err() != nil {
			return zero, status.FromContextError(ctx.Err()).Err()
		}
		if !c.redirect(addr, err) {
			return zero, err
		}
		select {
		case <-time.After(backoff):
		case <-ctx.Done():
			return zero, status.FromContextError(ctx.Err()).Err()
		}
		backoff = min(2*backoff, 500*time.Millisecond)
	}
	return zero, err
}

// RegisterNode registers a node, or heartbeats it with its load.
func (c *Client) RegisterNode(ctx context.Context, req *placementpb.RegisterNodeRequest) (*placementpb.RegisterNodeResponse, error) {
	return call(ctx, c, func(ctx context.Context, pc placementpb.PlacementClient) (*placementpb.RegisterNodeResponse, error) {
		return pc.RegisterNode(ctx, req)
	})
}

// Lookup returns the descriptor of the range holding key, with the
// addresses of its replicas' nodes.
func (c *Client) Lookup(ctx context.Context, key []byte) (*placementpb.LookupResponse, error) {
	return call(ctx, c, func(ctx context.Context, pc placementpb.PlacementClient) (*placementpb.LookupResponse, error) {
		return pc.Lookup(ctx, &placementpb.LookupRequest{Key: key})
	})
}

// ListRanges returns one page of descriptors; see ListRangesRequest.
func (c *Client) ListRanges(ctx context.Context, pageToken []byte, limit uint32) (*placementpb.ListRangesResponse, error) {
	return call(ctx, c, func(ctx context.Context, pc placementpb.PlacementClient) (*placementpb.ListRangesResponse, error) {
		return pc.ListRanges(ctx, &placementpb.ListRangesRequest{PageToken: pageToken, Limit: limit})
	})
}

// AllRanges pages through the whole map, pageSize descriptors at a time.
// Pages may come from different revisions; Watch gives one consistent map.
func (c *Client) AllRanges(ctx context.Context, pageSize uint32) ([]*kvpb.RangeDescriptor, error) {
	var all []*kvpb.RangeDescriptor
	var token []byte
	for {
		resp, err := c.ListRanges(ctx, token, pageSize)
		if err != nil {
			return nil, err
		}
		all = append(all, resp.Ranges...)
		if len(resp.NextPageToken) == 0 {
			return all, nil
		}
		token = resp.NextPageToken
	}
}

// SplitRange cuts the range holding key at it and returns both halves.
// An attempt whose outcome is unknown (the placement leader failed, or the
// attempt timed out) is tried again; if the next finds the key a range
// boundary, the split happened (placement finished it), and its halves are
// the answer: a caller is never told that a split that happened was
// refused.
func (c *Client) SplitRange(ctx context.Context, key []byte) (*placementpb.SplitRangeResponse, error) {
	unsure := false // an earlier attempt may have started the split
	return call(ctx, c, func(ctx context.Context, pc placementpb.PlacementClient) (*placementpb.SplitRangeResponse, error) {
		resp, err := pc.SplitRange(ctx, &placementpb.SplitRangeRequest{SplitKey: key})
		if unsure && status.Code(err) == codes.FailedPrecondition {
			if done := splitAt(ctx, pc, key); done != nil {
				return done, nil
			}
		}
		unsure = unsure || outcomeUnknown(err)
		return resp, err
	})
}

// outcomeUnknown reports whether an attempt that failed with err may have
// started its operation: it failed in flight, not with an answer.
func outcomeUnknown(err error) bool {
	c := status.Code(err)
	return c == codes.Unavailable || c == codes.DeadlineExceeded
}

// splitAt returns the ranges on either side of key if the map has a
// boundary there, else nil.
func splitAt(ctx context.Context, pc placementpb.PlacementClient, key []byte) *placementpb.SplitRangeResponse {
	var left *kvpb.RangeDescriptor
	var token []byte
	for {
		page, err := pc.ListRanges(ctx, &placementpb.ListRangesRequest{PageToken: token})
		if err != nil {
			return nil
		}
		for _, d := range page.Ranges {
			switch {
			case bytes.Equal(d.EndKey, key):
				left = d
			case bytes.Equal(d.StartKey, key) && left != nil:
				return &placementpb.SplitRangeResponse{Left: left, Right: d, Revision: page.Revision}
			}
		}
		if token = page.NextPageToken; len(token) == 0 {
			return nil
		}
	}
}

// TransferLeader moves the leadership of range rangeID to node to, and
// answers once it leads; see the Placement service.
func (c *Client) TransferLeader(ctx context.Context, rangeID, to uint64) (*placementpb.TransferLeaderResponse, error) {
	return call(ctx, c, func(ctx context.Context, pc placementpb.PlacementClient) (*placementpb.TransferLeaderResponse, error) {
		return pc.TransferLeader(ctx, &placementpb.TransferLeaderRequest{RangeId: rangeID, TargetNodeId: to})
	})
}

// MoveReplica moves range rangeID's replica from node from to node to,
// and returns the range's descriptor once the move is done. A move
// already under way answers Unavailable, and the call is tried again
// until it is done (a retry of the same move waits for it). As with
// SplitRange, a retry after an attempt whose outcome is unknown that is
// refused because the move's effect already holds (from holds no replica
// of the range, to a voter) answers with the range's descriptor.
func (c *Client) MoveReplica(ctx context.Context, rangeID, from, to uint64) (*placementpb.MoveReplicaResponse, error) {
	unsure := false // an earlier attempt may have started the move
	return call(ctx, c, func(ctx context.Context, pc placementpb.PlacementClient) (*placementpb.MoveReplicaResponse, error) {
		resp, err := pc.MoveReplica(ctx, &placementpb.MoveReplicaRequest{RangeId: rangeID, FromNodeId: from, ToNodeId: to})
		if unsure && status.Code(err) == codes.InvalidArgument {
			d, rev := rangeByID(ctx, pc, rangeID)
			if moved(d, from, to) {
				return &placementpb.MoveReplicaResponse{Descriptor_: d, Revision: rev}, nil
			}
		}
		unsure = unsure || outcomeUnknown(err)
		return resp, err
	})
}

// moved reports whether descriptor d shows a move from node from to node
// to done: to is a voter and from holds no replica.
func moved(d *kvpb.RangeDescriptor, from, to uint64) bool {
	done := false
	for _, r := range d.GetReplicas() {
		switch r.GetNodeId() {
		case from:
			return false
		case to:
			done = r.GetRole() == kvpb.ReplicaRole_VOTER
		}
	}
	return done
}

// rangeByID returns range id's descriptor in the map and the map's
// revision, or nil.
func rangeByID(ctx context.Context, pc placementpb.PlacementClient, id uint64) (*kvpb.RangeDescriptor, uint64) {
	var token []byte
	for {
		page, err := pc.ListRanges(ctx, &placementpb.ListRangesRequest{PageToken: token})
		if err != nil {
			return nil, 0
		}
		for _, d := range page.Ranges {
			if d.RangeId == id {
				return d, page.Revision
			}
		}
		if token = page.NextPageToken; len(token) == 0 {
			return nil, 0
		}
	}
}

// ListOperations lists the operations under way on ranges.
func (c *Client) ListOperations(ctx context.Context) (*placementpb.ListOperationsResponse, error) {
	return call(ctx, c, func(ctx context.Context, pc placementpb.PlacementClient) (*placementpb.ListOperationsResponse, error) {
		return pc.ListOperations(ctx, &placementpb.ListOperationsRequest{})
	})
}

// ListNodes lists the registered nodes with liveness and load.
func (c *Client) ListNodes(ctx context.Context) (*placementpb.ListNodesResponse, error) {
	return call(ctx, c, func(ctx context.Context, pc placementpb.PlacementClient) (*placementpb.ListNodesResponse, error) {
		return pc.ListNodes(ctx, &placementpb.ListNodesRequest{})
	})
}

// Watch follows the map from fromRevision (0: from scratch), calling fn
// with every event in order, until ctx ends or fn returns an error, which
// Watch returns. When the stream breaks (the leader moved or failed) it
// reconnects, to the new leader, from the last revision it delivered.
func (c *Client) Watch(ctx context.Context, fromRevision uint64, fn func(*placementpb.WatchEvent) error) error {
	at := fromRevision
	backoff := 20 * time.Millisecond
	for {
		addr, pc, err := c.target()
		if err == nil {
			var stream placementpb.Placement_WatchClient
			if stream, err = pc.Watch(ctx, &placementpb.WatchRequest{FromRevision: at}); err == nil {
				for {
					var ev *placementpb.WatchEvent
					if ev, err = stream.Recv(); err != nil {
						break
					}
					backoff = 20 * time.Millisecond
					if ferr := fn(ev); ferr != nil {
						return ferr
					}
					at = ev.Revision
				}
			}
		}
		if ctx.Err() != nil {
			return status.FromContextError(ctx.Err()).Err()
		}
		if !c.redirect(addr, err) {
			return err
		}
		select {
		case <-time.After(backoff):
		case <-ctx.Done():
			return status.FromContextError(ctx.Err()).Err()
		}
		backoff = min(2*backoff, 500*time.Millisecond)
	}
}
