// Package aggregatetest is the given-when-then helper of seed 001 for aggregate rules:
//
//	aggregatetest.Given(bank.Definition, opened(1000)).
//		When(bank.Withdraw(money(2000), "")).
//		ThenError(t, "insufficient_funds")
package aggregatetest

import (
	"encoding/json"
	"errors"
	"reflect"
	"testing"
	"time"

	"github.com/ecmstore/ecmstore/shared/aggregate"
	"github.com/ecmstore/ecmstore/shared/event"
)

// Scenario is a history and a command under test.
type Scenario[S any] struct {
	def     aggregate.Definition[S]
	history []event.Event
	cmd     aggregate.Command[S]
}

// Given starts a scenario from past events (versions and timestamps are filled in).
func Given[S any](def aggregate.Definition[S], history ...event.Event) *Scenario[S] {
	h := make([]event.Event, len(history))
	for i, e := range history {
		e.Version = int64(i + 1)
		e.AggregateType = def.Type
		if e.AggregateID == "" {
			e.AggregateID = "test"
		}
		if e.Timestamp.IsZero() {
			e.Timestamp = time.Date(2024, 1, 15, 10, 0, i, 0, time.UTC)
		}
		h[i] = e
	}
	return &Scenario[S]{def: def, history: h}
}

// When sets the command.
func (s *Scenario[S]) When(cmd aggregate.Command[S]) *Scenario[S] { s.cmd = cmd; return s }

func (s *Scenario[S]) run(t *testing.T) ([]event.Event, error) {
	t.Helper()
	state := s.def.New("test")
	for _, e := range s.history {
		var err error
		if state, err = s.def.Apply(state, e); err != nil {
			t.Fatalf("given: apply %s: %v", e.EventType, err)
		}
	}
	return s.cmd(state, int64(len(s.history)))
}

// Then asserts the command produced exactly these event types and payloads.
func (s *Scenario[S]) Then(t *testing.T, want ...event.Event) {
	t.Helper()
	got, err := s.run(t)
	if err != nil {
		t.Fatalf("then: command failed: %v", err)
	}
	if len(got) != len(want) {
		t.Fatalf("then: %d events, want %d: %+v", len(got), len(want), got)
	}
	for i := range want {
		if got[i].EventType != want[i].EventType || !sameJSON(got[i].Payload, want[i].Payload) {
			t.Errorf("then: event %d = %s %s, want %s %s", i, got[i].EventType, got[i].Payload, want[i].EventType, want[i].Payload)
		}
	}
}

// ThenError asserts the command failed with a rule violation of this code.
func (s *Scenario[S]) ThenError(t *testing.T, code string) {
	t.Helper()
	got, err := s.run(t)
	var re *aggregate.RuleError
	if !errors.As(err, &re) || re.Code != code {
		t.Fatalf("then: err = %v (events %v), want rule %q", err, got, code)
	}
}

// ThenErrorIs asserts the command failed with an error matching target.
func (s *Scenario[S]) ThenErrorIs(t *testing.T, target error) {
	t.Helper()
	if _, err := s.run(t); !errors.Is(err, target) {
		t.Fatalf("then: err = %v, want %v", err, target)
	}
}

func sameJSON(a, b []byte) bool {
	var x, y any
	_ = json.Unmarshal(a, &x)
	_ = json.Unmarshal(b, &y)
	return reflect.DeepEqual(x, y)
}
