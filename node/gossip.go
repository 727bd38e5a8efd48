package node

import (
	"fmt"
	"net"
	"strconv"

	"github.com/shardd/shardd/membership"
)

// startGossip joins the cluster's memberlist: peers learn this node's gRPC
// address from it, and the node starts asking every member for liveness
// support as it appears.
func (n *Node) startGossip() error {
	host, port, err := net.SplitHostPort(n.cfg.GossipAddr)
	if err != nil {
		return fmt.Errorf("node: gossip address %q: %w", n.cfg.GossipAddr, err)
	}
	p, err := strconv.Atoi(port)
	if err != nil {
		return fmt.Errorf("node: gossip port %q: %w", port, err)
	}
	mc := membership.DefaultConfig()
	mc.NodeID = n.cfg.NodeID
	mc.BindAddr, mc.AdvertiseAddr, mc.BindPort = host, host, p
	mc.Seeds = n.cfg.Seeds
	mc.GRPCAddr = n.Addr()
	mc.Logger = n.log
	// Leases and failure handling ride on node liveness, not on gossip,
	// so memberlist only has to find nodes and carry their addresses: the
	// LAN profile's slower gossip is plenty and costs less idle CPU.
	mc.Profile = "lan"
	m, err := membership.Start(mc, gossipEvents{n})
	if err != nil {
		return fmt.Errorf("node: join gossip: %w", err)
	}
	n.members = m
	for _, mem := range m.Members() {
		if mem.NodeID != n.cfg.NodeID {
			n.live.AddPeer(mem.NodeID)
		}
	}
	return nil
}

// GossipAddr returns the address memberlist listens on, or "".
func (n *Node) GossipAddr() string {
	if n.members == nil {
		return ""
	}
	return n.members.GossipAddr()
}

type gossipEvents struct{ n *Node }

func (e gossipEvents) NodeJoined(m membership.Member) {
	if m.NodeID != e.n.cfg.NodeID {
		e.n.live.AddPeer(m.NodeID)
	}
}

func (e gossipEvents) NodeUpdated(membership.Member) {}

// NodeLeft needs no action: liveness support for the node lapses by itself
// and wakes the groups that depended on it.
func (e gossipEvents) NodeLeft(membership.Member) {}
