package main

import (
	"math"
	"math/rand/v2"
	"regexp"
	"strings"
	"testing"
)

// TestWorkloadMixes draws many operations from each workload and checks
// every kind's share against the mix, within 1 percentage point.
func TestWorkloadMixes(t *testing.T) {
	const draws = 200000
	r := rand.New(rand.NewPCG(1, 2))
	for _, w := range workloads {
		var sum float64
		for _, f := range w.mix {
			sum += f
		}
		if math.Abs(sum-1) > 1e-9 {
			t.Errorf("workload %s: fractions sum to %v", w.name, sum)
		}
		var got [numOps]int
		for range draws {
			got[w.pick(r.Float64())]++
		}
		for op := range numOps {
			share := float64(got[op]) / draws
			if math.Abs(share-w.mix[op]) > 0.01 {
				t.Errorf("workload %s: %v is %.3f of the operations, want %.3f", w.name, op, share, w.mix[op])
			}
			if w.mix[op] == 0 && got[op] > 0 {
				t.Errorf("workload %s: drew %d %v operations, which its mix has none of", w.name, got[op], op)
			}
		}
	}
	// The top of the range still picks an operation the mix has.
	if op := workloads[0].pick(0.9999999999999999); op != opUpdate {
		t.Errorf("A.pick(just below 1) = %v, want update", op)
	}
}

func TestParseWorkloads(t *testing.T) {
	ws, err := parseWorkloads("a, B,write")
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, w := range ws {
		names = append(names, w.name)
	}
	if got := strings.Join(names, ","); got != "A,B,write" {
		t.Errorf("parseWorkloads = %s, want A,B,write", got)
	}
	if _, err := parseWorkloads("A,D"); err == nil || !strings.Contains(err.Error(), `"D"`) {
		t.Errorf("parseWorkloads(A,D) error = %v, want one naming D", err)
	}
}

// TestZipfianKeys checks the generator against the Zipfian law it
// approximates (Gray et al.'s method is exact for the two hottest keys and
// close for the rest): the share of the hottest keys, and the share of
// each tenth of the key space, within a few percent of the exact
// 1/(i+1)^theta weights, summed naively.
func TestZipfianKeys(t *testing.T) {
	const n, draws = 1000, 400000
	z := newZipfianKeys(n, zipfianTheta)
	if want := zeta(n, zipfianTheta); math.Abs(z.zetan-want) > 1e-9 {
		t.Fatalf("zetan = %v, want %v", z.zetan, want)
	}
	var exact [n]float64
	var total float64
	for i := range exact {
		exact[i] = 1 / math.Pow(float64(i+1), zipfianTheta)
		total += exact[i]
	}
	for i := range exact {
		exact[i] /= total
	}
	r := rand.New(rand.NewPCG(3, 4))
	var got [n]int
	for range draws {
		k := z.next(r)
		if k >= n {
			t.Fatalf("drew key %d of %d", k, n)
		}
		got[k]++
	}
	for i := range 2 {
		share := float64(got[i]) / draws
		if math.Abs(share-exact[i]) > 0.05*exact[i] {
			t.Errorf("key %d drawn %.4f of the time, want %.4f", i, share, exact[i])
		}
	}
	// The tenths of the key space: the first holds most of the draws,
	// the rest a slowly falling share each.
	for d := range 10 {
		var share, want float64
		for i := d * n / 10; i < (d+1)*n/10; i++ {
			share += float64(got[i]) / draws
			want += exact[i]
		}
		if math.Abs(share-want) > 0.1*want {
			t.Errorf("keys %d..%d drawn %.4f of the time, want %.4f", d*n/10, (d+1)*n/10-1, share, want)
		}
	}
}

// TestUniformKeys checks that every tenth of the key space gets a tenth
// of the draws, within 5%.
func TestUniformKeys(t *testing.T) {
	const n, draws = 1000, 200000
	c, err := newKeyChooser("uniform", n)
	if err != nil {
		t.Fatal(err)
	}
	r := rand.New(rand.NewPCG(5, 6))
	var tenths [10]int
	for range draws {
		tenths[c.next(r)*10/n]++
	}
	for d, got := range tenths {
		if math.Abs(float64(got)-draws/10) > 0.05*draws/10 {
			t.Errorf("tenth %d drawn %d times, want about %d", d, got, draws/10)
		}
	}
	if _, err := newKeyChooser("latest", n); err == nil {
		t.Error("newKeyChooser(latest) succeeded, want an error")
	}
}

// TestKeyNamesSpreadOverRanges checks the key form that the bootstrap
// ranges split (k and four digits) and that the hottest records, the
// lowest numbers, land in many of 1,000 even ranges rather than a few.
func TestKeyNamesSpreadOverRanges(t *testing.T) {
	form := regexp.MustCompile(`^k[0-9]{4}-[0-9]{10}$`)
	seen := map[string]bool{}
	ranges := map[string]bool{}
	for i := range uint64(1000) {
		k := string(keyName(i))
		if !form.MatchString(k) {
			t.Fatalf("keyName(%d) = %q, want k, four digits, -, ten digits", i, k)
		}
		if seen[k] {
			t.Fatalf("keyName(%d) = %q twice", i, k)
		}
		seen[k] = true
		ranges[k[1:4]] = true // the range among 1,000 even ones
	}
	// 1,000 keys thrown into 1,000 ranges fill about 63% of them.
	if len(ranges) < 550 {
		t.Errorf("the first 1,000 records fall in %d of 1,000 ranges, want them spread", len(ranges))
	}
}
