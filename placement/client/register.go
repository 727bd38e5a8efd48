package client

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/shardd/shardd/placementpb"
	"google.golang.org/grpc/status"
)

// ErrRefused is matched (errors.Is) by the error Heartbeat returns when
// the node must stop: the placement service refused its registration (it
// belongs to another cluster, or its store is not the one it registered
// with), or the node refused the service's cluster.
var ErrRefused = errors.New("placement: registration refused")

// Load is what a node reports about itself with every heartbeat.
type Load struct {
	Replicas, Leaders uint32
	// Draining: the node is handing off its leaderships (node.Drain).
	Draining bool
	// LostPeers are the nodes whose connection from this node broke and
	// could not be opened again.
	LostPeers []uint64
}

// Registrant is the node side of a registration. *node.Node implements it
// (checked in package placement/service, which may import the node).
type Registrant interface {
	ID() uint64
	// Addr is the node's gRPC address.
	Addr() string
	// StoreID is the random id of the node's store.
	StoreID() string
	// ClusterID is the cluster the node's store joined, "" before the
	// first registration.
	ClusterID() string
	// JoinCluster records the cluster id of a registration's answer the
	// first time and refuses any other afterwards.
	JoinCluster(clusterID string) error
}

// RegistrationObserver is implemented by a Registrant that wants the
// outcome of every registration attempt, nil for an accepted one:
// *node.Node logs the first and the changes, and turns ready.
type RegistrationObserver interface {
	Registered(err error)
}

// Heartbeat registers a node and then re-registers it every interval with
// the load that load reports (nil: none), until ctx ends (it then returns
// nil) or the registration is refused for good (it returns an error
// matching ErrRefused, and the node must stop). Other failures are retried
// at the next interval, the first registration's too. shardd nodes run it
// for the life of the process. A Registrant that is a RegistrationObserver
// hears of every attempt.
func Heartbeat(ctx context.Context, c *Client, n Registrant, interval time.Duration, load func() Load) error {
	var refused error
	observer, _ := n.(RegistrationObserver)
	parent := ctx
	observe := func(err error) {
		if observer != nil && parent.Err() == nil { // not an attempt cut short by the node's stop
			observer.Registered(err)
		}
	}
	every(ctx, interval, func(ctx context.Context) bool {
		req := &placementpb.RegisterNodeRequest{NodeId: n.ID(), Addr: n.Addr(), StoreId: n.StoreID(), ClusterId: n.ClusterID()}
		if load != nil {
			l := load()
			req.Replicas, req.Leaders, req.Draining, req.LostPeers = l.Replicas, l.Leaders, l.Draining, l.LostPeers
		}
		resp, err := c.RegisterNode(ctx, req)
		if err != nil {
			observe(err)
			for _, d := range status.Convert(err).Details() {
				if r, ok := d.(*placementpb.RegistrationRefused); ok {
					refused = fmt.Errorf("%w by the placement service: %s", ErrRefused, r.Reason)
					return false
				}
			}
			return true
		}
		if err := n.JoinCluster(resp.ClusterId); err != nil {
			refused = fmt.Errorf("%w: %w", ErrRefused, err)
			return false
		}
		observe(nil)
		return true
	})
	return refused
}

// FollowNodes tells learn the id and address of every registered node now
// and then every interval, until ctx ends, so that a shardd node can reach
// its peers through the placement service alone, without gossip or static
// peers. Failures are retried at the next interval.
func FollowNodes(ctx context.Context, c *Client, interval time.Duration, learn func(id uint64, addr string)) {
	every(ctx, interval, func(ctx context.Context) bool {
		resp, err := c.ListNodes(ctx)
		if err != nil {
			return true
		}
		for _, n := range resp.Nodes {
			if n.Addr != "" {
				learn(n.NodeId, n.Addr)
			}
		}
		return true
	})
}

// every runs call now and then every interval until ctx ends or call
// returns false, each call bounded by the interval plus one attempt's
// timeout.
func every(ctx context.Context, interval time.Duration, call func(context.Context) bool) {
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		cctx, cancel := context.WithTimeout(ctx, interval+perAttemptTimeout)
		goOn := call(cctx)
		cancel()
		if !goOn {
			return
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}
