package main

import (
	"context"
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/shardd/shardd/kvpb"
	"google.golang.org/grpc"
	"google.golang.org/grpc/backoff"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"
)

// kvClient is a raw kvpb client for tests: it sends each request to a
// node, follows NotLeader hints and retries unavailable nodes, until the
// request succeeds or its deadline passes. (The router library will do
// this for real clients.)
type kvClient struct {
	t     *testing.T
	addrs []string // every node, for when there is no hint

	mu    sync.Mutex
	conns map[string]*grpc.ClientConn
	byID  map[uint64]string
}

func newKVClient(t *testing.T, nodes map[uint64]string) *kvClient {
	c := &kvClient{t: t, conns: map[string]*grpc.ClientConn{}, byID: map[uint64]string{}}
	for id, addr := range nodes {
		c.byID[id] = addr
		c.addrs = append(c.addrs, addr)
	}
	slices.Sort(c.addrs)
	t.Cleanup(c.close)
	return c
}

func (c *kvClient) close() {
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, conn := range c.conns {
		conn.Close()
	}
	c.conns = map[string]*grpc.ClientConn{}
}

// client returns a client of the node at addr. Reconnection backoff is
// short, so a restarted node is found again quickly.
func (c *kvClient) client(addr string) kvpb.KVClient {
	c.mu.Lock()
	defer c.mu.Unlock()
	conn, ok := c.conns[addr]
	if !ok {
		var err error
		conn, err = grpc.NewClient(addr, grpc.WithTransportCredentials(insecure.NewCredentials()),
			grpc.WithConnectParams(grpc.ConnectParams{Backoff: backoff.Config{
				BaseDelay: 50 * time.Millisecond, Multiplier: 1.6, Jitter: 0.2, MaxDelay: 500 * time.Millisecond,
			}, MinConnectTimeout: time.Second}))
		if err != nil {
			c.t.Fatalf("client for %s: %v", addr, err)
		}
		c.conns[addr] = conn
	}
	return kvpb.NewKVClient(conn)
}

// do runs op until it succeeds, following leader hints, or until ctx is
// done. Only errors that say "not here" or "not now" are retried.
func (c *kvClient) do(ctx context.Context, op func(context.Context, kvpb.KVClient) error) error {
	next := 0
	addr := c.addrs[next]
	var err error
	for attempt := 1; ; attempt++ {
		actx, cancel := context.WithTimeout(ctx, 2*time.Second)
		err = op(actx, c.client(addr))
		cancel()
		if err == nil {
			return nil
		}
		st, _ := status.FromError(err)
		hint := ""
		switch st.Code() {
		case codes.FailedPrecondition:
			for _, d := range st.Details() {
				if nl, ok := d.(*kvpb.NotLeader); ok {
					hint = nl.LeaderAddr
					if hint == "" && nl.LeaderNodeId != 0 {
						hint = c.byID[nl.LeaderNodeId]
					}
				}
			}
		case codes.Unavailable, codes.DeadlineExceeded:
		default:
			return err // a real failure
		}
		if hint != "" && hint != addr {
			addr = hint
		} else {
			next = (next + 1) % len(c.addrs)
			addr = c.addrs[next]
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("gave up after %d attempts: %w (last error: %v)", attempt, ctx.Err(), err)
		case <-time.After(20 * time.Millisecond):
		}
	}
}

func (c *kvClient) put(ctx context.Context, key, value string) error {
	return c.do(ctx, func(ctx context.Context, kv kvpb.KVClient) error {
		_, err := kv.Put(ctx, &kvpb.PutRequest{Key: []byte(key), Value: []byte(value)})
		return err
	})
}

// get is a linearizable read, served by the range's leader.
func (c *kvClient) get(ctx context.Context, key string) (value string, found bool, err error) {
	err = c.do(ctx, func(ctx context.Context, kv kvpb.KVClient) error {
		resp, err := kv.Get(ctx, &kvpb.GetRequest{Key: []byte(key)})
		if err == nil {
			value, found = string(resp.Value), resp.Found
		}
		return err
	})
	return value, found, err
}

// staleGet reads what the node at addr has applied, without asking the
// leader.
func (c *kvClient) staleGet(ctx context.Context, addr, key string) (value string, found bool, err error) {
	resp, err := c.client(addr).Get(ctx, &kvpb.GetRequest{
		Header: &kvpb.RequestHeader{Consistency: kvpb.ReadConsistency_STALE}, Key: []byte(key)})
	if err != nil {
		return "", false, err
	}
	return string(resp.Value), resp.Found, nil
}
