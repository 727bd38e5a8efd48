//go:build !cgo

package node

// pebbleOffHeap: without cgo, Pebble's block cache and memtables are Go
// slices, and a snapshot's export fills the cache.
const pebbleOffHeap = false
