package engine

import (
	"errors"
	"fmt"
	"strings"
	"syscall"

	"github.com/cockroachdb/pebble/v2"
	"github.com/cockroachdb/pebble/v2/vfs"
)

// DirInUseError is the error of Open on a directory that another engine
// holds: another process, PID if it is known (0 if not), or this one.
type DirInUseError struct {
	Dir string
	PID int
	// ThisProcess is set when the holder is an engine of this process.
	ThisProcess bool
}

func (e *DirInUseError) Error() string {
	switch {
	case e.ThisProcess:
		return fmt.Sprintf("data directory %s is in use by this process (opened twice)", e.Dir)
	case e.PID > 0:
		return fmt.Sprintf("data directory %s is in use by another process (pid %d)", e.Dir, e.PID)
	}
	return fmt.Sprintf("data directory %s is in use by another process", e.Dir)
}

// lockDir takes dir's lock, Pebble's LOCK file, which the engine holds
// until Close (pebble.Options.Lock), so that a second process on the same
// directory stops before it changes anything in it (Open clears tmpDir
// before it opens Pebble).
//
// Pebble's lock is a POSIX record lock (fcntl F_SETLK), and a refusal
// reads "resource temporarily unavailable"; the kernel knows the holder's
// pid, and the error names it (lockHolder).
func lockDir(fs vfs.FS, dir string) (*pebble.Lock, error) {
	l, err := pebble.LockDirectory(dir, fs)
	if err == nil {
		return l, nil
	}
	switch {
	case errors.Is(err, syscall.EAGAIN) || errors.Is(err, syscall.EACCES):
		inUse := &DirInUseError{Dir: dir}
		if fs == vfs.Default {
			inUse.PID = lockHolder(fs.PathJoin(dir, "LOCK"))
		}
		return nil, inUse
	case strings.Contains(err.Error(), "lock held by current process"): // vfs.Default's own
		return nil, &DirInUseError{Dir: dir, ThisProcess: true}
	}
	return nil, fmt.Errorf("engine: lock %s: %w", dir, err)
}
