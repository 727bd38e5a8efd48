package node

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/shardd/shardd/group"
	"github.com/shardd/shardd/kvpb"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
)

// adminServer implements the Admin service: what the node hosts, for
// routers, the command line and operators.
type adminServer struct {
	kvpb.UnimplementedAdminServer
	n *Node
}

// Ranges lists the descriptors of the ranges this node hosts a replica of,
// each with the leader it knows of, sorted by start key.
func (s *adminServer) Ranges(context.Context, *kvpb.RangesRequest) (*kvpb.RangesResponse, error) {
	n := s.n
	resp := &kvpb.RangesResponse{NodeAddrs: map[uint64]string{}}
	n.mu.RLock()
	for _, r := range n.replicas {
		d := r.desc.Load()
		if len(d.GetReplicas()) == 0 {
			continue // not initialized yet
		}
		d = proto.Clone(d).(*kvpb.RangeDescriptor)
		d.LeaderNodeId = r.leader.Load()
		resp.Ranges = append(resp.Ranges, d)
	}
	for id, addr := range n.peers {
		resp.NodeAddrs[id] = addr
	}
	n.mu.RUnlock()
	if n.members != nil {
		for _, m := range n.members.Members() {
			resp.NodeAddrs[m.NodeID] = m.GRPCAddr
		}
	}
	slices.SortFunc(resp.Ranges, func(a, b *kvpb.RangeDescriptor) int { return bytes.Compare(a.StartKey, b.StartKey) })
	return resp, nil
}

// NodeStatus reports what an operator acts on; see status.go.
func (s *adminServer) NodeStatus(context.Context, *kvpb.NodeStatusRequest) (*kvpb.NodeStatusResponse, error) {
	return s.n.status(), nil
}

// RangeStatus reports where this node's replica of a range stands.
func (s *adminServer) RangeStatus(_ context.Context, req *kvpb.RangeStatusRequest) (*kvpb.RangeStatusResponse, error) {
	r := s.n.replica(req.GetRangeId())
	if r == nil {
		return nil, rangeMismatch(fmt.Sprintf("node %d has no replica of range %d", s.n.cfg.NodeID, req.GetRangeId()), nil)
	}
	return &kvpb.RangeStatusResponse{Replica: s.n.replicaStatus(r)}, nil
}

// CreateRanges creates this node's replicas of new ranges; see
// Node.CreateGroups. It checks every descriptor first, so a bad request
// creates nothing.
func (s *adminServer) CreateRanges(_ context.Context, req *kvpb.CreateRangesRequest) (*kvpb.CreateRangesResponse, error) {
	n := s.n
	for i, d := range req.GetRanges() {
		if err := n.checkNewRange(d); err != nil {
			return nil, status.Errorf(codes.InvalidArgument, "ranges[%d]: %v", i, err)
		}
	}
	if err := n.CreateGroups(req.GetRanges()); err != nil {
		return nil, status.Errorf(codes.Internal, "create ranges: %v", err)
	}
	n.log.Info("ranges received", "ranges", len(req.GetRanges()))
	return &kvpb.CreateRangesResponse{}, nil
}

// checkNewRange checks a descriptor handed to CreateRanges: a range id, a
// non-empty span, distinct replicas with this node among the voters.
func (n *Node) checkNewRange(d *kvpb.RangeDescriptor) error {
	switch {
	case d == nil:
		return fmt.Errorf("descriptor is not set")
	case d.RangeId == 0:
		return fmt.Errorf("range id 0 is reserved")
	case len(d.EndKey) > 0 && bytes.Compare(d.StartKey, d.EndKey) >= 0:
		return fmt.Errorf("range %d is empty or inverted: [%q, %q)", d.RangeId, d.StartKey, d.EndKey)
	}
	seen := map[uint64]bool{}
	for _, r := range d.Replicas {
		if r == nil || r.NodeId == 0 || seen[r.NodeId] {
			return fmt.Errorf("range %d: replicas must be set, on non-zero and distinct nodes", d.RangeId)
		}
		seen[r.NodeId] = true
	}
	if !slices.Contains(votersOf(d).Voters, n.cfg.NodeID) {
		return fmt.Errorf("range %d does not list node %d as a voter", d.RangeId, n.cfg.NodeID)
	}
	return nil
}

