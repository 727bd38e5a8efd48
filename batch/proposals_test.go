package batch

import (
	"testing"

	"github.com/shardd/shardd/kvsm"
)

func TestProposalsTakeBoundsBytes(t *testing.T) {
	var p Proposals
	for i := range 100 {
		p.Add(kvsm.Command{Proposer: kvsm.Proposer{Seq: uint64(i)}, Op: kvsm.OpPut, Key: []byte("k"), Value: make([]byte, 100)})
	}
	cmds, val := p.Take(1000, 42)
	if len(cmds) == 0 || len(cmds) >= 100 || p.Len() != 100-len(cmds) {
		t.Fatalf("took %d commands, %d left", len(cmds), p.Len())
	}
	dec, err := kvsm.Decode(val)
	if err != nil || len(dec.Commands) != len(cmds) || dec.Commands[0].Proposer.Seq != 0 || dec.ProposedAt != 42 {
		t.Fatalf("value decodes to %+v: %v", dec, err)
	}
	// A single command larger than the bound still goes, alone.
	var q Proposals
	q.Add(kvsm.Command{Op: kvsm.OpPut, Key: []byte("k"), Value: make([]byte, 5000)})
	if cmds, _ := q.Take(1000, 0); len(cmds) != 1 {
		t.Fatalf("an oversized command was not taken: %d", len(cmds))
	}
}
