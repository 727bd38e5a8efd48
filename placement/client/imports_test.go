package client_test

import (
	"os/exec"
	"slices"
	"strings"
	"testing"
)

// lightPackages are what a Go program that follows the placement map
// imports. They must not pull in the server: a client built with them
// stays small (about 320 packages with the standard library, against
// 590 for placement/service), and does not clash with other modules'
// versions of Pebble's or memberlist's dependencies (genproto, when
// linked with etcd's client).
var lightPackages = []string{
	"github.com/shardd/shardd/placement/client",
	"github.com/shardd/shardd/router",
}

// allowedShardd are the only packages of this module that lightPackages
// may depend on: the generated API, the client libraries themselves, and
// what traced components share at the cost of the OpenTelemetry API alone.
var allowedShardd = []string{
	"github.com/shardd/shardd/kvpb",
	"github.com/shardd/shardd/placementpb",
	"github.com/shardd/shardd/router",
	"github.com/shardd/shardd/placement/client",
	"github.com/shardd/shardd/internal/tracing",
}

// serverModules are third-party modules that only the server needs: Pebble
// and its kin, memberlist, and OpenTelemetry's SDK and exporters (a client
// uses the API, and its program chooses the SDK).
var serverModules = []string{
	"github.com/cockroachdb/",
	"github.com/hashicorp/",
	"go.opentelemetry.io/otel/sdk",
	"go.opentelemetry.io/otel/exporters",
}

// deps lists the transitive imports of pkgs (test files excluded).
func deps(t *testing.T, pkgs ...string) []string {
	t.Helper()
	goBin, err := exec.LookPath("go")
	if err != nil {
		t.Skip("the go command is not on PATH:", err)
	}
	out, err := exec.Command(goBin, append([]string{"list", "-deps"}, pkgs...)...).Output()
	if err != nil {
		t.Fatalf("go list -deps %v: %v", pkgs, err)
	}
	return strings.Fields(string(out))
}

// serverImports returns the packages of list that a light client must not
// import.
func serverImports(list []string) []string {
	var bad []string
	for _, p := range list {
		switch {
		case strings.HasPrefix(p, "github.com/shardd/shardd/") && !slices.Contains(allowedShardd, p),
			slices.ContainsFunc(serverModules, func(m string) bool { return strings.HasPrefix(p, m) }):
			bad = append(bad, p)
		}
	}
	return bad
}

// TestLightImports checks that the client libraries import none of the
// server (node, engine, placement/service, Pebble, memberlist...), and,
// so that the check cannot pass vacuously, that it does flag the server.
func TestLightImports(t *testing.T) {
	if bad := serverImports(deps(t, lightPackages...)); len(bad) > 0 {
		t.Errorf("%v import server packages: %v", lightPackages, bad)
	}
	bad := serverImports(deps(t, "github.com/shardd/shardd/placement/service"))
	for _, want := range []string{"github.com/shardd/shardd/node", "github.com/shardd/shardd/engine",
		"github.com/cockroachdb/pebble/v2", "github.com/hashicorp/memberlist"} {
		if !slices.Contains(bad, want) {
			t.Errorf("the check misses %s among placement/service's imports", want)
		}
	}
}
