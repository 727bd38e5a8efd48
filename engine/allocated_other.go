//go:build !unix

package engine

import "os"

// fileAllocated is the space a file takes on disk; without Unix's block
// count, its size.
func fileAllocated(fi os.FileInfo) uint64 { return uint64(fi.Size()) }
