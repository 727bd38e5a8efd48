package main

import (
	"bytes"
	"context"
	"fmt"
	"slices"
	"sort"

	"github.com/shardd/shardd/internal/kvstream"
	"github.com/shardd/shardd/kvpb"
)

// directClient writes straight to each range's leader over one KV.Stream
// per node, with the range map and leaders read once before the run and no
// retries: the baseline that the router's overhead is measured against.
type directClient struct {
	starts  [][]byte // sorted range start keys
	ranges  []*kvpb.RangeDescriptor
	leaders []*kvstream.Client // per range
	streams []*kvstream.Client
}

// newDirectClient asks every node which ranges it leads. Every range must
// have a leader.
func newDirectClient(ctx context.Context, c *cluster) (*directClient, error) {
	d := &directClient{}
	type led struct {
		desc   *kvpb.RangeDescriptor
		client *kvstream.Client
	}
	var all []led
	for _, p := range c.nodes {
		resp, err := kvpb.NewAdminClient(p.conn).Ranges(ctx, &kvpb.RangesRequest{})
		if err != nil {
			d.Close()
			return nil, fmt.Errorf("node %d: ranges: %w", p.id, err)
		}
		s, err := kvstream.New(kvpb.NewKVClient(p.conn))
		if err != nil {
			d.Close()
			return nil, fmt.Errorf("node %d: stream: %w", p.id, err)
		}
		d.streams = append(d.streams, s)
		for _, desc := range resp.Ranges {
			if desc.LeaderNodeId == p.id {
				all = append(all, led{desc, s})
			}
		}
	}
	slices.SortFunc(all, func(a, b led) int { return bytes.Compare(a.desc.StartKey, b.desc.StartKey) })
	for _, l := range all {
		d.starts = append(d.starts, l.desc.StartKey)
		d.ranges = append(d.ranges, l.desc)
		d.leaders = append(d.leaders, l.client)
	}
	if len(d.ranges) != c.groups {
		d.Close()
		return nil, fmt.Errorf("%d of %d ranges have a leader", len(d.ranges), c.groups)
	}
	return d, nil
}

func (d *directClient) Put(_ context.Context, key, value []byte) error {
	i := sort.Search(len(d.starts), func(i int) bool { return bytes.Compare(d.starts[i], key) > 0 }) - 1
	desc := d.ranges[i]
	resp, err := d.leaders[i].Do(&kvpb.Request{Op: &kvpb.Request_Put{Put: &kvpb.PutRequest{
		Header: &kvpb.RequestHeader{RangeId: desc.RangeId, Generation: desc.Generation}, Key: key, Value: value}}})
	if err != nil {
		return err
	}
	if e := resp.GetError(); e != nil {
		return fmt.Errorf("put: code %d: %s", e.Code, e.Message)
	}
	return nil
}

func (d *directClient) Close() {
	for _, s := range d.streams {
		s.Close()
	}
}
