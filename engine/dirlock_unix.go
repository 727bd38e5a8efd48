//go:build darwin || dragonfly || freebsd || linux || netbsd || openbsd || solaris

package engine

import (
	"io"
	"os"
	"syscall"
)

// lockHolder returns the pid of the process that holds a POSIX write lock
// on the file at path (as Pebble's vfs.Default.Lock takes it), or 0 if
// none does or it cannot tell. It opens the file read-only and never
// locks it; closing it would release a lock this process held, but this
// process holds none when it asks (its own lock would not conflict).
func lockHolder(path string) int {
	f, err := os.Open(path)
	if err != nil {
		return 0
	}
	defer f.Close()
	lk := syscall.Flock_t{Type: syscall.F_WRLCK, Whence: io.SeekStart}
	if err := syscall.FcntlFlock(f.Fd(), syscall.F_GETLK, &lk); err != nil || lk.Type == syscall.F_UNLCK {
		return 0
	}
	return int(lk.Pid)
}
