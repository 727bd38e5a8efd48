package node

import (
	"encoding/binary"
	"errors"

	"github.com/shardd/shardd/kvpb"
	pb "github.com/shardd/shardd/paxospb"
	"google.golang.org/protobuf/proto"
)

// groupMeta is what the node keeps in a group's engine meta record: the
// range it serves and the membership in force at the group's applied
// point. It is written atomically with the applied point whenever either
// changes, so a snapshot (which carries both from one consistent view)
// describes its data exactly.
type groupMeta struct {
	Desc   *kvpb.RangeDescriptor
	Config pb.Config
}

const metaVersion = 1

func (m *groupMeta) marshal() []byte {
	desc, err := proto.Marshal(m.Desc)
	if err != nil {
		panic(err) // a descriptor always marshals
	}
	b := []byte{metaVersion}
	b = binary.AppendUvarint(b, uint64(len(desc)))
	b = append(b, desc...)
	return m.Config.Append(b)
}

var errBadMeta = errors.New("node: corrupt group meta")

func unmarshalMeta(b []byte) (groupMeta, error) {
	if len(b) < 2 || b[0] != metaVersion {
		return groupMeta{}, errBadMeta
	}
	n, k := binary.Uvarint(b[1:])
	if k <= 0 || n > uint64(len(b)-1-k) {
		return groupMeta{}, errBadMeta
	}
	var m groupMeta
	m.Desc = new(kvpb.RangeDescriptor)
	if err := proto.Unmarshal(b[1+k:1+k+int(n)], m.Desc); err != nil {
		return groupMeta{}, errors.Join(errBadMeta, err)
	}
	if err := m.Config.Unmarshal(b[1+k+int(n):]); err != nil {
		return groupMeta{}, errors.Join(errBadMeta, err)
	}
	return m, nil
}

// votersOf returns the node ids of a descriptor's voters.
func votersOf(d *kvpb.RangeDescriptor) pb.Config {
	var c pb.Config
	for _, r := range d.GetReplicas() {
		if r.Role == kvpb.ReplicaRole_LEARNER {
			c.Learners = append(c.Learners, r.NodeId)
		} else {
			c.Voters = append(c.Voters, r.NodeId)
		}
	}
	return c
}
