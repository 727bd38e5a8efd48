package cli

import (
	"log/slog"
	"maps"
	"slices"
	"strings"
	"testing"
)

func TestParsePeers(t *testing.T) {
	got, err := ParsePeers(" 1=127.0.0.1:7100, 2=localhost:7101,3=[::1]:7102")
	want := map[uint64]string{1: "127.0.0.1:7100", 2: "localhost:7101", 3: "[::1]:7102"}
	if err != nil || !maps.Equal(got, want) {
		t.Fatalf("ParsePeers = %v, %v", got, err)
	}
	if got, err := ParsePeers(""); err != nil || len(got) != 0 {
		t.Errorf("empty: %v %v", got, err)
	}
	for in, wantErr := range map[string]string{
		"1":                               "not id=host:port",
		"127.0.0.1:7100":                  "not id=host:port",
		"x=127.0.0.1:7100":                "not a node id",
		"0=127.0.0.1:7100":                "not a node id",
		"-1=127.0.0.1:7100":               "not a node id",
		"1=127.0.0.1":                     "not host:port",
		"1=:7100":                         "no host",
		"1=127.0.0.1:0":                   "not in [1, 65535]",
		"1=127.0.0.1:65536":               "not in [1, 65535]",
		"1=127.0.0.1:http":                "not in [1, 65535]",
		"1=a:1,1=b:2":                     "listed twice",
		"1=a:1,,2=b:2":                    "is empty",
		"1=a:1,":                          "is empty",
		"1=127.0.0.1:7100;2=127.0.0.1:71": "not host:port",
	} {
		_, err := ParsePeers(in)
		if err == nil || !strings.Contains(err.Error(), wantErr) {
			t.Errorf("ParsePeers(%q) error %v, want one containing %q", in, err, wantErr)
		}
	}
}

func TestParseIDList(t *testing.T) {
	if got, err := ParseIDList("3, 1,2"); err != nil || !slices.Equal(got, []uint64{3, 1, 2}) {
		t.Errorf("ParseIDList = %v, %v", got, err)
	}
	for _, in := range []string{"1,1", "0", "1,x", "1,,2", "-2"} {
		if _, err := ParseIDList(in); err == nil {
			t.Errorf("ParseIDList(%q) accepted", in)
		}
	}
}

func TestAddressChecks(t *testing.T) {
	if _, err := ParseAddrList("127.0.0.1:7946,10.0.0.2:7946"); err != nil {
		t.Error(err)
	}
	if _, err := ParseAddrList("127.0.0.1"); err == nil {
		t.Error("a join address without a port was accepted")
	}
	for _, ok := range []string{"127.0.0.1:0", ":7100", "0.0.0.0:7100", "localhost:7100"} {
		if err := CheckListenAddr(ok); err != nil {
			t.Errorf("listen %q: %v", ok, err)
		}
	}
	for _, bad := range []string{"127.0.0.1", "127.0.0.1:-1", "127.0.0.1:99999"} {
		if err := CheckListenAddr(bad); err == nil {
			t.Errorf("listen %q accepted", bad)
		}
	}
	for _, ok := range []string{"127.0.0.1:7946", "127.0.0.1:0", "[::1]:7946"} {
		if err := CheckGossipAddr(ok); err != nil {
			t.Errorf("gossip %q: %v", ok, err)
		}
	}
	for bad, why := range map[string]string{
		"localhost:7946": "must be an IP address",
		"0.0.0.0:7946":   "cannot dial",
		":7946":          "must be an IP address",
		"127.0.0.1":      "not host:port",
	} {
		if err := CheckGossipAddr(bad); err == nil || !strings.Contains(err.Error(), why) {
			t.Errorf("gossip %q: %v, want %q", bad, err, why)
		}
	}
}

func TestParseLogLevel(t *testing.T) {
	for in, want := range map[string]slog.Level{"debug": slog.LevelDebug, "INFO": slog.LevelInfo, "warn": slog.LevelWarn, "error": slog.LevelError} {
		if got, err := ParseLogLevel(in); err != nil || got != want {
			t.Errorf("ParseLogLevel(%q) = %v, %v", in, got, err)
		}
	}
	if _, err := ParseLogLevel("loud"); err == nil {
		t.Error("accepted a bad level")
	}
}
