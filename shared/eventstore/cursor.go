package eventstore

import (
	"encoding/base64"
	"encoding/json"
)

// EncodeCursor turns a backend's resume point into the opaque string clients pass back.
func EncodeCursor(v any) string {
	b, _ := json.Marshal(v)
	return base64.RawURLEncoding.EncodeToString(b)
}

// DecodeCursor reverses EncodeCursor; a malformed cursor is an ErrInvalid.
func DecodeCursor(s string, v any) error {
	b, err := base64.RawURLEncoding.DecodeString(s)
	if err != nil || json.Unmarshal(b, v) != nil {
		return Invalid("malformed cursor")
	}
	return nil
}

// PageSize applies the default and the cap to a requested page size.
func PageSize(n int) int {
	switch {
	case n <= 0:
		return DefaultPageSize
	case n > MaxPageSize:
		return MaxPageSize
	}
	return n
}
