package cli

import (
	"errors"
	"flag"
	"io"
	"slices"
	"strings"
	"testing"
)

func TestParseInterspersed(t *testing.T) {
	type parsed struct {
		json  bool
		limit int
		addr  string
		pos   []string
	}
	parse := func(args ...string) (parsed, error) {
		fs := flag.NewFlagSet("test", flag.ContinueOnError)
		fs.SetOutput(io.Discard)
		var p parsed
		fs.BoolVar(&p.json, "json", false, "")
		fs.IntVar(&p.limit, "limit", 0, "")
		fs.StringVar(&p.addr, "addr", "", "")
		var err error
		p.pos, err = ParseInterspersed(fs, args)
		return p, err
	}
	for _, tc := range []struct {
		args []string
		want parsed
	}{
		{nil, parsed{}},
		{[]string{"a", "b"}, parsed{pos: []string{"a", "b"}}},
		{[]string{"--json", "a"}, parsed{json: true, pos: []string{"a"}}},
		{[]string{"a", "--json"}, parsed{json: true, pos: []string{"a"}}},
		{[]string{"a", "--limit", "5", "b", "-addr=x:1"}, parsed{limit: 5, addr: "x:1", pos: []string{"a", "b"}}},
		{[]string{"a", "--json=false", "b"}, parsed{pos: []string{"a", "b"}}},
		// A bool flag takes no separate value: "true" is an argument.
		{[]string{"--json", "true"}, parsed{json: true, pos: []string{"true"}}},
		// A value that starts with "-" is still the flag's value.
		{[]string{"--addr", "-x", "k"}, parsed{addr: "-x", pos: []string{"k"}}},
		{[]string{"--addr", "--", "k"}, parsed{addr: "--", pos: []string{"k"}}},
		// "-", negative numbers and everything after "--" are arguments.
		{[]string{"k", "-"}, parsed{pos: []string{"k", "-"}}},
		{[]string{"neg", "-1", "-2.5"}, parsed{pos: []string{"neg", "-1", "-2.5"}}},
		{[]string{"--limit", "-1", "k"}, parsed{limit: -1, pos: []string{"k"}}},
		{[]string{"--json", "--", "-k", "--json"}, parsed{json: true, pos: []string{"-k", "--json"}}},
		{[]string{"--", "a", "--", "b"}, parsed{pos: []string{"a", "--", "b"}}},
	} {
		got, err := parse(tc.args...)
		if err != nil || got.json != tc.want.json || got.limit != tc.want.limit || got.addr != tc.want.addr || !slices.Equal(got.pos, tc.want.pos) {
			t.Errorf("%q: %+v, %v; want %+v", tc.args, got, err, tc.want)
		}
	}
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"a", "--nope"}, "flag provided but not defined: -nope"},
		{[]string{"a", "--limit"}, "flag needs an argument: -limit"},
		{[]string{"a", "--limit", "x"}, `invalid value "x" for flag -limit`},
		{[]string{"a", "---json"}, "bad flag syntax"},
	} {
		if _, err := parse(tc.args...); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%q: error %v, want %q", tc.args, err, tc.want)
		}
	}
	if _, err := parse("a", "-h"); !errors.Is(err, flag.ErrHelp) {
		t.Errorf("-h after an argument: %v, want flag.ErrHelp", err)
	}
}
