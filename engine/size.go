package engine

import (
	"bytes"
	"errors"
	"os"

	"github.com/cockroachdb/pebble/v2/vfs"
)

// EstimateDataSize returns an estimate of the bytes that the user data in
// [start, end) takes on disk; a nil end means unbounded. It is cheap
// (Pebble's EstimateDiskUsage: it reads the LSM's file metadata, not the
// data), so a node may call it for every range it leads on every load
// report.
//
// It counts what is in sstables only, not what is still in a memtable:
// a range's newest writes, at most Options.MemTableSize of the node's
// writes, count once they are flushed, so the estimate lags writes by at
// most one memtable. It also counts overwritten and deleted values until
// compactions drop them.
func (e *Engine) EstimateDataSize(start, end []byte) (uint64, error) {
	if end != nil && bytes.Compare(start, end) > 0 {
		return 0, ErrInvalidSpan
	}
	if err := e.acquire(); err != nil {
		return 0, err
	}
	defer e.release()
	lo, hi := dataSpan(start, end)
	// EstimateDiskUsage's bounds are inclusive: hi, an exclusive bound,
	// adds at most one data block of the next range.
	return e.db.EstimateDiskUsage(lo, hi)
}

// DiskUsage is what a store takes on disk.
type DiskUsage struct {
	// Allocated is the space the files of the store's directory take on
	// the filesystem, as du counts it. It includes what Pebble does not
	// account for: the space it preallocates for each WAL file (110% of
	// Options.MemTableSize) and the recycled WAL files it keeps for reuse.
	Allocated uint64
	// Pebble is what Pebble accounts for (Metrics.DiskSpaceUsage): the
	// bytes written to WAL files, live and obsolete sstables not yet
	// deleted, the manifest and options files.
	Pebble uint64
}

// DiskUsage returns what the store takes on disk. It takes Pebble's
// metrics locks and lists the store's directory, so it is for status
// reports, not for every request.
func (e *Engine) DiskUsage() (DiskUsage, error) {
	if err := e.acquire(); err != nil {
		return DiskUsage{}, err
	}
	defer e.release()
	u := DiskUsage{Pebble: e.db.Metrics().DiskSpaceUsage()}
	var err error
	u.Allocated, err = allocatedBytes(e.opts.FS, e.opts.Dir)
	return u, err
}

// allocatedBytes sums the space the files under dir take on fs. Files that
// Pebble deletes while it lists them are skipped.
func allocatedBytes(fs vfs.FS, dir string) (uint64, error) {
	names, err := fs.List(dir)
	if err != nil {
		return 0, err
	}
	var total uint64
	for _, name := range names {
		path := fs.PathJoin(dir, name)
		fi, err := fs.Stat(path)
		switch {
		case errors.Is(err, os.ErrNotExist):
			continue
		case err != nil:
			return total, err
		case fi.IsDir():
			n, err := allocatedBytes(fs, path)
			total += n
			if err != nil {
				return total, err
			}
		default:
			total += fileAllocated(fi)
		}
	}
	return total, nil
}
