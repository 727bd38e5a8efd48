package router

import (
	"context"
	"errors"
	"maps"
	"sync"
	"sync/atomic"
	"time"

	"github.com/shardd/shardd/kvpb"
	"go.opentelemetry.io/otel/trace"
	"google.golang.org/grpc"
	"google.golang.org/grpc/backoff"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"
)

// Default values of Config fields.
const (
	DefaultMaxAttempts      = 20
	DefaultInitialBackoff   = 5 * time.Millisecond
	DefaultMaxBackoff       = 500 * time.Millisecond
	DefaultMaxFrameRequests = 1024
	DefaultMaxFrameBytes    = 16 << 20 // well under a node's 64 MiB receive limit
)

// Config configures a Client. Only one of Source and Seeds is needed.
type Config struct {
	// Source supplies range descriptors and node addresses. If it is nil,
	// the Client makes a NodeSource asking Seeds, sharing the Client's
	// connections.
	Source Source
	// Seeds are gRPC addresses (host:port) of some shardd nodes, used when
	// Source is nil.
	Seeds []string
	// MaxAttempts bounds the attempts of one request, redirects included.
	// The default value is 20.
	MaxAttempts int
	// InitialBackoff and MaxBackoff bound the wait before a retry: it
	// doubles from InitialBackoff up to MaxBackoff, with jitter. The
	// default values are 5ms and 500ms.
	InitialBackoff, MaxBackoff time.Duration
	// MaxFrameRequests bounds the requests in one frame to a node. The
	// default value is 1024.
	MaxFrameRequests int
	// MaxFrameBytes bounds the encoded requests in one frame to a node; a
	// single larger request still goes, alone. The default value is
	// 16 MiB.
	MaxFrameBytes int
	// TracerProvider, if set, traces every request: a client span per
	// operation, whose context the request carries to the node (the
	// header's traceparent), if the provider samples it. The default
	// value, nil, starts no span; a request whose ctx carries a sampled
	// span (the caller's own) still carries its context.
	TracerProvider trace.TracerProvider
	// DialOptions are used for every connection to a node. The default
	// value connects without transport security (loopback and test
	// clusters) and redials a node within a second of its restart
	// (DefaultConnectParams); options given here must include the
	// transport credentials.
	DialOptions []grpc.DialOption
}

func (c *Config) setDefaults() {
	if c.MaxAttempts <= 0 {
		c.MaxAttempts = DefaultMaxAttempts
	}
	if c.InitialBackoff <= 0 {
		c.InitialBackoff = DefaultInitialBackoff
	}
	if c.MaxBackoff <= 0 {
		c.MaxBackoff = DefaultMaxBackoff
	}
	if c.MaxBackoff < c.InitialBackoff {
		c.MaxBackoff = c.InitialBackoff
	}
	if c.MaxFrameRequests <= 0 {
		c.MaxFrameRequests = DefaultMaxFrameRequests
	}
	if c.MaxFrameBytes <= 0 {
		c.MaxFrameBytes = DefaultMaxFrameBytes
	}
	if len(c.DialOptions) == 0 {
		c.DialOptions = []grpc.DialOption{grpc.WithTransportCredentials(insecure.NewCredentials()),
			grpc.WithConnectParams(DefaultConnectParams)}
	}
}

// DefaultConnectParams is how the default DialOptions redial a node whose
// connection broke: from 50 ms, growing to a second at most. gRPC's own
// default starts at a second and grows to two minutes, so a node restarted
// in a rolling restart, which takes its leaderships back moments later,
// stayed unreachable to a router for a second or more: the ranges it led
// stalled that long.
var DefaultConnectParams = grpc.ConnectParams{
	Backoff:           backoff.Config{BaseDelay: 50 * time.Millisecond, Multiplier: 1.6, Jitter: 0.2, MaxDelay: time.Second},
	MinConnectTimeout: 5 * time.Second,
}

// Client routes KV requests to the nodes leading the ranges that hold
// their keys. It is safe for concurrent use, and meant to be shared: all
// goroutines using one Client share its one connection and one stream per
// node, which is what lets it batch many requests into one frame.
type Client struct {
	cfg    Config
	source Source
	pool   *pool
	cache  *rangeCache
	tracer trace.Tracer    // nil: tracing off
	ctx    context.Context // canceled by Close
	cancel context.CancelFunc
	wg     sync.WaitGroup
	stats  counters
	// session numbers the writes, for exactly-once application.
	session *session

	mu     sync.RWMutex
	addrs  map[uint64]string // node id -> address
	conns  map[string]*nodeConn
	flight *flight // the Source lookup in progress
	closed bool

	smu     sync.RWMutex
	suspect map[uint64]time.Time // node id -> until when to avoid it
}

