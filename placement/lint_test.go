package placement

import (
	"go/ast"
	"go/parser"
	"go/token"
	"os"
	"strconv"
	"strings"
	"testing"
)

// forbiddenImports are the packages the pure core must not use: it does no
// I/O, reads no clock, draws no randomness, starts no goroutine and takes
// no lock (see doc.go).
var forbiddenImports = map[string]bool{
	"time": true, "os": true, "io": true, "io/ioutil": true, "net": true, "net/http": true,
	"sync": true, "sync/atomic": true, "math/rand": true, "math/rand/v2": true,
	"crypto/rand": true, "syscall": true, "unsafe": true,
}

// TestPureCore checks that no non-test file of the package imports a
// forbidden package or starts a goroutine.
func TestPureCore(t *testing.T) {
	ents, err := os.ReadDir(".")
	if err != nil {
		t.Fatal(err)
	}
	fset := token.NewFileSet()
	checked := 0
	for _, e := range ents {
		name := e.Name()
		if e.IsDir() || !strings.HasSuffix(name, ".go") || strings.HasSuffix(name, "_test.go") {
			continue
		}
		f, err := parser.ParseFile(fset, name, nil, 0)
		if err != nil {
			t.Fatal(err)
		}
		checked++
		for _, imp := range f.Imports {
			if p, _ := strconv.Unquote(imp.Path.Value); forbiddenImports[p] {
				t.Errorf("%s imports %q", fset.Position(imp.Pos()), p)
			}
		}
		ast.Inspect(f, func(n ast.Node) bool {
			if g, ok := n.(*ast.GoStmt); ok {
				t.Errorf("%s starts a goroutine", fset.Position(g.Pos()))
			}
			return true
		})
	}
	if checked == 0 {
		t.Fatal("no source files checked")
	}
}
