package eventstore_test

import (
	"encoding/base64"
	"errors"
	"math"
	"strings"
	"testing"

	"github.com/ecmstore/ecmstore/shared/eventstore"
)

type posCursor struct {
	After uint64 `json:"after"`
}

type keyCursor struct {
	Index string `json:"i"`
	PK    string `json:"pk"`
	SK    int64  `json:"sk"`
}

func enc(raw string) string { return base64.RawURLEncoding.EncodeToString([]byte(raw)) }

func TestDecodeCursor(t *testing.T) {
	for _, tc := range []struct {
		name   string
		cursor string
		want   uint64
		ok     bool
	}{
		{"what EncodeCursor gives", eventstore.EncodeCursor(posCursor{After: 42}), 42, true},
		{"zero", eventstore.EncodeCursor(posCursor{}), 0, true},
		{"largest position", eventstore.EncodeCursor(posCursor{After: math.MaxInt64}), math.MaxInt64, true},
		{"max uint64 wraps in a signed column", enc(`{"after":18446744073709551615}`), 0, false},
		{"just past max int64", enc(`{"after":9223372036854775808}`), 0, false},
		{"past uint64", enc(`{"after":18446744073709551616}`), 0, false},
		{"negative", enc(`{"after":-1}`), 0, false},
		{"fraction", enc(`{"after":0.5}`), 0, false},
		{"exponent", enc(`{"after":1e2}`), 0, false},
		{"string", enc(`{"after":"5"}`), 0, false},
		{"unknown field", enc(`{"after":1,"y":1}`), 0, false},
		{"trailing data", enc(`{"after":1}{}`), 0, false},
		{"not canonical: spaces", enc(`{ "after": 1 }`), 0, false},
		{"not canonical: padded base64", base64.URLEncoding.EncodeToString([]byte(`{"a":1}`)), 0, false},
		{"not canonical: std alphabet", enc(`{"after":1}`) + "=", 0, false},
		{"array", enc(`[1]`), 0, false},
		{"null", enc(`null`), 0, false},
		{"empty object", enc(`{}`), 0, false},
		{"bad base64", "%%", 0, false},
		{"too long", strings.Repeat("A", eventstore.MaxCursorLength+1), 0, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var c posCursor
			err := eventstore.DecodeCursor(tc.cursor, &c)
			if tc.ok {
				if err != nil || c.After != tc.want {
					t.Fatalf("got %d, %v; want %d", c.After, err, tc.want)
				}
				return
			}
			if !errors.Is(err, eventstore.ErrInvalidCursor) || !errors.Is(err, eventstore.ErrInvalid) {
				t.Fatalf("err = %v, want ErrInvalidCursor", err)
			}
		})
	}
}

// FuzzDecodeCursor: whatever a client sends, an accepted cursor is exactly one that
// EncodeCursor produces, with every number within 0…MaxInt64.
func FuzzDecodeCursor(f *testing.F) {
	for _, s := range []string{
		eventstore.EncodeCursor(posCursor{After: 7}),
		eventstore.EncodeCursor(keyCursor{Index: "byType", PK: "BankAccount#a", SK: 3}),
		enc(`{"after":18446744073709551615}`), enc(`{"sk":-1}`), "", "%%",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		var p posCursor
		if err := eventstore.DecodeCursor(s, &p); err == nil {
			if p.After > math.MaxInt64 || eventstore.EncodeCursor(p) != s {
				t.Fatalf("accepted %q as %+v", s, p)
			}
		} else if !errors.Is(err, eventstore.ErrInvalidCursor) {
			t.Fatalf("error %v is not ErrInvalidCursor", err)
		}
		var k keyCursor
		if err := eventstore.DecodeCursor(s, &k); err == nil {
			if k.SK < 0 || eventstore.EncodeCursor(k) != s {
				t.Fatalf("accepted %q as %+v", s, k)
			}
		} else if !errors.Is(err, eventstore.ErrInvalidCursor) {
			t.Fatalf("error %v is not ErrInvalidCursor", err)
		}
	})
}