// TransferLeader hands the leadership of a range this node leads to
// another voter (group.Replica.TransferLeader: the target catches up, then
// the lease is handed off, so there is never a window with two leaders),
// and answers once the target leads (awaitTransfer).
func (s *adminServer) TransferLeader(ctx context.Context, req *kvpb.TransferLeaderRequest) (*kvpb.TransferLeaderResponse, error) {
	n := s.n
	if req.GetRangeId() == 0 || req.GetTargetNodeId() == 0 {
		return nil, status.Error(codes.InvalidArgument, "range_id and target_node_id must be set")
	}
	r := n.replica(req.RangeId)
	if r == nil || len(r.desc.Load().GetReplicas()) == 0 {
		return nil, rangeMismatch(fmt.Sprintf("node %d has no replica of range %d", n.cfg.NodeID, req.RangeId), nil)
	}
	if !slices.Contains(votersOf(r.desc.Load()).Voters, req.TargetNodeId) {
		return nil, status.Errorf(codes.InvalidArgument, "node %d is not a voter of range %d", req.TargetNodeId, req.RangeId)
	}
	// Whether we lead is the group's to say: the hint in r.leader lags a
	// cycle behind, and a leader that was handed the range a moment ago
	// must take the next transfer.
	_, err := await(ctx, n, func(done func(struct{}, error)) {
		n.onWorker(r, func() { done(struct{}{}, r.rn.TransferLeader(req.TargetNodeId)) })
	})
	var nl *group.NotLeaderError
	switch {
	case errors.As(err, &nl):
		return nil, n.notLeader(r)
	case errors.Is(err, group.ErrInvalidConfChange):
		return nil, status.Errorf(codes.InvalidArgument, "node %d is not a voter of range %d", req.TargetNodeId, req.RangeId)
	case errors.Is(err, group.ErrTransferTargetDown):
		return nil, status.Errorf(codes.FailedPrecondition, "node %d does not look live to node %d: not handing range %d to it", req.TargetNodeId, n.cfg.NodeID, req.RangeId)
	case err != nil:
		return nil, status.Convert(err).Err()
	}
	if err := n.awaitTransfer(ctx, r, req.TargetNodeId); err != nil {
		return nil, err
	}
	return &kvpb.TransferLeaderResponse{}, nil
}

// onWorker runs task on the worker that processes r, the one place where a
// group replica may be touched, before the cycle that collects its Ready.
// task must not block.
func (n *Node) onWorker(r *replica, task func()) {
	n.post(r, func(in *inputs) { in.tasks = append(in.tasks, task) })
}

// RangeLeader returns the leader this node knows of for a range it hosts
// (zero: none known), and whether it hosts the range.
func (n *Node) RangeLeader(rangeID uint64) (uint64, bool) {
	r := n.replica(rangeID)
	if r == nil {
		return 0, false
	}
	return r.leader.Load(), true
}

// faultInjection returns, with Config.EnableFaultInjection, the server
// options that let the Fault service cut the KV service off from clients,
// and a function that registers the Fault service; without it, nothing and
// a function that does nothing.
func (n *Node) faultInjection() ([]grpc.ServerOption, func(*grpc.Server)) {
	if !n.cfg.EnableFaultInjection {
		return nil, func(*grpc.Server) {}
	}
	n.log.Warn("fault injection is enabled: any client can cut this node's links (a test hook, never for production)")
	cut := &clientCut{node: n.cfg.NodeID, cutting: make(chan struct{})}
	s := &faultServer{n: n, cut: cut}
	opts := []grpc.ServerOption{grpc.ChainUnaryInterceptor(cut.unary), grpc.ChainStreamInterceptor(cut.stream)}
	return opts, func(g *grpc.Server) { kvpb.RegisterFaultServer(g, s) }
}

// faultServer implements the Fault service (kvpb/fault.proto), a test
// hook served only with Config.EnableFaultInjection.
type faultServer struct {
	kvpb.UnimplementedFaultServer
	n   *Node
	cut *clientCut
}

// SetFaults replaces the node's faults: its transport's cuts to and from
// peers (transport.Faults) and the cut between its KV service and clients.
func (s *faultServer) SetFaults(_ context.Context, req *kvpb.SetFaultsRequest) (*kvpb.SetFaultsResponse, error) {
	f := s.n.trans.Faults()
	f.HealAll()
	for _, id := range req.DropOutgoing {
		f.Cut(id)
	}
	for _, id := range req.DropIncoming {
		f.CutFrom(id)
	}
	s.cut.set(req.CutClients)
	s.n.log.Info("faults set", "drop_outgoing", req.DropOutgoing, "drop_incoming", req.DropIncoming, "cut_clients", req.CutClients)
	return &kvpb.SetFaultsResponse{}, nil
}

