package engine

import "bytes"

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

// DiskUsage returns the bytes the store takes on disk, as Pebble accounts
// for them (Metrics.DiskSpaceUsage): the WAL, live and obsolete sstables
// not yet deleted, the manifest and options files. It takes Pebble's
// metrics locks, so it is for status reports, not for every request.
func (e *Engine) DiskUsage() (uint64, error) {
	if err := e.acquire(); err != nil {
		return 0, err
	}
	defer e.release()
	return e.db.Metrics().DiskSpaceUsage(), nil
}
