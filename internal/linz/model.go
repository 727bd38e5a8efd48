package linz

import (
	"fmt"

	"github.com/anishathalye/porcupine"
)

// Model is porcupine's model of the store: one register per key,
// partitioned by key, whose state is the key's value ("" for absent).
var Model = porcupine.Model{
	Partition: partitionByKey,
	Init:      func() any { return "" },
	Step: func(state, input, output any) (bool, any) {
		return step(state.(string), input.(Input), output.(Output))
	},
	Equal: func(a, b any) bool { return a.(string) == b.(string) },
	DescribeOperation: func(input, output any) string {
		return describe(input.(Input), output.(Output))
	},
	DescribeState: func(state any) string { return quote(state.(string)) },
}

// step is the register's sequential specification.
func step(cur string, in Input, out Output) (bool, string) {
	switch in.Kind {
	case Get:
		// An unknown read constrains nothing (History.Operations leaves
		// it out).
		return out.Unknown || out.Value == cur, cur
	case Put:
		return true, in.Value
	case CAS:
		holds := cur == in.Expected
		switch {
		case out.Unknown:
			// Placed here, it happened: it swapped if the value held.
			// (Not having happened at all is placing it last.)
			if holds {
				return true, in.Value
			}
			return true, cur
		case out.Swapped:
			return holds, in.Value
		default:
			return !holds && out.Value == cur, cur
		}
	}
	return false, cur
}

func partitionByKey(ops []porcupine.Operation) [][]porcupine.Operation {
	byKey := map[string][]porcupine.Operation{}
	var keys []string
	for _, op := range ops {
		k := op.Input.(Input).Key
		if _, ok := byKey[k]; !ok {
			keys = append(keys, k)
		}
		byKey[k] = append(byKey[k], op)
	}
	parts := make([][]porcupine.Operation, 0, len(keys))
	for _, k := range keys {
		parts = append(parts, byKey[k])
	}
	return parts
}

func quote(v string) string {
	if v == "" {
		return "absent"
	}
	return fmt.Sprintf("%q", v)
}

func describe(in Input, out Output) string {
	var result string
	switch {
	case out.Unknown:
		result = "?"
	case in.Kind == Get:
		result = quote(out.Value)
	case in.Kind == CAS && out.Swapped:
		result = "swapped"
	case in.Kind == CAS:
		result = "failed, found " + quote(out.Value)
	}
	switch in.Kind {
	case Get:
		return fmt.Sprintf("get(%s) -> %s", in.Key, result)
	case Put:
		if out.Unknown {
			return fmt.Sprintf("put(%s, %q) -> ?", in.Key, in.Value)
		}
		return fmt.Sprintf("put(%s, %q)", in.Key, in.Value)
	default:
		return fmt.Sprintf("cas(%s, %s -> %q) -> %s", in.Key, quote(in.Expected), in.Value, result)
	}
}
