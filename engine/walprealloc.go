package engine

import "github.com/cockroachdb/pebble/v2/vfs"

// walPreallocFS preallocates Pebble's WAL files a chunk at a time as they
// grow, instead of Pebble's 110% of MemTableSize per file at once.
//
// Pebble starts with small memtables (256 KiB, doubling up to
// MemTableSize) and gives each its own WAL file, so with 64 MiB
// memtables a store that took 5 MB of writes held six WAL files of 70 MiB
// each, almost all of it preallocated and never written (issue 11), and a
// fresh three-node demo took 282 MB. Preallocation is still worth having:
// it saves the fsyncs of a growing WAL the block allocations. So the file
// keeps chunk bytes preallocated ahead of what has been written.
//
// Only files Pebble asks to preallocate (its WAL files) are affected;
// every other call goes to the wrapped filesystem.
type walPreallocFS struct {
	vfs.FS
	chunk int64
}

func (fs walPreallocFS) Create(name string, category vfs.DiskWriteCategory) (vfs.File, error) {
	f, err := fs.FS.Create(name, category)
	if err != nil {
		return nil, err
	}
	return &chunkedPreallocFile{File: f, chunk: fs.chunk}, nil
}

func (fs walPreallocFS) ReuseForWrite(oldname, newname string, category vfs.DiskWriteCategory) (vfs.File, error) {
	f, err := fs.FS.ReuseForWrite(oldname, newname, category)
	if err != nil {
		return nil, err
	}
	return &chunkedPreallocFile{File: f, chunk: fs.chunk}, nil
}

// Unwrap returns the wrapped filesystem, as Pebble's own wrappers do.
func (fs walPreallocFS) Unwrap() vfs.FS { return fs.FS }

// chunkedPreallocFile is a file written sequentially (Write, never
// WriteAt) by one goroutine at a time, as Pebble writes its WAL.
type chunkedPreallocFile struct {
	vfs.File
	chunk int64
	// wal is set once Pebble asked to preallocate: the file is a WAL.
	wal bool
	// written is what Write wrote; end is what has been preallocated.
	written, end int64
}

// Preallocate turns Pebble's request for a whole block into one chunk.
func (f *chunkedPreallocFile) Preallocate(offset, length int64) error {
	f.wal = true
	return f.extend(offset + min(length, f.chunk))
}

func (f *chunkedPreallocFile) Write(p []byte) (int, error) {
	if f.wal {
		// Like Pebble, write even if preallocation fails (a filesystem
		// without fallocate): it is an optimization.
		_ = f.extend(f.written + int64(len(p)))
	}
	n, err := f.File.Write(p)
	f.written += int64(n)
	return n, err
}

// extend preallocates whole chunks from end until they cover upTo. A
// failed preallocation is not retried for the same chunks.
func (f *chunkedPreallocFile) extend(upTo int64) error {
	if upTo <= f.end {
		return nil
	}
	n := (upTo - f.end + f.chunk - 1) / f.chunk * f.chunk
	at := f.end
	f.end += n
	return f.File.Preallocate(at, n)
}
