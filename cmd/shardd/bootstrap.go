package main

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"slices"
	"strconv"

	"github.com/shardd/shardd/internal/cli"
	"github.com/shardd/shardd/kvpb"
	"github.com/shardd/shardd/placement"
)

// The even split of the key space used by --bootstrap-ranges: split points
// "k%04d" spread evenly over "k0000".."k9999", the keys the demo and the
// tests write.
const evenSplitBuckets = 10000

// evenSplitKeys returns the n-1 split points that cut the key space into n
// ranges: "k%04d" at i*10000/n for i in 1..n-1.
func evenSplitKeys(n int) ([]string, error) {
	if n < 1 || n > evenSplitBuckets {
		return nil, fmt.Errorf("the number of ranges must be between 1 and %d, not %d", evenSplitBuckets, n)
	}
	keys := make([]string, 0, n-1)
	for _, k := range placement.EvenSplitKeys(n, "k", 4) {
		keys = append(keys, string(k))
	}
	return keys, nil
}

// splitDescriptors returns the len(splits)+1 ranges the split keys cut the
// key space into, with range ids 1, 2, ..., each replicated on every node
// of replicas, leaders spread evenly over them (placement.InitialRanges).
func splitDescriptors(splits []string, replicas []uint64) ([]*kvpb.RangeDescriptor, error) {
	keys := make([][]byte, len(splits))
	for i, k := range splits {
		keys[i] = []byte(k)
	}
	return placement.InitialRanges(keys, replicas, len(replicas))
}

// bootstrapRange is one range of a bootstrap file.
type bootstrapRange struct {
	RangeID  uint64   `json:"range_id"`
	StartKey string   `json:"start_key"`
	EndKey   string   `json:"end_key"`
	Replicas []uint64 `json:"replicas"`
	// Leader is the node that campaigns first; 0 leaves it to an election.
	Leader uint64 `json:"leader"`
}

// bootstrapFile is the format of --bootstrap-file: either this object or
// just the array of ranges.
type bootstrapFile struct {
	Ranges []bootstrapRange `json:"ranges"`
	// Peers maps node ids (as strings, JSON object keys) to gRPC
	// addresses, like --peers.
	Peers map[string]string `json:"peers"`
}

// readBootstrapFile reads and checks a bootstrap file.
func readBootstrapFile(path string) ([]*kvpb.RangeDescriptor, map[uint64]string, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, nil, err
	}
	defer f.Close()
	descs, peers, err := parseBootstrap(f)
	if err != nil {
		return nil, nil, fmt.Errorf("%s: %w", path, err)
	}
	return descs, peers, nil
}

// parseBootstrap decodes a bootstrap file (see bootstrapFile) and checks
// that its ranges tile the key space.
func parseBootstrap(r io.Reader) ([]*kvpb.RangeDescriptor, map[uint64]string, error) {
	data, err := io.ReadAll(r)
	if err != nil {
		return nil, nil, err
	}
	var file bootstrapFile
	trimmed := bytes.TrimSpace(data)
	if len(trimmed) > 0 && trimmed[0] == '[' {
		err = decodeStrict(trimmed, &file.Ranges)
	} else {
		err = decodeStrict(trimmed, &file)
	}
	if err != nil {
		return nil, nil, fmt.Errorf("not a bootstrap file (a JSON array of ranges, or an object with \"ranges\" and \"peers\"): %w", err)
	}
	peers := make(map[uint64]string, len(file.Peers))
	for k, addr := range file.Peers {
		id, err := strconv.ParseUint(k, 10, 64)
		if err != nil || id == 0 {
			return nil, nil, fmt.Errorf("peers: %q is not a node id (a positive integer)", k)
		}
		if err := cli.CheckHostPort(addr); err != nil {
			return nil, nil, fmt.Errorf("peers: node %d: %w", id, err)
		}
		peers[id] = addr
	}
	descs := make([]*kvpb.RangeDescriptor, 0, len(file.Ranges))
	for _, br := range file.Ranges {
		d := &kvpb.RangeDescriptor{RangeId: br.RangeID, Generation: 1, LeaderNodeId: br.Leader}
		if br.StartKey != "" {
			d.StartKey = []byte(br.StartKey)
		}
		if br.EndKey != "" {
			d.EndKey = []byte(br.EndKey)
		}
		for _, id := range br.Replicas {
			d.Replicas = append(d.Replicas, &kvpb.ReplicaDescriptor{NodeId: id})
		}
		descs = append(descs, d)
	}
	if err := checkDescriptors(descs); err != nil {
		return nil, nil, err
	}
	return descs, peers, nil
}

