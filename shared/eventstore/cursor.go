package eventstore

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
)

// ErrInvalidCursor is a cursor that no query of this store handed out (or one for another
// query). It is also an ErrInvalid.
var ErrInvalidCursor = errors.New("invalid cursor")

// CursorError reports a cursor a client cannot continue from; nothing was read.
type CursorError struct{ Reason string }

func (e *CursorError) Error() string { return "invalid cursor: " + e.Reason }
func (e *CursorError) Is(target error) bool {
	return target == ErrInvalidCursor || target == ErrInvalid
}

// InvalidCursor returns a CursorError with a message fit to show a client.
func InvalidCursor(format string, args ...any) error {
	return &CursorError{Reason: fmt.Sprintf(format, args...)}
}

// MaxCursorLength bounds the encoded cursor: every cursor a store hands out is a few
// hundred bytes at most.
const MaxCursorLength = 2048

// EncodeCursor turns a backend's resume point into the opaque string clients pass back.
func EncodeCursor(v any) string {
	b, _ := json.Marshal(v)
	return base64.RawURLEncoding.EncodeToString(b)
}

// DecodeCursor reverses EncodeCursor. Only what EncodeCursor could have produced is
// accepted: the string must be the canonical encoding of the decoded value, and every
// number in it an integer from 0 to MaxInt64 (positions and versions; a larger one would
// wrap when a backend converts it to a signed column and silently restart the query from
// the first page). Anything else is a CursorError.
func DecodeCursor(s string, v any) error {
	if len(s) > MaxCursorLength {
		return InvalidCursor("longer than %d characters", MaxCursorLength)
	}
	b, err := base64.RawURLEncoding.DecodeString(s)
	if err != nil {
		return InvalidCursor("malformed")
	}
	if err := checkNumbers(b); err != nil {
		return err
	}
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	if dec.Decode(v) != nil || dec.More() {
		return InvalidCursor("malformed")
	}
	if EncodeCursor(v) != s {
		return InvalidCursor("malformed")
	}
	return nil
}

// checkNumbers walks the JSON and refuses numbers outside 0…MaxInt64.
func checkNumbers(b []byte) error {
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.UseNumber()
	for {
		tok, err := dec.Token()
		if err != nil {
			return nil // end of input, or malformed JSON, which the decode reports
		}
		n, ok := tok.(json.Number)
		if !ok {
			continue
		}
		if i, err := strconv.ParseInt(n.String(), 10, 64); err != nil || i < 0 {
			return InvalidCursor("value %s out of range", n)
		}
	}
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
