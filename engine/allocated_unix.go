//go:build unix

package engine

import (
	"os"
	"syscall"
)

// fileAllocated is the space a file takes on disk: its allocated blocks
// (preallocated ones included), or its size on a filesystem that has none
// (vfs.NewMem).
func fileAllocated(fi os.FileInfo) uint64 {
	if st, ok := fi.Sys().(*syscall.Stat_t); ok {
		return uint64(st.Blocks) * 512 // st_blocks counts 512-byte units on every Unix
	}
	return uint64(fi.Size())
}
