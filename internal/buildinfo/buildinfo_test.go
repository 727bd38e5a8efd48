package buildinfo

import (
	"runtime/debug"
	"strings"
	"testing"
)

func TestString(t *testing.T) {
	stamped := &debug.BuildInfo{GoVersion: "go1.26.8", Main: debug.Module{Version: "v0.3.0"}, Settings: []debug.BuildSetting{
		{Key: "vcs.revision", Value: "0df638a1b2c3d4e5f60718293a4b5c6d7e8f9012"},
		{Key: "vcs.time", Value: "2025-06-01T10:00:00Z"},
		{Key: "vcs.modified", Value: "true"},
	}}
	for _, tc := range []struct {
		name string
		bi   *debug.BuildInfo
		want string
	}{
		{"stamped", stamped, "v0.3.0, revision 0df638a1b2c3 (modified) of 2025-06-01T10:00:00Z, go1.26.8 "},
		{"unstamped", &debug.BuildInfo{GoVersion: "go1.26.8", Main: debug.Module{Version: "(devel)"}}, "(devel), revision unknown, go1.26.8 "},
		{"no build info", nil, "(unknown), revision unknown, go"},
	} {
		got := fromBuildInfo(tc.bi).String()
		if !strings.HasPrefix(got, tc.want) || strings.Contains(got, "\n") {
			t.Errorf("%s: got %q, want one line starting %q", tc.name, got, tc.want)
		}
	}
}
