package cli

import (
	"flag"
	"fmt"
	"io"
	"strings"
)

// Program describes a command-line program made of commands (shardd,
// placement), for the help both write in one layout.
type Program struct {
	Name     string // "shardd"
	Synopsis string // what follows the name: "<command> [flags] [arguments]"
	About    string // what the program does, a paragraph
	// Commands lists the commands in the order help shows them, each as
	// its name and a one-line summary; "help" is added last.
	Commands [][2]string
	// Notes end the help: how to get a command's own help, and the like.
	Notes string
}

// FlagSyntax is the note on how flags are written, which ParseInterspersed
// reads.
const FlagSyntax = `Flags may be written -flag or --flag, with a value as --flag=value or
--flag value, before or after the arguments; an argument that starts with
"-" goes after "--", which ends the flags.`

// WriteUsage writes p's help: what it does, its synopsis, its commands
// and its notes.
func (p Program) WriteUsage(w io.Writer) {
	fmt.Fprintf(w, "%s\n\nUsage:\n  %s %s\n\nCommands:\n", strings.TrimSpace(p.About), p.Name, p.Synopsis)
	for _, c := range p.Commands {
		fmt.Fprintf(w, "  %-8s %s\n", c[0], c[1])
	}
	fmt.Fprintf(w, "  %-8s %s\n\n%s\n%s\n", "help", "explain a command and its flags", strings.TrimSpace(p.Notes), FlagSyntax)
}

// WriteCommandHead writes the start of a command's help: its synopsis
// ("shardd start --id N ...") and its doc.
func WriteCommandHead(w io.Writer, synopsis, doc string) {
	fmt.Fprintf(w, "Usage: %s\n\n%s\n", synopsis, strings.TrimSpace(doc))
}

// WriteFlags writes a title ("Flags:") and the flags of fs, if it has
// any.
func WriteFlags(w io.Writer, title string, fs *flag.FlagSet) {
	hasFlags := false
	fs.VisitAll(func(*flag.Flag) { hasFlags = true })
	if hasFlags {
		fmt.Fprintf(w, "\n%s\n", title)
		fs.PrintDefaults()
	}
}
