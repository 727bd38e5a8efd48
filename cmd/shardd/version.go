package main

import (
	"context"
	"flag"
	"fmt"

	"github.com/shardd/shardd/internal/buildinfo"
)

var versionCommand = &command{
	name:    "version",
	args:    "",
	summary: "print the build of this binary",
	doc: `
Version prints, on one line, the module version, the commit this binary
was built from (its hash, whether the tree had uncommitted changes, its
time), the Go version and the platform. 'shardd --version' prints the same.
'shardd status' shows the build a running node reports.`,
	setup: func(fs *flag.FlagSet) func(context.Context, *env, []string) error {
		return func(_ context.Context, e *env, args []string) error {
			if len(args) > 0 {
				return usagef("unexpected arguments %q", args)
			}
			_, err := fmt.Fprintln(e.stdout, buildinfo.Line("shardd"))
			return err
		}
	},
}
