package api

import (
	"encoding/base64"
	"net/http"
	"strconv"
	"unicode/utf8"

	"github.com/ecmstore/ecmstore/shared/docstore"
)

// Paging of read-model listings (?limit=&cursor=): the cursor is opaque to clients
// (base64url of the last document key of the previous page), the limit defaults to
// DefaultPageLimit and is at most MaxPageLimit.
const (
	DefaultPageLimit = 50
	MaxPageLimit     = 200
)

// PageRequest is a parsed ?limit=&cursor=.
type PageRequest struct {
	After string // the document key the page starts after; "" for the first page
	Limit int
}

// ParsePage reads ?limit= and ?cursor=; anything malformed is a 400.
func ParsePage(r *http.Request) (PageRequest, error) {
	q := r.URL.Query()
	p := PageRequest{Limit: DefaultPageLimit}
	if v := q.Get("limit"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 || n > MaxPageLimit {
			return p, errBadRequest("limit must be an integer from 1 to %d", MaxPageLimit)
		}
		p.Limit = n
	}
	if v := q.Get("cursor"); v != "" {
		raw, err := base64.RawURLEncoding.DecodeString(v)
		if err != nil || len(raw) == 0 || len(raw) > docstore.MaxKeyBytes || !utf8.Valid(raw) {
			return p, errBadRequest("cursor %q is not one this API returned", v)
		}
		p.After = string(raw)
	}
	return p, nil
}

// EncodeCursor is the cursor of the page after the document key; "" stays "".
func EncodeCursor(key string) string {
	if key == "" {
		return ""
	}
	return base64.RawURLEncoding.EncodeToString([]byte(key))
}
