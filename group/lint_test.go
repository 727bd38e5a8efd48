package group

import (
	"go/ast"
	"go/parser"
	"go/token"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
)

// forbiddenImports are the packages the consensus core must not use: it
// reads no wall clock, draws no global randomness, starts no goroutine,
// takes no lock and touches no disk or network (see doc.go). Time and
// randomness come in through Config.Clock and Config.Rand.
var forbiddenImports = map[string]bool{
	"time":         true,
	"os":           true,
	"net":          true,
	"sync":         true,
	"math/rand":    true,
	"math/rand/v2": true,
	"io/ioutil":    true,
	"net/http":     true,
	"syscall":      true,
}

func forbiddenImport(path string) bool {
	return forbiddenImports[path] || path == "github.com/cockroachdb/pebble" ||
		strings.HasPrefix(path, "github.com/cockroachdb/pebble/")
}

// coreFiles returns the non-test Go files of this package's directory,
// not of its subdirectories (group/sim may use anything).
func coreFiles(t *testing.T) []string {
	t.Helper()
	ents, err := os.ReadDir(".")
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, e := range ents {
		name := e.Name()
		if e.Type().IsRegular() && strings.HasSuffix(name, ".go") && !strings.HasSuffix(name, "_test.go") {
			out = append(out, name)
		}
	}
	// Guard against a vacuous pass, e.g. when run from the wrong directory.
	if len(out) < 5 || !slices.Contains(out, "replica.go") {
		t.Fatalf("found only %v; is the test running in group/?", out)
	}
	return out
}

// checkImports returns one complaint per forbidden import in src.
func checkImports(fset *token.FileSet, name string, src any) ([]string, error) {
	f, err := parser.ParseFile(fset, name, src, parser.ImportsOnly)
	if err != nil {
		return nil, err
	}
	var bad []string
	for _, imp := range f.Imports {
		path, err := strconv.Unquote(imp.Path.Value)
		if err != nil {
			return nil, err
		}
		if forbiddenImport(path) {
			bad = append(bad, fset.Position(imp.Pos()).String()+": imports "+strconv.Quote(path))
		}
	}
	return bad, nil
}

// checkGoStmts returns one complaint per go statement in src.
func checkGoStmts(fset *token.FileSet, name string, src any) ([]string, error) {
	f, err := parser.ParseFile(fset, name, src, parser.SkipObjectResolution)
	if err != nil {
		return nil, err
	}
	var bad []string
	ast.Inspect(f, func(n ast.Node) bool {
		if g, ok := n.(*ast.GoStmt); ok {
			bad = append(bad, fset.Position(g.Pos()).String()+": go statement")
		}
		return true
	})
	return bad, nil
}

// TestForbiddenImports keeps the consensus core pure, like Pebble's
// internal/lint TestForbiddenImports.
func TestForbiddenImports(t *testing.T) {
	fset := token.NewFileSet()
	for _, name := range coreFiles(t) {
		bad, err := checkImports(fset, filepath.Clean(name), nil)
		if err != nil {
			t.Fatal(err)
		}
		for _, b := range bad {
			t.Error(b)
		}
	}
}

// TestNoGoStatements: the core starts no goroutine; the caller owns all
// concurrency.
func TestNoGoStatements(t *testing.T) {
	fset := token.NewFileSet()
	for _, name := range coreFiles(t) {
		bad, err := checkGoStmts(fset, filepath.Clean(name), nil)
		if err != nil {
			t.Fatal(err)
		}
		for _, b := range bad {
			t.Error(b)
		}
	}
}

// TestLintCatchesPlantedViolations proves the two checks above can fail.
func TestLintCatchesPlantedViolations(t *testing.T) {
	const src = `package group

import (
	"fmt"
	"time"
	rnd "math/rand/v2"
	"github.com/cockroachdb/pebble/vfs"
)

func f() { go fmt.Println(time.Now(), rnd.IntN(2), vfs.Default) }
`
	fset := token.NewFileSet()
	imps, err := checkImports(fset, "planted.go", src)
	if err != nil {
		t.Fatal(err)
	}
	if len(imps) != 3 {
		t.Errorf("want 3 forbidden imports (time, math/rand/v2, pebble), got %q", imps)
	}
	gos, err := checkGoStmts(fset, "planted.go", src)
	if err != nil {
		t.Fatal(err)
	}
	if len(gos) != 1 {
		t.Errorf("want 1 go statement, got %q", gos)
	}
}
