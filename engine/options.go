package engine

import (
	"fmt"
	"log/slog"

	"github.com/cockroachdb/pebble/v2/vfs"
	"go.opentelemetry.io/otel/metric"
)

// Logger receives the storage layer's log messages. Its method set is the
// same as pebble.Logger, so any Pebble logger can be passed in.
// Implementations must be safe for concurrent use, because Pebble logs from
// its background goroutines.
//
// Fatalf is special. The engine intercepts every Pebble Fatalf and enters
// its failed state first. A failed WAL write or fsync is then reported as
// an error (logged with Errorf, not Fatalf). Any other fatal error (a
// failed MANIFEST write, say) is passed to Fatalf, and if Fatalf returns,
// the engine panics, because Pebble's code after a fatal error assumes the
// process is gone. The engine recovers that panic in calls it made itself
// and reports the failure; in Pebble's background goroutines it stops the
// process. See failLogger in engine.go.
type Logger interface {
	Infof(format string, args ...any)
	Errorf(format string, args ...any)
	Fatalf(format string, args ...any)
}

// Options configures an Engine. The zero value is not usable; start from
// DefaultOptions and set Dir. Open calls EnsureDefaults and Validate.
type Options struct {
	// FS is the filesystem the database lives on. Tests pass
	// vfs.NewCrashableMem or an errorfs wrapper here. The default value is
	// vfs.Default.
	FS vfs.FS

	// Dir is the directory of the database. It is created if missing, with
	// its missing parents, and every directory created is synced, so the
	// first synced commit survives a power loss. There is no default:
	// Validate rejects an empty Dir.
	Dir string

	// CacheSize is the size in bytes of the block cache shared by every
	// group's reads. The default value is 128 MiB.
	CacheSize int64

	// MemTableSize is the size in bytes of one memtable. Larger memtables
	// absorb the high write rate of thousands of groups' logs (most entries
	// are deleted by log truncation before they are flushed) at the cost of
	// memory and recovery time. It must be at least 1 MiB and below 4 GiB.
	// The default value is 64 MiB.
	MemTableSize uint64

	// WALPreallocation is how many bytes of a WAL file are preallocated
	// ahead of what has been written, to spare the fsyncs of a growing WAL
	// the block allocations. Pebble on its own preallocates 110% of
	// MemTableSize for each WAL file at once, and a store that took a few
	// MB of writes holds several WAL files (one per memtable, and Pebble's
	// first memtables are small): with 64 MiB memtables that was 70 MiB of
	// disk per file, hardly any of it written (see walPreallocFS). A
	// negative value leaves preallocation to Pebble. The default value is
	// 4 MiB.
	WALPreallocation int64

	// MaxConcurrentCompactions bounds Pebble's background compactions. The
	// default value is 2.
	MaxConcurrentCompactions int

	// Logger receives Pebble's log messages. The default value logs through
	// log/slog's default logger; its Fatalf logs at error level and returns
	// (see Logger for what happens next).
	Logger Logger

	// MeterProvider receives the engine's metrics: WAL fsync latency and
	// records per fsync (see metrics.go). The default value is nil: no
	// metrics.
	MeterProvider metric.MeterProvider

	// DisableAutomaticCompactions turns Pebble's background compactions off.
	// Only tests that must count every filesystem operation (error
	// injection) set it. The default value is false.
	DisableAutomaticCompactions bool
}

const (
	defaultCacheSize                = 128 << 20
	defaultMemTableSize             = 64 << 20
	defaultWALPreallocation         = 4 << 20
	defaultMaxConcurrentCompactions = 2

	minMemTableSize = 1 << 20
	// maxMemTableSize is Pebble's own limit (4 GiB - 1 byte).
	maxMemTableSize = 4<<30 - 1
)

// DefaultOptions returns the options for a production node with Dir unset.
func DefaultOptions() Options {
	var o Options
	o.EnsureDefaults()
	return o
}

// EnsureDefaults fills every zero field with its default value. It does not
// set Dir, which has no sensible default.
func (o *Options) EnsureDefaults() {
	if o.FS == nil {
		o.FS = vfs.Default
	}
	if o.CacheSize == 0 {
		o.CacheSize = defaultCacheSize
	}
	if o.MemTableSize == 0 {
		o.MemTableSize = defaultMemTableSize
	}
	if o.WALPreallocation == 0 {
		o.WALPreallocation = defaultWALPreallocation
	}
	if o.MaxConcurrentCompactions == 0 {
		o.MaxConcurrentCompactions = defaultMaxConcurrentCompactions
	}
	if o.Logger == nil {
		o.Logger = slogLogger{}
	}
}

// Validate reports the first field whose value is unusable, naming the field
// and the value.
func (o *Options) Validate() error {
	switch {
	case o.FS == nil:
		return fmt.Errorf("engine: Options.FS is nil")
	case o.Dir == "":
		return fmt.Errorf("engine: Options.Dir is empty")
	case o.CacheSize < 0:
		return fmt.Errorf("engine: Options.CacheSize = %d, must not be negative", o.CacheSize)
	case o.MemTableSize < minMemTableSize || o.MemTableSize > maxMemTableSize:
		return fmt.Errorf("engine: Options.MemTableSize = %d, must be in [%d, %d]",
			o.MemTableSize, minMemTableSize, maxMemTableSize)
	case o.MaxConcurrentCompactions < 1:
		return fmt.Errorf("engine: Options.MaxConcurrentCompactions = %d, must be at least 1",
			o.MaxConcurrentCompactions)
	case o.Logger == nil:
		return fmt.Errorf("engine: Options.Logger is nil")
	}
	return nil
}

// slogLogger is the default Logger. Its Fatalf does not exit: the Engine has
// already entered its failed state when Fatalf is called, and it decides
// what happens next (see Logger).
type slogLogger struct{}

func (slogLogger) Infof(format string, args ...any) {
	slog.Info(fmt.Sprintf(format, args...), "component", "pebble")
}

func (slogLogger) Errorf(format string, args ...any) {
	slog.Error(fmt.Sprintf(format, args...), "component", "pebble")
}

func (slogLogger) Fatalf(format string, args ...any) {
	slog.Error(fmt.Sprintf(format, args...), "component", "pebble", "fatal", true)
}
