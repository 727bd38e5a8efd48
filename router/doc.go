// Package router is the client library of shardd: it sends each request
// to the node leading the range that holds its key, and hides redirects,
// stale range maps, leader changes and reconnects behind retries.
//
//	c, err := router.New(ctx, router.Config{Seeds: []string{"10.0.0.1:7100"}})
//	if err != nil {
//		return err
//	}
//	defer c.Close()
//	if err := c.Put(ctx, []byte("user/42"), []byte("Ada")); err != nil {
//		return err
//	}
//	v, found, err := c.Get(ctx, []byte("user/42"))
//	kvs, resume, err := c.Scan(ctx, []byte("user/"), []byte("user0"), 100)
//	res, err := c.CompareAndSwap(ctx, router.CAS{Key: k, Expected: old, NewValue: updated})
//
// A Client is safe for concurrent use and meant to be shared by a whole
// process: its goroutines share one connection and one stream per node.
//
// # Routing
//
// The Client caches range descriptors ([start, end), range id,
// generation, replicas) sorted by start key, and a leader per range. A
// request for a key goes to the cached range's leader, or, with no leader
// known, to a replica, and carries the range id and generation it was
// routed with. The node's refusal says what to do next:
//
//   - NotLeader names the leader: the Client remembers it and resends at
//     once (after a backoff if the hint is nothing new).
//   - RangeMismatch carries the node's newer descriptor, which replaces
//     the cached one and every cached range it overlaps; if the node has
//     nothing newer, the Client drops its entry and asks its Source.
//   - Unavailable, a broken stream or an unreachable node: back off
//     (exponentially, with jitter) and retry, avoiding that node for a
//     while.
//
// The Source is where range descriptors come from on a cache miss: by
// default a NodeSource, which asks the seed nodes' Admin.Ranges. In a
// cluster run by the placement service, use its map instead:
//
//	pc, err := client.New([]string{"10.0.0.1:7000"}) // package placement/client
//	c, err := router.New(ctx, router.Config{Source: client.RouterSource{Client: pc}})
//
// A Source that is also a Watcher (the placement service's is) pushes the
// map's changes, which the Client follows for its whole life; requests
// then rarely meet a stale descriptor, and ranges already cached keep
// working while the service is down. The cache holds no authority: nodes
// check every request's generation.
//
// Attempts are bounded (Config.MaxAttempts) and the context's deadline is
// respected; the error of a request that gives up is a gRPC status error,
// never a bare string: Unavailable (with the last error's message and
// details), or DeadlineExceeded/Canceled when the context ends. Bad input
// is InvalidArgument and never retried.
//
// # Exactly-once writes and their fate
//
// Every Client is a session with a random id, and numbers its writes;
// every attempt of a write carries the same number, and the ranges
// remember the result of each numbered write they applied (see package
// kvsm). So a write whose outcome was lost (a leader change, or a broken
// stream while it was in flight) is simply sent again: if it had been
// applied, the range answers with the first result and applies nothing.
// This holds for Put, Delete, Batch and CompareAndSwap alike: a retried
// CAS does not compare against its own write.
//
// Every error a write returns says its fate, checked with errors.Is:
//
//   - ErrNotApplied: it was certainly not applied (InvalidArgument, a
//     failed condition, or retries that ran out without any attempt
//     having reached a node that could apply it).
//   - ErrAmbiguous: it may or may not have been applied. An attempt may
//     have been applied and no later attempt learned the outcome before
//     the attempts, MaxRetryAge or the context ran out (the status code
//     is then Unavailable, DeadlineExceeded or Canceled), or its range no
//     longer remembers the result (Aborted). Read the key to find out.
//
// The Client tells the ranges which results it no longer needs (all
// those below its oldest write in flight), so they keep only a few per
// client; a range forgets a session ten minutes after its last write.
//
// # Transport
//
// Every request of every goroutine to one node travels over one
// long-lived KV.Stream, batched into frames:
//
//	callers (any goroutine)
//	  │ encode the request, queue it, wait on its channel
//	  ▼
//	┌──────────────────┐
//	│ queue for node 2 │   one per node address
//	└────────┬─────────┘
//	         │ signal (chan, cap 1)
//	         ▼
//	  sender goroutine: take up to MaxFrameRequests / MaxFrameBytes,
//	  send one RequestFrame; (re)open the stream when needed
//	         │
//	         ▼ KV.Stream ═════► node ═════► ResponseFrames
//	                                          │
//	  receiver goroutine (per stream): match responses to callers by id
//
// The more callers queue while a frame is on the wire, the more the next
// frame carries, so batching grows with load without a timer; on waking,
// the sender yields once (runtime.Gosched) so that callers just woken by
// a response frame can queue their next requests first. Stats reports
// the requests per frame achieved. Requests are encoded by their
// callers, so the sender only concatenates them. When a stream breaks,
// its requests in flight fail with Unavailable and go back to the retry
// loop, and the next frame opens a new stream.
package router
