package docstore

import (
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"testing"
)

func TestWrites(t *testing.T) {
	type op struct {
		coll, key string
		raw       string // "" = delete
		wantErr   error
	}
	many := make([]op, 0, MaxUpdateWrites+2)
	for i := range MaxUpdateWrites {
		many = append(many, op{"c", fmt.Sprint(i), "1", nil})
	}
	many = append(many, op{"c", "0", "2", nil}, op{"c", "one-too-many", "1", ErrTooManyWrites})
	for _, tc := range []struct {
		name string
		ops  []op
		want string // Each's output
	}{
		{"first-write order, last value", []op{{"a", "2", "1", nil}, {"a", "1", "1", nil}, {"a", "2", "3", nil}}, "a/2=3 a/1=1"},
		{"delete after put", []op{{"a", "k", "1", nil}, {"a", "k", "", nil}}, "a/k=nil"},
		{"invalid key", []op{{"a", "", "1", ErrInvalidKey}, {"a\x00", "k", "1", ErrInvalidKey}}, ""},
		{"rewrites do not count towards the limit", many, strings.TrimSpace(strings.Repeat("x ", MaxUpdateWrites))},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var w Writes
			for _, o := range tc.ops {
				var raw json.RawMessage
				if o.raw != "" {
					raw = json.RawMessage(o.raw)
				}
				if err := w.Set(o.coll, o.key, raw); !errors.Is(err, o.wantErr) {
					t.Fatalf("Set(%q, %q) = %v, want %v", o.coll, o.key, err, o.wantErr)
				}
			}
			var got []string
			_ = w.Each(func(coll, key string, raw json.RawMessage) error {
				s := coll + "/" + key + "=" + string(raw)
				if raw == nil {
					s = coll + "/" + key + "=nil"
				}
				if tc.name == "rewrites do not count towards the limit" {
					s = "x"
				}
				got = append(got, s)
				return nil
			})
			if g := strings.Join(got, " "); g != tc.want {
				t.Fatalf("Each: %q, want %q", g, tc.want)
			}
			if raw, written := w.Get("a", "k"); tc.name == "delete after put" && (!written || raw != nil) {
				t.Fatalf("Get after delete: %q %v, want a buffered delete", raw, written)
			}
			if _, written := w.Get("b", "none"); written {
				t.Fatal("Get of an unwritten document reports it written")
			}
		})
	}
}
