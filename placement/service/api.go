package service

import (
	"context"
	"errors"
	"fmt"

	"github.com/shardd/shardd/kvpb"
	"github.com/shardd/shardd/placementpb"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// api implements the Placement gRPC service on a Server.
type api struct {
	placementpb.UnimplementedPlacementServer
	s *Server
}

const (
	defaultListLimit = 1000
	maxKeyBytes      = kvpb.DefaultMaxKeyBytes
	// maxIDBytes bounds a store or cluster id; shardd's are 26 bytes.
	maxIDBytes = 128
)

// notLeader is the answer of a process that does not lead: where the
// leader is, if known.
func (s *Server) notLeader() error {
	id, addr := s.leaderHint()
	switch {
	case id == s.cfg.ID:
		return status.Errorf(codes.Unavailable, "placement process %d is taking over as leader; retry shortly", s.cfg.ID)
	case id == 0:
		return status.Errorf(codes.Unavailable, "placement process %d knows no leader: are a majority of the placement processes up? retry shortly", s.cfg.ID)
	}
	st, err := status.New(codes.FailedPrecondition,
		fmt.Sprintf("placement process %d is not the leader; the leader is process %d at %s", s.cfg.ID, id, addr)).
		WithDetails(&placementpb.NotPlacementLeader{LeaderId: id, LeaderAddr: addr})
	if err != nil {
		return status.Error(codes.FailedPrecondition, err.Error())
	}
	return st.Err()
}

// leading returns the current term, or the not-leader error.
func (s *Server) leading() (*term, error) {
	s.mu.Lock()
	tm := s.term
	s.mu.Unlock()
	if tm == nil {
		return nil, s.notLeader()
	}
	return tm, nil
}

// writeError turns a failed mutation into the caller's error.
func (s *Server) writeError(err error) error {
	if errors.Is(err, errNotLeading) {
		return s.notLeader()
	}
	switch status.Code(err) {
	case codes.Canceled, codes.DeadlineExceeded:
		return err
	}
	return status.Errorf(codes.Unavailable, "placement write failed, retry: %v", err)
}

func (a *api) RegisterNode(ctx context.Context, req *placementpb.RegisterNodeRequest) (*placementpb.RegisterNodeResponse, error) {
	switch {
	case req.GetNodeId() == 0:
		return nil, status.Error(codes.InvalidArgument, "node_id must not be zero")
	case req.GetAddr() == "":
		return nil, status.Error(codes.InvalidArgument, "addr must be the node's gRPC host:port")
	case len(req.GetAddr()) > 1024:
		return nil, status.Error(codes.InvalidArgument, "addr is longer than 1024 bytes")
	case req.GetStoreId() == "":
		return nil, status.Error(codes.InvalidArgument, "store_id must be the id of the node's store")
	case len(req.GetStoreId()) > maxIDBytes || len(req.GetClusterId()) > maxIDBytes:
		return nil, status.Errorf(codes.InvalidArgument, "store_id and cluster_id are at most %d bytes", maxIDBytes)
	}
	if _, err := a.s.leading(); err != nil {
		return nil, err
	}
	resp, err := a.s.register(ctx, req)
	var refused *refusedError
	switch {
	case errors.As(err, &refused):
		a.s.log.Warn("registration refused", "node", req.GetNodeId(), "addr", req.GetAddr(), "reason", refused.reason)
		return nil, refused.status()
	case err != nil:
		return nil, a.s.writeError(err)
	}
	return resp, nil
}

// checkKeyLen refuses a key argument longer than any key can be.
func checkKeyLen(name string, k []byte) error {
	if len(k) > maxKeyBytes {
		return status.Errorf(codes.InvalidArgument, "%s is %d bytes, limit is %d", name, len(k), maxKeyBytes)
	}
	return nil
}

// notBootstrapped is the answer to a lookup before the first ranges exist.
func (s *Server) notBootstrappedLocked(tm *term) error {
	return status.Errorf(codes.Unavailable, "the cluster is not bootstrapped yet: %d of %d expected nodes registered",
		len(tm.nodes), s.cfg.ExpectedNodes)
}

func (a *api) Lookup(_ context.Context, req *placementpb.LookupRequest) (*placementpb.LookupResponse, error) {
	if err := checkKeyLen("key", req.GetKey()); err != nil {
		return nil, err
	}
	s := a.s
	tm, err := s.leading()
	if err != nil {
		return nil, err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if tm.rm == nil {
		return nil, s.notBootstrappedLocked(tm)
	}
	d := tm.rm.Lookup(req.GetKey())
	resp := &placementpb.LookupResponse{Descriptor_: d, NodeAddrs: map[uint64]string{}, Revision: tm.rev}
	for _, r := range d.Replicas {
		if rec := tm.nodes[r.NodeId]; rec != nil {
			resp.NodeAddrs[r.NodeId] = rec.Addr
		}
	}
	return resp, nil
}

// SplitRange cuts the range holding the key at it; see Server.split.
func (a *api) SplitRange(ctx context.Context, req *placementpb.SplitRangeRequest) (*placementpb.SplitRangeResponse, error) {
	if len(req.GetSplitKey()) == 0 {
		return nil, status.Error(codes.InvalidArgument, "split_key must not be empty: the key space starts there")
	}
	if err := checkKeyLen("split_key", req.GetSplitKey()); err != nil {
		return nil, err
	}
	if _, err := a.s.leading(); err != nil {
		return nil, err
	}
	return a.s.split(ctx, req.SplitKey)
}

func (a *api) ListRanges(_ context.Context, req *placementpb.ListRangesRequest) (*placementpb.ListRangesResponse, error) {
	if err := checkKeyLen("page_token", req.GetPageToken()); err != nil {
		return nil, err
	}
	s := a.s
	tm, err := s.leading()
	if err != nil {
		return nil, err
	}
	limit := int(req.GetLimit())
	if limit == 0 || limit > defaultListLimit {
		limit = defaultListLimit
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	resp := &placementpb.ListRangesResponse{Revision: tm.rev}
	if tm.rm != nil {
		resp.Ranges, resp.NextPageToken = tm.rm.List(req.GetPageToken(), limit)
	}
	return resp, nil
}

func (a *api) ListNodes(context.Context, *placementpb.ListNodesRequest) (*placementpb.ListNodesResponse, error) {
	s := a.s
	tm, err := s.leading()
	if err != nil {
		return nil, err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	return &placementpb.ListNodesResponse{Nodes: s.nodeInfosLocked(tm)}, nil
}

// Watch streams the map's changes: the whole map first unless the client
// is at a revision this leader has the history after, then every change
// as it is committed. It ends with Unavailable when the term ends.
func (a *api) Watch(req *placementpb.WatchRequest, stream placementpb.Placement_WatchServer) error {
	s := a.s
	tm, err := s.leading()
	if err != nil {
		return err
	}
	ctx := stream.Context()
	at := req.GetFromRevision()
	first := true
	for {
		s.mu.Lock()
		if s.term != tm {
			s.mu.Unlock()
			return status.Error(codes.Unavailable, "placement leadership moved; reconnect to the new leader")
		}
		events, changed, done := tm.eventsAfterLocked(at, first), tm.changed, tm.done
		s.mu.Unlock()
		first = false
		for _, ev := range events {
			if err := stream.Send(ev); err != nil {
				return err
			}
			at = ev.Revision
		}
		select {
		case <-changed:
		case <-done:
			return status.Error(codes.Unavailable, "placement leadership moved; reconnect to the new leader")
		case <-ctx.Done():
			return status.FromContextError(ctx.Err()).Err()
		}
	}
}

// eventsAfterLocked returns what a watcher at revision at must get to
// reach tm.rev: the history after at, or, if the history does not reach
// back that far (or at is unknown: zero or in the future), one reset
// event with the whole map. A first answer always says something, so a
// client learns the revision it is at.
func (tm *term) eventsAfterLocked(at uint64, first bool) []*placementpb.WatchEvent {
	if at == tm.rev && at != 0 {
		if first {
			return []*placementpb.WatchEvent{{Revision: tm.rev}}
		}
		return nil
	}
	if at != 0 && at < tm.rev && len(tm.history) > 0 && tm.history[0].Revision <= at+1 {
		i := int(at + 1 - tm.history[0].Revision)
		return tm.history[i:]
	}
	ev := &placementpb.WatchEvent{Revision: tm.rev, Full: true}
	if tm.rm != nil {
		ev.Updated = tm.rm.All()
	}
	return []*placementpb.WatchEvent{ev}
}