type counters struct {
	frames, requests, streams, retries, lookups, redirects, mismatches atomic.Uint64
}

// Stats are counters of a Client's activity since New.
type Stats struct {
	// Frames and Requests count the RequestFrames sent to nodes and the
	// requests they carried; Requests/Frames is the batching achieved.
	Frames, Requests uint64
	// Streams counts the KV streams opened, reconnections included.
	Streams uint64
	// Retries counts attempts beyond a request's first.
	Retries uint64
	// Lookups counts the Source lookups.
	Lookups uint64
	// Redirects counts NotLeader answers, and StaleDescriptors
	// RangeMismatch answers.
	Redirects, StaleDescriptors uint64
}

// RequestsPerFrame returns Requests/Frames, or 0 before the first frame.
func (s Stats) RequestsPerFrame() float64 {
	if s.Frames == 0 {
		return 0
	}
	return float64(s.Requests) / float64(s.Frames)
}

var errClosed = status.Error(codes.Canceled, "router: client is closed")

// New returns a Client, after filling its range cache with one Source
// lookup. If that lookup yields no range at all, New returns its error
// (Unavailable, or the context's), so a wrong seed list shows at once.
// ctx bounds that lookup only; the Client lives until Close.
func New(ctx context.Context, cfg Config) (*Client, error) {
	cfg.setDefaults()
	c := &Client{
		cfg:     cfg,
		source:  cfg.Source,
		pool:    newPool(cfg.DialOptions),
		cache:   newRangeCache(),
		session: newSession(),
		addrs:   make(map[uint64]string),
		conns:   make(map[string]*nodeConn),
		suspect: make(map[uint64]time.Time),
	}
	if cfg.TracerProvider != nil {
		c.tracer = cfg.TracerProvider.Tracer("github.com/shardd/shardd/router")
	}
	if c.source == nil {
		if len(cfg.Seeds) == 0 {
			return nil, status.Error(codes.InvalidArgument, "router: Config needs a Source or Seeds")
		}
		c.source = &NodeSource{pool: c.pool, seeds: append([]string(nil), cfg.Seeds...), timeout: 2 * time.Second}
	}
	c.ctx, c.cancel = context.WithCancel(context.Background())
	if err := c.refresh(ctx, nil); err != nil && len(c.cache.snapshot()) == 0 {
		c.Close()
		return nil, err
	}
	if w, ok := c.source.(Watcher); ok {
		c.wg.Add(1)
		go c.follow(w)
	}
	return c, nil
}

// follow keeps the cache up to date with w's changes until Close. A watch
// that fails is restarted after a backoff; meanwhile requests still find
// their ranges through Lookup and the nodes' answers.
func (c *Client) follow(w Watcher) {
	defer c.wg.Done()
	for failures := 0; ; failures++ {
		started := time.Now()
		_ = w.Watch(c.ctx, c.learn)
		if time.Since(started) > c.cfg.MaxBackoff {
			failures = 0 // it ran for a while: not a tight failure loop
		}
		if c.sleep(c.ctx, failures, nil) != nil {
			return // closed
		}
	}
}

// learn installs descriptors and node addresses from a Source.
func (c *Client) learn(descs []*kvpb.RangeDescriptor, addrs map[uint64]string) {
	for _, d := range descs {
		c.cache.install(d)
	}
	c.mu.Lock()
	for id, a := range addrs {
		if a != "" {
			c.addrs[id] = a
		}
	}
	c.mu.Unlock()
}

// Close stops the Client: requests in progress fail with Canceled, and
// its connections close. A Source given in Config is not closed.
func (c *Client) Close() error {
	c.mu.Lock()
	if c.closed {
		c.mu.Unlock()
		return nil
	}
	c.closed = true
	c.mu.Unlock()
	c.cancel()
	c.wg.Wait()
	c.pool.close()
	return nil
}

// Stats returns the Client's counters.
func (c *Client) Stats() Stats {
	return Stats{
		Frames:   c.stats.frames.Load(),
		Requests: c.stats.requests.Load(),
		Streams:  c.stats.streams.Load(),
		Retries:  c.stats.retries.Load(),
		Lookups:  c.stats.lookups.Load(),

		Redirects:        c.stats.redirects.Load(),
		StaleDescriptors: c.stats.mismatches.Load(),
	}
}

