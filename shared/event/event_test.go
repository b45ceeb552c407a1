package event

import (
	"strings"
	"testing"
)

func TestValidID(t *testing.T) {
	for _, tc := range []struct {
		id   string
		want bool
	}{
		{"acc-1", true},
		{"a.b", true},
		{".hidden", true},
		{"v1.", true},
		{"a:b_c-d", true},
		{strings.Repeat("x", 128), true},
		// Dot segments: a path cleaner turns /contexts/.. into another resource.
		{".", false},
		{"..", false},
		{"...", false},
		{"", false},
		{strings.Repeat("x", 129), false},
		{"a/b", false},
		{"a b", false},
		{"é", false},
		{"a\x00", false},
	} {
		if got := ValidID(tc.id); got != tc.want {
			t.Errorf("ValidID(%q) = %v, want %v", tc.id, got, tc.want)
		}
	}
}
