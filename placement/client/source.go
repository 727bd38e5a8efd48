package client

import (
	"context"

	"github.com/shardd/shardd/kvpb"
	"github.com/shardd/shardd/placementpb"
	"github.com/shardd/shardd/router"
)

// RouterSource adapts a Client to router.Source, so that a router looks
// ranges up in the placement service's map instead of asking nodes. It is
// a router.Watcher too: a router using it follows the map's changes.
type RouterSource struct{ Client *Client }

var _ router.Watcher = RouterSource{}

// Lookup returns the descriptor of the range holding key and the addresses
// of its replicas' nodes.
func (s RouterSource) Lookup(ctx context.Context, key []byte) ([]*kvpb.RangeDescriptor, map[uint64]string, error) {
	resp, err := s.Client.Lookup(ctx, key)
	if err != nil {
		return nil, nil, err
	}
	return []*kvpb.RangeDescriptor{resp.Descriptor_}, resp.NodeAddrs, nil
}

// Watch follows the map from scratch and hands apply every new or changed
// descriptor. Watch events carry no addresses, so when a descriptor names
// a node it has not seen, Watch asks for the node list first.
func (s RouterSource) Watch(ctx context.Context, apply func([]*kvpb.RangeDescriptor, map[uint64]string)) error {
	addrs := map[uint64]string{}
	return s.Client.Watch(ctx, 0, func(ev *placementpb.WatchEvent) error {
		var learned map[uint64]string
		if namesUnknownNode(ev.Updated, addrs) {
			if resp, err := s.Client.ListNodes(ctx); err == nil {
				learned = map[uint64]string{}
				for _, n := range resp.Nodes {
					addrs[n.NodeId] = n.Addr
					learned[n.NodeId] = n.Addr
				}
			}
		}
		apply(ev.Updated, learned)
		return nil
	})
}

func namesUnknownNode(descs []*kvpb.RangeDescriptor, addrs map[uint64]string) bool {
	for _, d := range descs {
		for _, r := range d.Replicas {
			if addrs[r.NodeId] == "" {
				return true
			}
		}
	}
	return false
}
