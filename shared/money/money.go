// Package money is exact decimal money for JSON APIs: amounts are integer cents, parsed
// from the JSON number's text (never through float64, so 0.1 + 0.2 is 0.3) and rejected
// when they carry more than two decimals.
package money

import (
	"errors"
	"fmt"
	"regexp"
	"strconv"
	"strings"
)

// Amount is a sum of money in cents.
type Amount int64

// Max is the largest amount accepted (10^15 cents): far beyond any account, far below
// int64 overflow when amounts are added up.
const Max Amount = 1_000_000_000_000_000

var (
	// ErrFormat: not a decimal number.
	ErrFormat = errors.New("money: not a decimal number")
	// ErrPrecision: more than two decimals.
	ErrPrecision = errors.New("money: more than 2 decimals")
	// ErrRange: beyond ±Max.
	ErrRange = errors.New("money: amount out of range")
)

var decimal = regexp.MustCompile(`^(-)?(0|[1-9][0-9]*)(?:\.([0-9]+))?$`)

// Parse reads a decimal such as "1300", "0.3" or "-12.50".
func Parse(s string) (Amount, error) {
	m := decimal.FindStringSubmatch(s)
	if m == nil {
		return 0, fmt.Errorf("%w: %q", ErrFormat, s)
	}
	frac := strings.TrimRight(m[3], "0")
	if len(frac) > 2 {
		return 0, fmt.Errorf("%w: %s", ErrPrecision, s)
	}
	if len(m[2]) > 16 {
		return 0, fmt.Errorf("%w: %s", ErrRange, s)
	}
	whole, err := strconv.ParseInt(m[2], 10, 64)
	if err != nil {
		return 0, fmt.Errorf("%w: %s", ErrRange, s)
	}
	cents := whole * 100
	if frac != "" {
		f, _ := strconv.ParseInt((frac + "0")[:2], 10, 64)
		cents += f
	}
	if m[1] == "-" {
		cents = -cents
	}
	a := Amount(cents)
	if a > Max || a < -Max {
		return 0, fmt.Errorf("%w: %s", ErrRange, s)
	}
	return a, nil
}

// String formats with no trailing zeros: 1300, 1300.5, 0.3, -2.05.
func (a Amount) String() string {
	neg := a < 0
	if neg {
		a = -a
	}
	s := strconv.FormatInt(int64(a/100), 10)
	if c := int64(a % 100); c != 0 {
		s += strings.TrimRight(fmt.Sprintf(".%02d", c), "0")
	}
	if neg {
		s = "-" + s
	}
	return s
}

// MarshalJSON writes a JSON number.
func (a Amount) MarshalJSON() ([]byte, error) { return []byte(a.String()), nil }

// UnmarshalJSON accepts a JSON number only. A quoted amount is refused (ErrFormat): the
// contract says amounts are numbers, and accepting "5" would let a client that sends
// strings for everything believe its other string fields are checked the same lenient way.
func (a *Amount) UnmarshalJSON(b []byte) error {
	v, err := Parse(string(b))
	if err != nil {
		return err
	}
	*a = v
	return nil
}

// Add returns a+b, or ErrRange when the sum leaves ±Max.
func (a Amount) Add(b Amount) (Amount, error) {
	s := a + b
	if s > Max || s < -Max {
		return 0, ErrRange
	}
	return s, nil
}
