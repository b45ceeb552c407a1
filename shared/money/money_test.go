package money

import (
	"encoding/json"
	"errors"
	"testing"
)

func TestParse(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want Amount
		err  error
	}{
		{"1300", 130000, nil},
		{"0.3", 30, nil},
		{"0.30", 30, nil},
		{"0.300", 30, nil}, // trailing zeros are not precision
		{"12.05", 1205, nil},
		{"-2.5", -250, nil},
		{"0", 0, nil},
		{"0.001", 0, ErrPrecision},
		{"1.234", 0, ErrPrecision},
		{"1e3", 0, ErrFormat},
		{"01", 0, ErrFormat},
		{".5", 0, ErrFormat},
		{"abc", 0, ErrFormat},
		{"", 0, ErrFormat},
		{"10000000000000.01", 0, ErrRange},
		{"99999999999999999999999", 0, ErrRange},
	} {
		got, err := Parse(tc.in)
		if !errors.Is(err, tc.err) || got != tc.want {
			t.Errorf("Parse(%q) = %d, %v; want %d, %v", tc.in, got, err, tc.want, tc.err)
		}
	}
}

func TestExactArithmetic(t *testing.T) {
	var a, b Amount
	if err := json.Unmarshal([]byte("0.1"), &a); err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal([]byte("0.2"), &b); err != nil {
		t.Fatal(err)
	}
	sum, _ := a.Add(b)
	out, _ := json.Marshal(sum)
	if string(out) != "0.3" {
		t.Fatalf("0.1 + 0.2 = %s, want 0.3", out)
	}
}

func TestJSON(t *testing.T) {
	for _, tc := range []struct {
		in, out string
	}{{"1300", "1300"}, {"1300.50", "1300.5"}, {"-0.05", "-0.05"}} {
		var a Amount
		if err := json.Unmarshal([]byte(tc.in), &a); err != nil {
			t.Fatalf("%s: %v", tc.in, err)
		}
		got, _ := json.Marshal(a)
		if string(got) != tc.out {
			t.Errorf("%s → %s, want %s", tc.in, got, tc.out)
		}
	}
}

// Amounts are JSON numbers: every other JSON kind, quoted numbers included, is ErrFormat.
func TestJSONRejectsNonNumbers(t *testing.T) {
	for _, in := range []string{`"5"`, `"7.25"`, `""`, `"-1"`, "true", "null", "[5]", `{"v":5}`, "1e2"} {
		var a Amount
		if err := json.Unmarshal([]byte(in), &a); !errors.Is(err, ErrFormat) {
			t.Errorf("%s: err = %v, want ErrFormat", in, err)
		}
		if a != 0 {
			t.Errorf("%s: amount set to %d", in, a)
		}
	}
}

func FuzzParse(f *testing.F) {
	for _, s := range []string{"0", "1.5", "-3.25", "1e5", "00.1"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		a, err := Parse(s)
		if err != nil {
			return
		}
		back, err := Parse(a.String())
		if err != nil || back != a {
			t.Fatalf("%q → %d → %q → %d, %v", s, a, a.String(), back, err)
		}
	})
}
