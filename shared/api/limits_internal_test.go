package api

import (
	"fmt"
	"net/http"
	"strings"
	"testing"

	"github.com/ecmstore/ecmstore/shared/docstore"
	"github.com/ecmstore/ecmstore/shared/eventstore"
)

// The header rule must stay within what the store accepts: a correlation or causation
// id the API lets through and a backend then refuses would fail after the command ran.
func TestHeaderRuleWithinStoreLimits(t *testing.T) {
	for c := 0; c < 256; c++ {
		v := string(rune(c))
		if c >= 0x80 {
			v = string([]byte{byte(c)})
		}
		if headerValue.MatchString(v) && !eventstore.ValidTraceID(v) {
			t.Errorf("header rule accepts %q, the store refuses it", v)
		}
	}
	for _, n := range []int{eventstore.MaxTraceIDBytes, eventstore.MaxTraceIDBytes + 1} {
		v := strings.Repeat("a", n)
		if headerValue.MatchString(v) != eventstore.ValidTraceID(v) {
			t.Errorf("length %d: header rule %v, store %v", n, headerValue.MatchString(v), eventstore.ValidTraceID(v))
		}
	}
}

// Store refusals of a field or a key are the client's fault: 4xx with the store's
// message, whichever backend produced them and however wrapped.
func TestStoreLimitErrorsMapTo4xx(t *testing.T) {
	for _, tc := range []struct {
		name   string
		err    error
		status int
		code   string
	}{
		{"field", &eventstore.FieldError{Event: 0, Field: "metadata.correlationId", Reason: "must be short"}, http.StatusBadRequest, "invalid_request"},
		{"wrapped field", fmt.Errorf("append: %w", &eventstore.FieldError{Event: -1, Field: "aggregateId", Reason: "x"}), http.StatusBadRequest, "invalid_request"},
		{"document key", fmt.Errorf("projection: %w", docstore.CheckKey("c", strings.Repeat("k", docstore.MaxKeyBytes+1))), http.StatusBadRequest, "invalid_request"},
		{"size", &eventstore.LimitError{What: "event size", Limit: 1, Got: 2}, http.StatusUnprocessableEntity, "limit_exceeded"},
	} {
		e := classify(tc.err)
		if e.Status != tc.status || e.Code != tc.code || e.Message == "" {
			t.Errorf("%s: %d %s %q, want %d %s", tc.name, e.Status, e.Code, e.Message, tc.status, tc.code)
		}
	}
}
