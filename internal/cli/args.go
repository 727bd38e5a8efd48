package cli

import (
	"flag"
	"strconv"
	"strings"
)

// ParseInterspersed parses fs's flags wherever they stand among args and
// returns the other arguments, the positional ones, in order. Go's
// flag.FlagSet.Parse stops at the first positional argument, so that
// "get KEY --json" would take "--json" for a second key; a user who adds
// a flag at the end of a command line means a flag.
//
// An argument is a flag if it starts with "-" and is more than "-": "-"
// alone (standard input, by convention) is positional, and so is a
// negative number ("-1", "-2.5") unless fs defines a flag of that name.
// A flag that takes a value and is not written --name=value takes the
// next argument as its value, whatever it is, as flag.FlagSet.Parse does.
// "--" ends the flags: every argument after it is positional, the way to
// pass a key such as "-k". Errors (an undefined flag, a bad value,
// flag.ErrHelp for -h) are fs.Parse's, and fs reports them as it is set
// up to.
func ParseInterspersed(fs *flag.FlagSet, args []string) ([]string, error) {
	var flags, positional []string
	for i := 0; i < len(args); i++ {
		a := args[i]
		if a == "--" {
			positional = append(positional, args[i+1:]...)
			break
		}
		if !isFlagArg(fs, a) {
			positional = append(positional, a)
			continue
		}
		flags = append(flags, a)
		name, _, hasValue := strings.Cut(strings.TrimPrefix(a[1:], "-"), "=")
		if !hasValue && takesValue(fs, name) && i+1 < len(args) {
			i++
			flags = append(flags, args[i])
		}
	}
	// Every element of flags is a flag or its value, so Parse consumes
	// them all (or fails).
	if err := fs.Parse(flags); err != nil {
		return nil, err
	}
	return positional, nil
}

// isFlagArg reports whether a reads as a flag of fs (defined or not).
func isFlagArg(fs *flag.FlagSet, a string) bool {
	if len(a) < 2 || a[0] != '-' {
		return false
	}
	if _, err := strconv.ParseFloat(a, 64); err == nil {
		return fs.Lookup(strings.TrimLeft(a, "-")) != nil
	}
	return true
}

// takesValue reports whether the flag name of fs needs a value: a defined
// flag that is not a boolean. An undefined flag takes none, so that
// fs.Parse names it as undefined.
func takesValue(fs *flag.FlagSet, name string) bool {
	f := fs.Lookup(name)
	if f == nil {
		return false
	}
	if b, ok := f.Value.(interface{ IsBoolFlag() bool }); ok && b.IsBoolFlag() {
		return false
	}
	return true
}
