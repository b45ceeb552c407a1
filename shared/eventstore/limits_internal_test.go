package eventstore

import "testing"

// checkJSON decodes escapes rather than searching for text: an escaped backslash
// followed by "u0000" is ordinary text, a surrogate pair is one character.
func TestCheckJSON(t *testing.T) {
	for _, tc := range []struct {
		name string
		raw  string
		ok   bool
	}{
		{"plain", `{"a":"b","n":[1,2.5,null,true]}`, true},
		{"UTF-8 text", `{"a":"héllo ✓"}`, true},
		{"escaped backslash then u0000", `{"a":"\\u0000"}`, true},
		{"escaped quote", `{"a":"\"\u00e9\""}`, true},
		{"surrogate pair", `{"a":"\ud83d\ude00"}`, true},
		{"surrogate pair, upper-case hex", `{"a":"\uD83D\uDE00"}`, true},
		{"not JSON", `{"a":`, false},
		{"NUL escape", `{"a":"\u0000"}`, false},
		{"NUL escape after an escaped backslash", `{"a":"\\\u0000"}`, false},
		{"NUL escape in a key", `{"\u0000":1}`, false},
		{"lone high surrogate", `{"a":"\ud83d"}`, false},
		{"high surrogate then text", `{"a":"\ud83dx"}`, false},
		{"high surrogate then another escape", `{"a":"\ud83d\n"}`, false},
		{"two high surrogates", `{"a":"\ud83d\ud83d\ude00"}`, false},
		{"lone low surrogate", `{"a":"\ude00"}`, false},
		{"invalid UTF-8", "{\"a\":\"\xff\"}", false},
	} {
		if got := checkJSON([]byte(tc.raw)) == ""; got != tc.ok {
			t.Errorf("%s: %s accepted = %v, want %v (%q)", tc.name, tc.raw, got, tc.ok, checkJSON([]byte(tc.raw)))
		}
	}
}
