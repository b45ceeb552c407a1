package usercontext_test

import (
	"encoding/json"
	"testing"

	"github.com/ecmstore/ecmstore/shared/aggregate"
	"github.com/ecmstore/ecmstore/shared/aggregate/aggregatetest"
	"github.com/ecmstore/ecmstore/shared/event"
	"github.com/ecmstore/ecmstore/shared/eventstore"
	uc "github.com/ecmstore/ecmstore/shared/usercontext"
)

func prefs(s string) map[string]json.RawMessage {
	var m map[string]json.RawMessage
	if err := json.Unmarshal([]byte(s), &m); err != nil {
		panic(err)
	}
	return m
}

func created(s string) event.Event {
	return event.MustNew(uc.Created, uc.CreatedPayload{Preferences: prefs(s)})
}

func updated(k, old, new string) event.Event {
	return event.MustNew(uc.PreferenceUpdated, uc.UpdatedPayload{Preference: k, OldValue: json.RawMessage(old), NewValue: json.RawMessage(new)})
}

func removed(k, old string) event.Event {
	return event.MustNew(uc.PreferenceRemoved, uc.RemovedPayload{Preference: k, OldValue: json.RawMessage(old)})
}

func TestECMBinding(t *testing.T) {
	d := uc.Definition
	base := created(`{"theme":"light","lang":"en"}`)
	for _, tc := range []struct {
		name  string
		given []event.Event
		cmd   aggregate.Command[uc.Context]
		then  []event.Event
	}{
		{"create", nil, uc.Create(prefs(`{"theme":"light"}`)), []event.Event{created(`{"theme":"light"}`)}},
		{"patch one key (the seed's example)", []event.Event{base}, uc.Patch(prefs(`{"theme":"dark"}`)),
			[]event.Event{updated("theme", `"light"`, `"dark"`)}},
		{"unchanged keys emit nothing", []event.Event{base}, uc.Patch(prefs(`{"theme":"light","lang":"en"}`)), nil},
		{"null removes", []event.Event{base}, uc.Patch(prefs(`{"lang":null}`)), []event.Event{removed("lang", `"en"`)}},
		{"null of a missing key is nothing", []event.Event{base}, uc.Patch(prefs(`{"nope":null}`)), nil},
		{"new key", []event.Event{base}, uc.Patch(prefs(`{"tz":"UTC"}`)), []event.Event{updated("tz", `null`, `"UTC"`)}},
		{"equal JSON in another spelling is unchanged", []event.Event{created(`{"o":{"a":1,"b":2}}`)}, uc.Patch(prefs(`{"o":{"b":2, "a":1}}`)), nil},
		{"put replaces", []event.Event{base}, uc.Replace(prefs(`{"theme":"dark"}`)),
			[]event.Event{removed("lang", `"en"`), updated("theme", `"light"`, `"dark"`)}},
		{"delete", []event.Event{base}, uc.Delete(), []event.Event{event.MustNew(uc.Deleted, uc.DeletedPayload{})}},
	} {
		t.Run(tc.name, func(t *testing.T) { aggregatetest.Given(d, tc.given...).When(tc.cmd).Then(t, tc.then...) })
	}
	deleted := []event.Event{base, event.MustNew(uc.Deleted, uc.DeletedPayload{})}
	for name, cmd := range map[string]aggregate.Command[uc.Context]{
		"patch deleted": uc.Patch(prefs(`{"a":1}`)), "put deleted": uc.Replace(prefs(`{}`)), "delete deleted": uc.Delete(),
	} {
		t.Run(name, func(t *testing.T) { aggregatetest.Given(d, deleted...).When(cmd).ThenErrorIs(t, aggregate.ErrNotFound) })
	}
	t.Run("patch missing", func(t *testing.T) {
		aggregatetest.Given(d).When(uc.Patch(prefs(`{"a":1}`))).ThenErrorIs(t, aggregate.ErrNotFound)
	})
	t.Run("create existing (even deleted)", func(t *testing.T) {
		aggregatetest.Given(d, deleted...).When(uc.Create(nil)).ThenErrorIs(t, aggregate.ErrExists)
	})
	t.Run("empty key", func(t *testing.T) {
		aggregatetest.Given(d, base).When(uc.Patch(prefs(`{"":1}`))).ThenErrorIs(t, eventstore.ErrInvalid)
	})
}