// JumpClock moves the node's clock forward (Config.ClockOffset). Only
// forward: every reader of the clock takes it as monotonic.
func (s *faultServer) JumpClock(_ context.Context, req *kvpb.JumpClockRequest) (*kvpb.JumpClockResponse, error) {
	if req.ForwardNanos < 0 {
		return nil, status.Errorf(codes.InvalidArgument, "the clock only jumps forward, not by %v", time.Duration(req.ForwardNanos))
	}
	offset := s.n.clockOffset.Add(req.ForwardNanos)
	if req.ForwardNanos > 0 {
		s.n.log.Info("clock jumped", "forward", time.Duration(req.ForwardNanos), "offset", time.Duration(offset))
	}
	return &kvpb.JumpClockResponse{OffsetNanos: offset, MaxClockDriftNanos: int64(s.n.cfg.MaxClockDrift)}, nil
}

// clientCut cuts the KV service off from its clients, as a network
// partition between them would: a call that arrives during a cut is
// refused, and a call in flight when a cut starts loses its reply, so
// that its caller cannot tell whether it was applied. A stream that a cut
// crossed stays broken after the cut heals, like a TCP connection that
// timed out. Other services (Admin, Transport, Fault) are not affected.
type clientCut struct {
	node uint64

	mu sync.Mutex
	on bool
	// cutting is closed when a cut starts, then replaced: a call that
	// took it when it began learns from it that a cut began since.
	cutting chan struct{}
}

// kvMethods prefixes the full method names of the KV service.
var kvMethods = "/" + kvpb.KV_ServiceDesc.ServiceName + "/"

func (c *clientCut) set(on bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if on && !c.on {
		close(c.cutting)
		c.cutting = make(chan struct{})
	}
	c.on = on
}

// begin returns the channel a call that starts now watches, or false if
// the cut is on.
func (c *clientCut) begin() (<-chan struct{}, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.cutting, !c.on
}

func (c *clientCut) err(what string) error {
	return status.Errorf(codes.Unavailable, "fault injection: node %d's KV service is cut off from its clients: %s", c.node, what)
}

func (c *clientCut) unary(ctx context.Context, req any, info *grpc.UnaryServerInfo, handler grpc.UnaryHandler) (any, error) {
	if !strings.HasPrefix(info.FullMethod, kvMethods) {
		return handler(ctx, req)
	}
	cutting, ok := c.begin()
	if !ok {
		return nil, c.err("request refused")
	}
	resp, err := handler(ctx, req)
	select {
	case <-cutting:
		return nil, c.err("reply lost")
	default:
		return resp, err
	}
}

func (c *clientCut) stream(srv any, ss grpc.ServerStream, info *grpc.StreamServerInfo, handler grpc.StreamHandler) error {
	if !strings.HasPrefix(info.FullMethod, kvMethods) {
		return handler(srv, ss)
	}
	cutting, ok := c.begin()
	if !ok {
		return c.err("stream refused")
	}
	return handler(srv, &cutStream{ServerStream: ss, c: c, cutting: cutting})
}

// cutStream is a KV stream that breaks for good once a cut starts.
type cutStream struct {
	grpc.ServerStream
	c       *clientCut
	cutting <-chan struct{}
}

func (s *cutStream) broken() bool {
	select {
	case <-s.cutting:
		return true
	default:
		return false
	}
}

// RecvMsg returns as soon as a cut starts, so that the handler returns and
// the stream ends with the requests in it in flight. The receive it
// abandons then ends with the stream.
func (s *cutStream) RecvMsg(m any) error {
	if s.broken() {
		return s.c.err("stream broken")
	}
	done := make(chan error, 1)
	go func() { done <- s.ServerStream.RecvMsg(m) }()
	select {
	case err := <-done:
		if err == nil && s.broken() {
			return s.c.err("stream broken")
		}
		return err
	case <-s.cutting:
		return s.c.err("stream broken")
	}
}

func (s *cutStream) SendMsg(m any) error {
	if s.broken() {
		return s.c.err("stream broken")
	}
	return s.ServerStream.SendMsg(m)
}
