// Package kvstream is a minimal client of the node's KV.Stream RPC: many
// callers share one stream; a sender packs whatever is queued into one
// frame and a receiver matches responses to callers by request id. It does
// no routing and no retries: benchmarks use it to measure the nodes without
// the router in front of them. Applications use package router.
package kvstream

import (
	"context"
	"errors"
	"sync"
	"sync/atomic"

	"github.com/shardd/shardd/kvpb"
)

// maxFrame bounds the requests packed into one frame.
const maxFrame = 1024

// ErrClosed is returned for requests that were pending when the stream
// broke or the Client was closed.
var ErrClosed = errors.New("kvstream: stream closed")

// Client multiplexes callers over one KV.Stream.
type Client struct {
	st     kvpb.KV_StreamClient
	cancel context.CancelFunc
	queue  chan *kvpb.Request
	nextID atomic.Uint64

	mu      sync.Mutex
	waiting map[uint64]chan *kvpb.Response
	broken  bool
	dead    chan struct{} // closed when broken is set
}

// New opens a stream on kv. Close the Client when done.
func New(kv kvpb.KVClient) (*Client, error) {
	ctx, cancel := context.WithCancel(context.Background())
	st, err := kv.Stream(ctx)
	if err != nil {
		cancel()
		return nil, err
	}
	c := &Client{st: st, cancel: cancel, queue: make(chan *kvpb.Request, 4096), waiting: map[uint64]chan *kvpb.Response{}, dead: make(chan struct{})}
	go c.send()
	go c.receive()
	return c, nil
}

func (c *Client) send() {
	frame := &kvpb.RequestFrame{}
	for req := range c.queue {
		frame.Requests = append(frame.Requests[:0], req)
	drain:
		for len(frame.Requests) < maxFrame {
			select {
			case r := <-c.queue:
				frame.Requests = append(frame.Requests, r)
			default:
				break drain
			}
		}
		if c.st.Send(frame) != nil {
			return // receive sees the error and fails the waiters
		}
	}
}

func (c *Client) receive() {
	for {
		frame, err := c.st.Recv()
		c.mu.Lock()
		if err != nil {
			c.broken = true
			close(c.dead)
			for id, ch := range c.waiting {
				delete(c.waiting, id)
				close(ch)
			}
			c.mu.Unlock()
			return
		}
		for _, r := range frame.Responses {
			if ch := c.waiting[r.Id]; ch != nil {
				delete(c.waiting, r.Id)
				ch <- r
			}
		}
		c.mu.Unlock()
	}
}

// Do sends req (its Id is overwritten) and waits for its response.
func (c *Client) Do(req *kvpb.Request) (*kvpb.Response, error) {
	req.Id = c.nextID.Add(1)
	ch := make(chan *kvpb.Response, 1)
	c.mu.Lock()
	if c.broken {
		c.mu.Unlock()
		return nil, ErrClosed
	}
	c.waiting[req.Id] = ch
	c.mu.Unlock()
	select {
	case c.queue <- req:
	case <-c.dead: // the sender is gone; ch is closed
	}
	resp, ok := <-ch
	if !ok {
		return nil, ErrClosed
	}
	return resp, nil
}

// Close ends the stream; pending and later requests fail with ErrClosed.
// Callers must not call Do concurrently with or after Close.
func (c *Client) Close() {
	c.cancel()
	close(c.queue)
}
