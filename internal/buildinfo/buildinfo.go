// Package buildinfo says which build of shardd is running: the module
// version, the commit it was built from and the Go toolchain, as Go
// stamps them into every binary (runtime/debug.ReadBuildInfo). Both
// binaries print it (version, --version) and nodes report it in their
// status, so that an operator can tell which build each process runs.
package buildinfo

import (
	"runtime"
	"runtime/debug"
	"strings"
)

// Info is what the running binary knows about its own build.
type Info struct {
	// Version is the main module's version: a tag or pseudo-version for a
	// binary built with go install module@version, "(devel)" for one built
	// from a checkout.
	Version string
	// Revision, Time and Modified describe the commit of a binary built
	// from a checkout: its hash, its commit time (RFC 3339) and whether
	// the tree had uncommitted changes. Revision is empty when the build
	// was not stamped (-buildvcs=false, go run, go test, no git).
	Revision string
	Time     string
	Modified bool
	// GoVersion is the toolchain that built the binary, Platform its
	// GOOS/GOARCH.
	GoVersion, Platform string
}

// Read returns the running binary's build information.
func Read() Info {
	bi, _ := debug.ReadBuildInfo()
	return fromBuildInfo(bi)
}

func fromBuildInfo(bi *debug.BuildInfo) Info {
	i := Info{Version: "(unknown)", GoVersion: runtime.Version(), Platform: runtime.GOOS + "/" + runtime.GOARCH}
	if bi == nil {
		return i
	}
	if bi.Main.Version != "" {
		i.Version = bi.Main.Version
	}
	if bi.GoVersion != "" {
		i.GoVersion = bi.GoVersion
	}
	for _, s := range bi.Settings {
		switch s.Key {
		case "vcs.revision":
			i.Revision = s.Value
		case "vcs.time":
			i.Time = s.Value
		case "vcs.modified":
			i.Modified = s.Value == "true"
		}
	}
	return i
}

// revisionChars is how much of a commit hash String shows; git accepts
// the prefix wherever it takes a hash.
const revisionChars = 12

// String is the build on one line, for example
//
//	v0.3.0, revision 0df638a1b2c3 (modified) of 2025-06-01T10:00:00Z, go1.26.8 linux/amd64
func (i Info) String() string {
	var b strings.Builder
	b.WriteString(i.Version)
	b.WriteString(", revision ")
	if i.Revision == "" {
		b.WriteString("unknown")
	} else {
		b.WriteString(i.Revision[:min(len(i.Revision), revisionChars)])
		if i.Modified {
			b.WriteString(" (modified)")
		}
		if i.Time != "" {
			b.WriteString(" of ")
			b.WriteString(i.Time)
		}
	}
	b.WriteString(", ")
	b.WriteString(i.GoVersion)
	b.WriteString(" ")
	b.WriteString(i.Platform)
	return b.String()
}

// Line is what the version command prints: the program's name and String.
func Line(program string) string { return program + " " + Read().String() }
