// Package cli holds what the shardd and placement commands share: the
// parsing of lists, node ids, peer maps, addresses and log levels, each
// failing with a message that says what is wrong with the value; flags
// parsed wherever they stand among the arguments (ParseInterspersed); the
// help's layout (Program); a quick probe of a server's address (Probe);
// the profiles server (ServePprof); and the "stopped cleanly" line with
// the time since the signal (StopClock, LogStopped).
package cli

import (
	"errors"
	"fmt"
	"log/slog"
	"net"
	"strconv"
	"strings"
)

// SplitList splits a comma-separated flag value, trimming spaces. An empty
// value is an empty list; an empty item ("a,,b", "a,") is an error.
func SplitList(s string) ([]string, error) {
	if strings.TrimSpace(s) == "" {
		return nil, nil
	}
	parts := strings.Split(s, ",")
	for i, p := range parts {
		parts[i] = strings.TrimSpace(p)
		if parts[i] == "" {
			return nil, fmt.Errorf("item %d of %q is empty", i+1, s)
		}
	}
	return parts, nil
}

// ParseNodeID parses a node id: a positive integer.
func ParseNodeID(s string) (uint64, error) {
	id, err := strconv.ParseUint(strings.TrimSpace(s), 10, 64)
	if err != nil || id == 0 {
		return 0, fmt.Errorf("%q is not a node id (a positive integer)", s)
	}
	return id, nil
}

// ParseIDList parses "1,2,3" into distinct node ids.
func ParseIDList(s string) ([]uint64, error) {
	parts, err := SplitList(s)
	if err != nil {
		return nil, err
	}
	ids := make([]uint64, 0, len(parts))
	for _, p := range parts {
		id, err := ParseNodeID(p)
		if err != nil {
			return nil, err
		}
		ids = append(ids, id)
	}
	if err := CheckIDs(ids); err != nil {
		return nil, err
	}
	return ids, nil
}

// CheckIDs rejects zero and repeated node ids.
func CheckIDs(ids []uint64) error {
	seen := make(map[uint64]bool, len(ids))
	for _, id := range ids {
		if id == 0 {
			return errors.New("node id 0 is not allowed: ids start at 1")
		}
		if seen[id] {
			return fmt.Errorf("node %d is listed twice", id)
		}
		seen[id] = true
	}
	return nil
}

// ParsePeers parses "1=127.0.0.1:7100,2=127.0.0.1:7101" into a map from
// node id to gRPC address.
func ParsePeers(s string) (map[uint64]string, error) {
	parts, err := SplitList(s)
	if err != nil {
		return nil, err
	}
	peers := make(map[uint64]string, len(parts))
	for _, p := range parts {
		idStr, addr, ok := strings.Cut(p, "=")
		if !ok {
			return nil, fmt.Errorf("%q is not id=host:port", p)
		}
		id, err := ParseNodeID(idStr)
		if err != nil {
			return nil, fmt.Errorf("%q: %w", p, err)
		}
		addr = strings.TrimSpace(addr)
		if err := CheckHostPort(addr); err != nil {
			return nil, fmt.Errorf("%q: %w", p, err)
		}
		if prev, dup := peers[id]; dup {
			return nil, fmt.Errorf("node %d is listed twice (%s and %s)", id, prev, addr)
		}
		peers[id] = addr
	}
	return peers, nil
}

// ParseAddrList parses comma-separated host:port addresses.
func ParseAddrList(s string) ([]string, error) {
	parts, err := SplitList(s)
	if err != nil {
		return nil, err
	}
	for _, p := range parts {
		if err := CheckHostPort(p); err != nil {
			return nil, err
		}
	}
	return parts, nil
}

// CheckHostPort requires an explicit host and a port in [1, 65535]: an
// address other processes can dial.
func CheckHostPort(addr string) error {
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return fmt.Errorf("%q is not host:port: %w", addr, err)
	}
	if host == "" {
		return fmt.Errorf("%q has no host", addr)
	}
	if p, err := strconv.Atoi(port); err != nil || p < 1 || p > 65535 {
		return fmt.Errorf("%q: port %q is not in [1, 65535]", addr, port)
	}
	return nil
}

// CheckListenAddr accepts host:port with port 0 (pick a free one) too.
func CheckListenAddr(addr string) error {
	// An empty host listens on every interface.
	_, port, err := net.SplitHostPort(addr)
	if err != nil {
		return fmt.Errorf("%q is not host:port: %w", addr, err)
	}
	if p, err := strconv.Atoi(port); err != nil || p < 0 || p > 65535 {
		return fmt.Errorf("%q: port %q is not in [0, 65535]", addr, port)
	}
	return nil
}

// CheckGossipAddr checks a memberlist bind address: memberlist binds the
// IP directly and advertises it to peers, so it must be a concrete IP.
func CheckGossipAddr(addr string) error {
	if err := CheckListenAddr(addr); err != nil {
		return err
	}
	host, _, _ := net.SplitHostPort(addr)
	ip := net.ParseIP(host)
	if ip == nil {
		return fmt.Errorf("%q: the gossip host must be an IP address, not %q", addr, host)
	}
	if ip.IsUnspecified() {
		return fmt.Errorf("%q: peers cannot dial %s; give this machine's IP address", addr, host)
	}
	return nil
}

// ParseLogLevel accepts debug, info, warn and error (any case).
func ParseLogLevel(s string) (slog.Level, error) {
	var l slog.Level
	if err := l.UnmarshalText([]byte(s)); err != nil {
		return 0, fmt.Errorf("%q is not a log level (debug, info, warn or error)", s)
	}
	return l, nil
}
