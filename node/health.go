package node

import (
	"time"

	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
)

// Health and lifecycle. The node serves the gRPC health service
// (grpc.health.v1) on its server, for the empty service name (the whole
// server): NOT_SERVING from Start until the node is ready, SERVING while
// it is, and NOT_SERVING again from the start of a drain or a stop. A node
// is ready once Start has loaded its groups, or, with Config.WaitReady,
// once its owner says so (SetReady): shardd start --placement once the
// node registered with the placement service (Registered), the placement
// service once its group has a leader.
//
// The events an operator follows are logged at INFO: registration with the
// placement service and the losses and regains of contact after it, and
// the leaderships gained and lost, summed over a second rather than one
// line per group (a node leads thousands).

// leadershipLogInterval is the period the leadership changes are summed
// over in the log.
const leadershipLogInterval = time.Second

// newHealth creates the health service, NOT_SERVING.
func (n *Node) newHealth() *health.Server {
	h := health.NewServer()
	h.SetServingStatus("", healthpb.HealthCheckResponse_NOT_SERVING)
	return h
}

// SetReady marks the node ready: its health turns SERVING unless it is
// draining or stopping. See Config.WaitReady.
func (n *Node) SetReady() {
	if !n.ready.Swap(true) {
		n.updateHealth()
	}
}

// Ready reports whether the node is ready (see SetReady).
func (n *Node) Ready() bool { return n.ready.Load() }

// updateHealth sets the health status from the node's state. healthMu
// orders the updates, so that a stale one never overwrites a fresher.
// After Stop the health server ignores them (Shutdown).
func (n *Node) updateHealth() {
	n.healthMu.Lock()
	defer n.healthMu.Unlock()
	st := healthpb.HealthCheckResponse_NOT_SERVING
	if n.ready.Load() && !n.draining.Load() {
		st = healthpb.HealthCheckResponse_SERVING
	}
	n.health.SetServingStatus("", st)
}

// placementContact states, for Registered.
const (
	placementNever   = iota // no registration attempt yet
	placementFailing        // attempts failed, none succeeded yet
	placementOK             // the last attempt succeeded
	placementLost           // it failed after a success
)

// Registered is told the outcome of each attempt to register with the
// placement service (placement/service.Heartbeat, every heartbeat): nil
// for an accepted one. The first success makes the node ready; that, the
// first failures, and every loss and regain of contact after are logged,
// once each rather than once a heartbeat.
func (n *Node) Registered(err error) {
	n.placementMu.Lock()
	defer n.placementMu.Unlock()
	prev := n.placementState
	switch {
	case err == nil && prev == placementOK:
		return
	case err == nil:
		n.placementState = placementOK
		if prev == placementLost {
			n.log.Info("placement service reachable again", "unreachable", time.Since(n.placementLostAt).Round(time.Millisecond))
		} else {
			n.log.Info("registered with the placement service")
		}
		n.SetReady()
	case prev == placementNever:
		n.placementState = placementFailing
		n.log.Info("cannot register with the placement service yet; retrying", "err", err)
	case prev == placementOK:
		n.placementState, n.placementLostAt = placementLost, time.Now()
		n.log.Info("placement service lost; retrying (the node keeps serving)", "err", err)
	}
}

// leadershipLog logs, once per leadershipLogInterval in which any changed,
// how many leaderships the node gained and lost; at the node's stop, those
// of the last interval.
func (n *Node) leadershipLog() {
	defer n.bg.Done()
	t := time.NewTicker(leadershipLogInterval)
	defer t.Stop()
	var gained, lost uint64
	for stopped := false; !stopped; {
		select {
		case <-n.stopped:
			stopped = true
		case <-t.C:
		}
		g, l := n.leadershipsGained.Load(), n.leadershipsLost.Load()
		if g == gained && l == lost {
			continue
		}
		n.log.Info("leaderships changed", "gained", g-gained, "lost", l-lost, "leading", n.leading(), "window", leadershipLogInterval)
		gained, lost = g, l
	}
}

// leading counts the groups the node leads.
func (n *Node) leading() int {
	n.mu.RLock()
	defer n.mu.RUnlock()
	c := 0
	for _, r := range n.replicas {
		if r.leader.Load() == n.cfg.NodeID {
			c++
		}
	}
	return c
}
