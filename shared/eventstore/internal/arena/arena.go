// Package arena copies the bytes of decoded events into shared chunks, so that a read
// of many events costs a few large allocations instead of several small ones per event:
// the strings and payloads of the events point into the chunks. A chunk lives as long as
// any event decoded into it.
package arena

import "unsafe"

// Arena hands out copies; the zero value allocates each copy on its own.
type Arena struct {
	chunk []byte
	size  int
}

// New returns an arena that allocates chunks of size bytes (larger values get their own).
func New(size int) *Arena { return &Arena{size: size} }

// Copy returns a copy of v whose capacity ends with it, so that appending to it never
// writes into a neighbour.
func (a *Arena) Copy(v []byte) []byte {
	if cap(a.chunk)-len(a.chunk) < len(v) {
		a.chunk = make([]byte, 0, max(a.size, len(v)))
	}
	n := len(a.chunk)
	a.chunk = append(a.chunk, v...)
	return a.chunk[n : n+len(v) : n+len(v)]
}

// String returns v as a string backed by a copy nothing writes again.
func (a *Arena) String(v []byte) string {
	if len(v) == 0 {
		return ""
	}
	c := a.Copy(v)
	return unsafe.String(&c[0], len(c))
}
