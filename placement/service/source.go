package service

import (
	"context"

	"github.com/shardd/shardd/kvpb"
	"github.com/shardd/shardd/router"
)

// RouterSource adapts a Client to router.Source, so that a router looks
// ranges up in the placement service's map instead of asking nodes.
type RouterSource struct{ Client *Client }

var _ router.Source = RouterSource{}

// Lookup returns the descriptor of the range holding key and the addresses
// of its replicas' nodes.
func (s RouterSource) Lookup(ctx context.Context, key []byte) ([]*kvpb.RangeDescriptor, map[uint64]string, error) {
	resp, err := s.Client.Lookup(ctx, key)
	if err != nil {
		return nil, nil, err
	}
	return []*kvpb.RangeDescriptor{resp.Descriptor_}, resp.NodeAddrs, nil
}
