package main

import (
	"fmt"
	"hash/fnv"
	"math"
	"math/rand/v2"
	"strings"
)

// opKind is one kind of operation a workload issues.
type opKind int

const (
	opRead   opKind = iota // a linearizable read of one key
	opUpdate               // a write of an existing key
	opInsert               // a write of a key not loaded before
	opScan                 // a read of the next few keys in key order
	opRMW                  // read a key, then compare-and-swap a new value in
	numOps
)

var opNames = [numOps]string{"read", "update", "insert", "scan", "rmw"}

func (o opKind) String() string { return opNames[o] }

// workload is a YCSB-style mix of operations: the fraction of each kind
// (they sum to 1). The letters are YCSB's core workloads (Cooper et al.,
// "Benchmarking Cloud Serving Systems with YCSB", SoCC 2010, table 2); D
// (read latest) is left out, write is every operation an update.
type workload struct {
	name string
	// what says what the workload models, for the report.
	what string
	mix  [numOps]float64
}

var workloads = []workload{
	{name: "A", what: "50% read, 50% update", mix: [numOps]float64{opRead: 0.5, opUpdate: 0.5}},
	{name: "B", what: "95% read, 5% update", mix: [numOps]float64{opRead: 0.95, opUpdate: 0.05}},
	{name: "C", what: "100% read", mix: [numOps]float64{opRead: 1}},
	{name: "E", what: "95% short scan, 5% insert", mix: [numOps]float64{opScan: 0.95, opInsert: 0.05}},
	{name: "F", what: "50% read, 50% read-modify-write (compare-and-swap)", mix: [numOps]float64{opRead: 0.5, opRMW: 0.5}},
	{name: "write", what: "100% update", mix: [numOps]float64{opUpdate: 1}},
}

// parseWorkloads reads a comma-separated list of workload names (any
// case).
func parseWorkloads(s string) ([]workload, error) {
	var out []workload
	for _, name := range strings.Split(s, ",") {
		name = strings.TrimSpace(name)
		found := false
		for _, w := range workloads {
			if strings.EqualFold(w.name, name) {
				out = append(out, w)
				found = true
			}
		}
		if !found {
			var names []string
			for _, w := range workloads {
				names = append(names, w.name)
			}
			return nil, fmt.Errorf("unknown workload %q: want one or more of %s, comma-separated", name, strings.Join(names, ", "))
		}
	}
	return out, nil
}

// pick draws the next operation's kind: u is uniform in [0, 1).
func (w workload) pick(u float64) opKind {
	var sum float64
	last := opRead
	for op, f := range w.mix {
		if f == 0 {
			continue
		}
		sum += f
		last = opKind(op)
		if u < sum {
			return last
		}
	}
	// Rounding can leave u just above the sum of the fractions.
	return last
}

// keyName is the key of record i. Its first characters are k and four
// decimal digits taken from a hash of i, the form of the key space that
// `shardd start --bootstrap-ranges` splits evenly, so the records (and the
// hottest ones of a Zipfian draw, which are the lowest numbers) spread
// over all the ranges instead of piling into the first. The record number
// follows, so every record has its own key; all keys have the same length.
func keyName(i uint64) []byte {
	return fmt.Appendf(nil, "k%04d-%010d", hash64(i)%10000, i)
}

func hash64(i uint64) uint64 {
	h := fnv.New64a()
	var b [8]byte
	for j := range b {
		b[j] = byte(i >> (8 * j))
	}
	h.Write(b[:])
	return h.Sum64()
}

// keyChooser draws record numbers in [0, n).
type keyChooser interface {
	next(r *rand.Rand) uint64
}

// uniformKeys draws every record with the same probability.
type uniformKeys struct{ n uint64 }

func (u uniformKeys) next(r *rand.Rand) uint64 { return r.Uint64N(u.n) }

// zipfianKeys draws record i with probability proportional to
// 1/(i+1)^theta: record 0 is the hottest. It is Gray et al.'s generator
// ("Quickly Generating Billion-Record Synthetic Databases", SIGMOD 1994,
// section 4), the one YCSB uses, which allows theta below 1 (YCSB's 0.99);
// math/rand's Zipf needs an exponent above 1. A zipfianKeys is read-only
// once made, so goroutines share one, each with its own rand.Rand.
type zipfianKeys struct {
	n                        uint64
	theta, alpha, zetan, eta float64
	half                     float64 // 1 + 0.5^theta
}

// zipfianTheta is YCSB's default Zipfian constant.
const zipfianTheta = 0.99

func newZipfianKeys(n uint64, theta float64) *zipfianKeys {
	z := &zipfianKeys{n: n, theta: theta, alpha: 1 / (1 - theta), zetan: zeta(n, theta)}
	z.eta = (1 - math.Pow(2/float64(n), 1-theta)) / (1 - zeta(2, theta)/z.zetan)
	z.half = 1 + math.Pow(0.5, theta)
	return z
}

// zeta is the generalized harmonic number: the sum of 1/i^theta for i in
// 1..n.
func zeta(n uint64, theta float64) float64 {
	var s float64
	for i := uint64(1); i <= n; i++ {
		s += 1 / math.Pow(float64(i), theta)
	}
	return s
}

func (z *zipfianKeys) next(r *rand.Rand) uint64 {
	uz := r.Float64() * z.zetan
	switch {
	case uz < 1:
		return 0
	case uz < z.half:
		return 1
	}
	i := uint64(float64(z.n) * math.Pow(z.eta*(uz/z.zetan)-z.eta+1, z.alpha))
	return min(i, z.n-1)
}

// newKeyChooser returns the chooser a --distribution flag names.
func newKeyChooser(dist string, n uint64) (keyChooser, error) {
	if n == 0 {
		return nil, fmt.Errorf("no keys to choose from")
	}
	switch dist {
	case "uniform":
		return uniformKeys{n}, nil
	case "zipfian":
		return newZipfianKeys(n, zipfianTheta), nil
	}
	return nil, fmt.Errorf("--distribution %q: want uniform or zipfian", dist)
}
