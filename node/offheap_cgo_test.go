//go:build cgo

package node

// pebbleOffHeap says whether Pebble allocates its block cache and
// memtables outside the Go heap (with cgo), so that the Go heap measures
// what the node itself holds.
const pebbleOffHeap = true