// Ranges returns the cached range descriptors sorted by start key, each
// with the leader the Client believes in as leader_node_id (0 if
// unknown). They are copies.
func (c *Client) Ranges() []*kvpb.RangeDescriptor { return c.cache.snapshot() }

// NodeAddrs returns the gRPC addresses of the nodes the Client knows, by
// node id: a copy.
func (c *Client) NodeAddrs() map[uint64]string {
	c.mu.RLock()
	defer c.mu.RUnlock()
	return maps.Clone(c.addrs)
}

// flight is one Source lookup that concurrent cache misses share.
type flight struct {
	done chan struct{}
	err  error
}

// refresh asks the Source about key and caches the answer. Concurrent
// misses share one lookup; one that waited for another's lookup that did
// not cover its key makes its own.
func (c *Client) refresh(ctx context.Context, key []byte) error {
	for range 2 {
		c.mu.Lock()
		f := c.flight
		c.mu.Unlock()
		if f == nil {
			break
		}
		select {
		case <-f.done:
		case <-ctx.Done():
			return ctxError(ctx, nil)
		}
		if d, _ := c.cache.lookup(key); d != nil {
			return nil
		}
	}
	f := &flight{done: make(chan struct{})}
	c.mu.Lock()
	if c.flight == nil {
		c.flight = f
	}
	c.mu.Unlock()
	c.stats.lookups.Add(1)
	descs, addrs, err := c.source.Lookup(ctx, key)
	c.learn(descs, addrs)
	c.mu.Lock()
	if c.flight == f {
		c.flight = nil
	}
	c.mu.Unlock()
	f.err = err
	close(f.done)
	if err != nil {
		if ctx.Err() != nil {
			return ctxError(ctx, err)
		}
		st := status.Convert(err)
		return status.Errorf(codes.Unavailable, "router: range lookup: %s", st.Message())
	}
	return nil
}

// conn returns the stream multiplexer for node id, or nil if its address
// is unknown.
func (c *Client) conn(id uint64) (*nodeConn, error) {
	c.mu.RLock()
	closed, addr := c.closed, c.addrs[id]
	nc := c.conns[addr]
	c.mu.RUnlock()
	switch {
	case closed:
		return nil, errClosed
	case addr == "":
		return nil, nil
	case nc != nil:
		return nc, nil
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closed {
		return nil, errClosed
	}
	if nc := c.conns[addr]; nc != nil {
		return nc, nil
	}
	cc, err := c.pool.conn(addr)
	if err != nil {
		return nil, err
	}
	nc = newNodeConn(c, addr, cc)
	c.conns[addr] = nc
	return nc, nil
}

func (c *Client) setAddr(id uint64, addr string) {
	if id == 0 || addr == "" {
		return
	}
	c.mu.Lock()
	c.addrs[id] = addr
	c.mu.Unlock()
}

// markSuspect makes the Client avoid node id for a while after it failed
// at the transport level.
func (c *Client) markSuspect(id uint64) {
	c.smu.Lock()
	c.suspect[id] = time.Now().Add(2 * c.cfg.MaxBackoff)
	c.smu.Unlock()
}

func (c *Client) isSuspect(id uint64, now time.Time) bool {
	c.smu.RLock()
	until, ok := c.suspect[id]
	c.smu.RUnlock()
	return ok && now.Before(until)
}

// ctxError is the status error for a context that ended, mentioning the
// last error seen, if any.
func ctxError(ctx context.Context, last error) error {
	st := status.FromContextError(ctx.Err())
	if last == nil {
		return st.Err()
	}
	return status.Errorf(st.Code(), "%s (last error: %s)", st.Message(), status.Convert(last).Message())
}

// statusOf turns a stream response's Error into a gRPC status error with
// the same details a unary call would carry.
func statusOf(e *kvpb.Error) error {
	st := status.New(codes.Code(e.Code), e.Message)
	if e.NotLeader != nil {
		if s, err := st.WithDetails(e.NotLeader); err == nil {
			st = s
		}
	}
	if e.RangeMismatch != nil {
		if s, err := st.WithDetails(e.RangeMismatch); err == nil {
			st = s
		}
	}
	return st.Err()
}

func isClosed(err error) bool { return errors.Is(err, errClosed) }
