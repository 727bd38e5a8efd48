// Package transport carries Paxos messages between shardd nodes. Each node
// hosts thousands of group replicas, and ALL of their messages to one peer
// node travel over ONE long-lived gRPC bidirectional stream (the kvpb
// Transport service's Messages RPC), batched into frames: never a
// connection, a stream or a goroutine per group. Snapshots, which are large
// and rare, have their own RPC on their own connection per peer.
//
// # Sending
//
// The shape is CockroachDB's raft transport (SendAsync and processQueue in
// pkg/kv/kvserver/raft_transport.go), with its one regret fixed: queues
// are bounded by bytes, not by message count.
//
//	 scheduler workers (many groups each)
//	   │ Send / SendBatch: non-blocking; drop and count when full
//	   ▼
//	┌───────────────────┐  ┌───────────────────┐
//	│ queue for node 2  │  │ queue for node 3  │   one per destination:
//	│ msgs, costs,bytes │  │ msgs, costs,bytes │   mutex + byte bound
//	└─────────┬─────────┘  └─────────┬─────────┘
//	          │ signal (chan, cap 1)  │
//	          ▼                       ▼
//	    sender goroutine        sender goroutine     one per destination,
//	    swap queue out,         ...                  started on first Send,
//	    apply Faults,                                lives until Close
//	    AppendMessages ≤ MaxFrameBytes
//	          │ stream.Send(MessageFrame)
//	          ▼
//	   one Messages stream per peer ══════► peer's server: Recv,
//	                                        DecodeMessages,
//	                                        Handler.HandleMessages
//
// A sender goroutine waits for a signal, swaps the whole queue out under
// the lock (so callers never wait for the network or for encoding), and
// encodes as many messages as fit MaxFrameBytes into one reusable buffer
// per stream send. The more callers send while a frame is on the wire, the
// more the next frame carries: batching grows with load by itself, with no
// timer. Messages to one destination arrive in the order Send accepted
// them, minus drops (and, across a reconnect, possibly overtaking the last
// frames of the old stream).
//
// # Failures
//
// Send never blocks. A full queue drops the new message (Stats.Dropped);
// Paxos retransmits, so a drop costs latency, never safety, and a sender
// stalled on a dead or slow peer must not stall the groups that talk to
// healthy ones. While a peer cannot be dialed its queue is kept, up to the
// bound, and the dial is retried with exponential backoff. When a stream
// breaks, the batch that was being sent is dropped and the peer is redialed
// when there is work. A frame that does not decode ends the stream that
// carried it with InvalidArgument; it never crashes the receiver.
//
// # Testing hooks
//
// Faults cuts, degrades and delays links on the sending side, and cuts
// them on the receiving side (CutFrom), so that tests of real multi-node
// clusters can partition them; shardd's --enable-fault-injection serves
// them to other processes.
package transport
