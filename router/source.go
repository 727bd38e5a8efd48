package router

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/shardd/shardd/kvpb"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"
)

// Source supplies range descriptors and node addresses to a Client. The
// Client asks it when its cache holds no range for a key, and when a node
// says the cached descriptor is stale without naming a fresh one.
// Implementations must be safe for concurrent use.
type Source interface {
	// Lookup returns descriptors covering key (at least the one that
	// contains it, if any is known; it may return more) and the gRPC
	// addresses of nodes, keyed by node id. A descriptor's leader_node_id
	// is taken as a leader hint. An error should be a gRPC status error.
	Lookup(ctx context.Context, key []byte) ([]*kvpb.RangeDescriptor, map[uint64]string, error)
}

// Watcher is a Source that also pushes the range map's changes. A Client
// whose Source is a Watcher follows them for its whole life, on one
// goroutine, so that it learns of new, split, merged and moved ranges
// without first sending a request with a stale descriptor.
type Watcher interface {
	Source
	// Watch calls apply with every change of the map, in order, until ctx
	// ends or the watch fails, and returns why. descs are new or changed
	// descriptors; addrs are node addresses to learn. apply is never
	// called concurrently with itself.
	Watch(ctx context.Context, apply func(descs []*kvpb.RangeDescriptor, addrs map[uint64]string)) error
}

// NodeSource is the default Source: it asks shardd nodes themselves, via
// Admin.Ranges, which ranges they host. A node knows only the ranges it
// holds a replica of, so a lookup asks the seeds (and then the nodes it
// learned of) in turn until the answers cover the key, and merges them,
// keeping for each range the descriptor with the highest generation.
type NodeSource struct {
	pool    *pool
	ownPool bool
	seeds   []string
	timeout time.Duration // per node asked

	mu      sync.Mutex
	learned []string // node addresses from answers, not among seeds
	next    int      // where the next lookup starts, to spread the load
}

// NewNodeSource returns a NodeSource asking the given seed addresses
// (host:port of shardd nodes' gRPC listeners). Without opts it connects
// without transport security; with opts, they must include the transport
// credentials. Close it when done.
func NewNodeSource(seeds []string, opts ...grpc.DialOption) *NodeSource {
	if len(opts) == 0 {
		opts = []grpc.DialOption{grpc.WithTransportCredentials(insecure.NewCredentials())}
	}
	return &NodeSource{pool: newPool(opts), ownPool: true, seeds: slices.Clone(seeds), timeout: 2 * time.Second}
}

// Close closes the NodeSource's connections. A NodeSource that a Client
// made from Config.Seeds is closed by the Client.
func (s *NodeSource) Close() error {
	if s.ownPool {
		s.pool.close()
	}
	return nil
}

// targets returns the addresses to ask, seeds first, starting at a
// rotating position.
func (s *NodeSource) targets() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	all := append(slices.Clone(s.seeds), s.learned...)
	if len(all) == 0 {
		return nil
	}
	start := s.next % len(all)
	s.next++
	return append(all[start:], all[:start]...)
}

func (s *NodeSource) learn(addrs map[uint64]string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, a := range addrs {
		if a != "" && !slices.Contains(s.seeds, a) && !slices.Contains(s.learned, a) {
			s.learned = append(s.learned, a)
		}
	}
}

// Lookup asks nodes in turn for the ranges they host, until the merged
// answers contain key. It returns Unavailable if no node answered, and
// NotFound with what it learned if no node knows a range holding key.
func (s *NodeSource) Lookup(ctx context.Context, key []byte) ([]*kvpb.RangeDescriptor, map[uint64]string, error) {
	merged := make(map[uint64]*kvpb.RangeDescriptor)
	addrs := make(map[uint64]string)
	var errs []string
	answered := false
	for _, addr := range s.targets() {
		if ctx.Err() != nil {
			break
		}
		resp, err := s.ask(ctx, addr)
		if err != nil {
			errs = append(errs, fmt.Sprintf("%s: %s", addr, status.Convert(err).Message()))
			continue
		}
		answered = true
		for _, d := range resp.Ranges {
			if old := merged[d.RangeId]; old == nil || d.Generation > old.Generation ||
				(d.Generation == old.Generation && old.LeaderNodeId == 0) {
				merged[d.RangeId] = d
			}
		}
		for id, a := range resp.NodeAddrs {
			addrs[id] = a
		}
		s.learn(resp.NodeAddrs)
		if covered(merged, key) {
			break
		}
	}
	out := make([]*kvpb.RangeDescriptor, 0, len(merged))
	for _, d := range merged {
		out = append(out, d)
	}
	switch {
	case ctx.Err() != nil && !covered(merged, key):
		return out, addrs, ctxError(ctx, nil)
	case !answered:
		return nil, nil, status.Errorf(codes.Unavailable, "router: no node answered a range lookup: %s", strings.Join(errs, "; "))
	case !covered(merged, key):
		return out, addrs, status.Errorf(codes.NotFound, "router: no node knows a range holding key %q", key)
	}
	return out, addrs, nil
}

func (s *NodeSource) ask(ctx context.Context, addr string) (*kvpb.RangesResponse, error) {
	cc, err := s.pool.conn(addr)
	if err != nil {
		return nil, err
	}
	ctx, cancel := context.WithTimeout(ctx, s.timeout)
	defer cancel()
	return kvpb.NewAdminClient(cc).Ranges(ctx, &kvpb.RangesRequest{})
}

func covered(m map[uint64]*kvpb.RangeDescriptor, key []byte) bool {
	for _, d := range m {
		if len(d.Replicas) > 0 && contains(d, key) {
			return true
		}
	}
	return false
}
