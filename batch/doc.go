// Package batch coalesces work so that its cost is paid per batch, not per
// request: many client commands for one group become one Paxos value
// (Proposals); the node runtime persists every group made ready in one
// scheduling cycle with one synced engine batch, and sends the messages of
// every group bound for one peer node in frames on one stream (see
// transport). Counters record how well each kind of batching works.
package batch