func decodeStrict(data []byte, v any) error {
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return err
	}
	if dec.More() {
		return errors.New("trailing data after the JSON value")
	}
	return nil
}

// checkDescriptors checks bootstrap ranges: unique non-zero ids, valid
// replica lists, a leader among the replicas, and, taken in key order,
// ranges that tile the whole key space without gaps or overlaps (a key no
// range holds could never be written).
func checkDescriptors(descs []*kvpb.RangeDescriptor) error {
	if len(descs) == 0 {
		return errors.New("no ranges")
	}
	ids := make(map[uint64]bool, len(descs))
	for _, d := range descs {
		if d.RangeId == 0 {
			return errors.New("range_id 0 is not allowed: range ids start at 1")
		}
		if ids[d.RangeId] {
			return fmt.Errorf("range %d is listed twice", d.RangeId)
		}
		ids[d.RangeId] = true
		if len(d.Replicas) == 0 {
			return fmt.Errorf("range %d has no replicas", d.RangeId)
		}
		nodes := make([]uint64, 0, len(d.Replicas))
		for _, rd := range d.Replicas {
			nodes = append(nodes, rd.NodeId)
		}
		if err := cli.CheckIDs(nodes); err != nil {
			return fmt.Errorf("range %d replicas: %w", d.RangeId, err)
		}
		if d.LeaderNodeId != 0 && !slices.Contains(nodes, d.LeaderNodeId) {
			return fmt.Errorf("range %d: leader %d is not one of its replicas %v", d.RangeId, d.LeaderNodeId, nodes)
		}
		if len(d.EndKey) > 0 && bytes.Compare(d.StartKey, d.EndKey) >= 0 {
			return fmt.Errorf("range %d: start_key %q is not below end_key %q", d.RangeId, d.StartKey, d.EndKey)
		}
	}
	sorted := slices.Clone(descs)
	slices.SortFunc(sorted, func(a, b *kvpb.RangeDescriptor) int { return bytes.Compare(a.StartKey, b.StartKey) })
	if len(sorted[0].StartKey) != 0 {
		return fmt.Errorf("no range starts at the beginning of the key space (the first, range %d, starts at %q; use \"\")", sorted[0].RangeId, sorted[0].StartKey)
	}
	for i := 1; i < len(sorted); i++ {
		prev, d := sorted[i-1], sorted[i]
		switch {
		case len(prev.EndKey) == 0:
			return fmt.Errorf("range %d runs to the end of the key space but range %d starts at %q", prev.RangeId, d.RangeId, d.StartKey)
		case !bytes.Equal(prev.EndKey, d.StartKey):
			return fmt.Errorf("range %d ends at %q but the next range, %d, starts at %q: ranges must not leave gaps or overlap", prev.RangeId, prev.EndKey, d.RangeId, d.StartKey)
		}
	}
	if last := sorted[len(sorted)-1]; len(last.EndKey) != 0 {
		return fmt.Errorf("no range runs to the end of the key space (the last, range %d, ends at %q; use \"\")", last.RangeId, last.EndKey)
	}
	return nil
}

// hostedBy returns the descriptors that list node id as a replica.
func hostedBy(descs []*kvpb.RangeDescriptor, id uint64) []*kvpb.RangeDescriptor {
	var out []*kvpb.RangeDescriptor
	for _, d := range descs {
		for _, rd := range d.Replicas {
			if rd.NodeId == id {
				out = append(out, d)
				break
			}
		}
	}
	return out
}

// replicaNodes returns every node id the descriptors name, sorted.
func replicaNodes(descs []*kvpb.RangeDescriptor) []uint64 {
	var ids []uint64
	for _, d := range descs {
		for _, rd := range d.Replicas {
			if !slices.Contains(ids, rd.NodeId) {
				ids = append(ids, rd.NodeId)
			}
		}
	}
	slices.Sort(ids)
	return ids
}
