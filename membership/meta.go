package membership

import (
	"encoding/json"
	"errors"
	"fmt"
	"math"

	"github.com/hashicorp/memberlist"
)

// MaxMetaSize is memberlist's limit on a node's gossiped metadata, in bytes.
// Memberlist panics on larger metadata, so this package checks the encoded
// size itself and returns ErrMetaTooLarge instead.
const MaxMetaSize = memberlist.MetaMaxSize

// ErrMetaTooLarge is returned when a NodeMeta encodes to more than
// MaxMetaSize bytes. The metadata is rejected whole rather than truncated,
// since a truncated address would be worse than a stale one.
var ErrMetaTooLarge = errors.New("membership: node meta too large")

// NodeMeta is what each node gossips about itself. It rides on every alive
// message, so it is kept small: see MaxMetaSize.
type NodeMeta struct {
	// NodeID is the node's id; it cannot change while the node runs.
	NodeID uint64
	// GRPCAddr is the host:port of the node's gRPC server.
	GRPCAddr string
	// Ranges is how many range replicas the node hosts.
	Ranges int
	// Leaders is how many of those replicas it currently leads.
	Leaders int
	// QPS is the node's recent request rate, for load-aware placement.
	QPS float64
}

// wireMeta is the encoded form of NodeMeta. JSON with short keys keeps it
// well under the limit (about 60 bytes for a typical node), stays readable
// in memberlist's debug logs, and lets fields be added later without
// breaking older nodes, which ignore unknown keys.
type wireMeta struct {
	ID      uint64  `json:"id"`
	GRPC    string  `json:"g"`
	Ranges  int     `json:"r,omitempty"`
	Leaders int     `json:"l,omitempty"`
	QPS     float64 `json:"q,omitempty"`
	// Leaving is set by Leave just before memberlist's leave message, so
	// that peers can tell a graceful departure from a failure: memberlist's
	// leave notification does not say which (its Node.State is always
	// StateAlive there).
	Leaving bool `json:"lv,omitempty"`
}

func (w wireMeta) public() NodeMeta {
	return NodeMeta{NodeID: w.ID, GRPCAddr: w.GRPC, Ranges: w.Ranges, Leaders: w.Leaders, QPS: w.QPS}
}

func wireFromPublic(m NodeMeta, leaving bool) wireMeta {
	return wireMeta{ID: m.NodeID, GRPC: m.GRPCAddr, Ranges: m.Ranges, Leaders: m.Leaders, QPS: m.QPS, Leaving: leaving}
}

// leavingFlagSize is what the Leaving flag adds to an encoding. encodeMeta
// counts it even when the flag is clear, so that any metadata accepted
// while running still fits when Leave sets the flag.
const leavingFlagSize = len(`,"lv":true`)

// encodeMeta validates and encodes w, enforcing MaxMetaSize.
func encodeMeta(w wireMeta) ([]byte, error) {
	if w.Ranges < 0 || w.Leaders < 0 {
		return nil, fmt.Errorf("membership: negative count in node meta (ranges %d, leaders %d)", w.Ranges, w.Leaders)
	}
	if math.IsNaN(w.QPS) || math.IsInf(w.QPS, 0) || w.QPS < 0 {
		return nil, fmt.Errorf("membership: node meta QPS %v is not a finite, non-negative number", w.QPS)
	}
	b, err := json.Marshal(w)
	if err != nil {
		return nil, fmt.Errorf("membership: encode node meta: %w", err)
	}
	size := len(b)
	if !w.Leaving {
		size += leavingFlagSize
	}
	if size > MaxMetaSize {
		return nil, fmt.Errorf("%w: %d bytes encoded (with room for the leave flag), limit %d", ErrMetaTooLarge, size, MaxMetaSize)
	}
	return b, nil
}

// decodeMeta decodes metadata gossiped by another node.
func decodeMeta(b []byte) (wireMeta, error) {
	var w wireMeta
	if err := json.Unmarshal(b, &w); err != nil {
		return wireMeta{}, fmt.Errorf("membership: decode node meta: %w", err)
	}
	return w, nil
}
