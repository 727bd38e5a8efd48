package group

import (
	"slices"

	pb "github.com/shardd/shardd/paxospb"
)

// cloneConfig returns a deep copy so that a Config handed out can't alias
// the replica's own.
func cloneConfig(c pb.Config) pb.Config {
	return pb.Config{Voters: slices.Clone(c.Voters), Learners: slices.Clone(c.Learners)}
}

func isVoter(c pb.Config, id uint64) bool   { return slices.Contains(c.Voters, id) }
func isLearner(c pb.Config, id uint64) bool { return slices.Contains(c.Learners, id) }
func isMember(c pb.Config, id uint64) bool  { return isVoter(c, id) || isLearner(c, id) }

// members returns voters then learners.
func members(c pb.Config) []uint64 {
	return append(slices.Clone(c.Voters), c.Learners...)
}

// checkConfChange reports whether cc applies to c.
func checkConfChange(c pb.Config, cc pb.ConfChange) error {
	switch cc.Type {
	case pb.ConfAddLearner:
		if cc.Replica == 0 || isMember(c, cc.Replica) {
			return ErrInvalidConfChange
		}
	case pb.ConfPromote:
		if !isLearner(c, cc.Replica) {
			return ErrInvalidConfChange
		}
	case pb.ConfRemove:
		if !isMember(c, cc.Replica) || (isVoter(c, cc.Replica) && len(c.Voters) == 1) {
			return ErrInvalidConfChange
		}
	default:
		return ErrInvalidConfChange
	}
	return nil
}

// applyConfChange returns c with cc applied. A change that does not apply
// leaves c as it is: it may have been chosen at a slot where an earlier
// chosen change already made it moot, and every replica must agree on that.
func applyConfChange(c pb.Config, cc pb.ConfChange) pb.Config {
	if checkConfChange(c, cc) != nil {
		return c
	}
	n := cloneConfig(c)
	switch cc.Type {
	case pb.ConfAddLearner:
		n.Learners = append(n.Learners, cc.Replica)
	case pb.ConfPromote:
		n.Learners = slices.DeleteFunc(n.Learners, func(id uint64) bool { return id == cc.Replica })
		n.Voters = append(n.Voters, cc.Replica)
		slices.Sort(n.Voters)
	case pb.ConfRemove:
		n.Learners = slices.DeleteFunc(n.Learners, func(id uint64) bool { return id == cc.Replica })
		n.Voters = slices.DeleteFunc(n.Voters, func(id uint64) bool { return id == cc.Replica })
	}
	return n
}

// ApplyConfChange returns c with cc applied, by the rule every replica
// uses: a change that does not apply to c leaves it as it is. The node
// runtime uses it to track the configuration at its applied point.
func ApplyConfChange(c pb.Config, cc pb.ConfChange) pb.Config { return applyConfChange(c, cc) }

// applyEntry returns c after e if e is a configuration change.
func applyEntry(c pb.Config, e *pb.Entry) pb.Config {
	if e.Type != pb.EntryConfChange {
		return c
	}
	var cc pb.ConfChange
	if err := cc.Unmarshal(e.Data); err != nil {
		return c
	}
	return applyConfChange(c, cc)
}

// hasMajority reports whether the replicas for which ok is true form a
// majority of voters. An empty voter set has no majority.
func hasMajority(voters []uint64, ok func(id uint64) bool) bool {
	n := 0
	for _, id := range voters {
		if ok(id) {
			n++
		}
	}
	return len(voters) > 0 && 2*n > len(voters)
}
