package usercontext_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"reflect"
	"strings"
	"testing"

	"github.com/ecmstore/ecmstore/shared/aggregate"
	"github.com/ecmstore/ecmstore/shared/aggregate/aggregatetest"
	"github.com/ecmstore/ecmstore/shared/docstore"
	"github.com/ecmstore/ecmstore/shared/event"
	"github.com/ecmstore/ecmstore/shared/eventstore"
	"github.com/ecmstore/ecmstore/shared/eventstore/memstore"
	uc "github.com/ecmstore/ecmstore/shared/usercontext"
)

// keys builds a preference object with n keys prefix0…prefix(n-1).
func keys(prefix string, n int) map[string]json.RawMessage {
	m := make(map[string]json.RawMessage, n)
	for i := range n {
		m[fmt.Sprintf("%s%03d", prefix, i)] = json.RawMessage(fmt.Sprint(i))
	}
	return m
}

func encode(m map[string]json.RawMessage) string {
	b, _ := json.Marshal(m)
	return string(b)
}

// The diffing rules of PATCH and PUT beyond the seed's single-key example: several keys at
// once (events in key order), values of every JSON kind, and type changes that are changes.
func TestDiffing(t *testing.T) {
	base := created(`{"theme":"light","lang":"en","layout":{"cols":2,"tabs":["a","b"]},"beta":false}`)
	for _, tc := range []struct {
		name string
		cmd  aggregate.Command[uc.Context]
		then []event.Event
	}{
		{"patch adds, updates, removes and skips in key order",
			uc.Patch(prefs(`{"theme":"dark","lang":null,"tz":"UTC","beta":false,"gone":null}`)),
			[]event.Event{removed("lang", `"en"`), updated("theme", `"light"`, `"dark"`), updated("tz", `null`, `"UTC"`)}},
		{"nested values compare by value", uc.Patch(prefs(`{"layout":{"tabs":["a","b"],"cols":2}}`)), nil},
		{"a nested change is one event carrying both whole values",
			uc.Patch(prefs(`{"layout":{"cols":3,"tabs":["a","b"]}}`)),
			[]event.Event{updated("layout", `{"cols":2,"tabs":["a","b"]}`, `{"cols":3,"tabs":["a","b"]}`)}},
		{"array order matters", uc.Patch(prefs(`{"layout":{"cols":2,"tabs":["b","a"]}}`)),
			[]event.Event{updated("layout", `{"cols":2,"tabs":["a","b"]}`, `{"cols":2,"tabs":["b","a"]}`)}},
		{"a type change is a change", uc.Patch(prefs(`{"beta":"false"}`)), []event.Event{updated("beta", `false`, `"false"`)}},
		{"empty patch", uc.Patch(prefs(`{}`)), nil},
		{"put with the same set is a no-op", uc.Replace(prefs(`{"beta":false,"lang":"en","theme":"light","layout":{"tabs":["a","b"],"cols":2}}`)), nil},
		{"put to empty removes every key", uc.Replace(prefs(`{}`)),
			[]event.Event{removed("beta", `false`), removed("lang", `"en"`), removed("layout", `{"cols":2,"tabs":["a","b"]}`), removed("theme", `"light"`)}},
		{"put emits the minimal diff", uc.Replace(prefs(`{"beta":false,"lang":"fr","layout":{"cols":2,"tabs":["a","b"]},"tz":"UTC"}`)),
			[]event.Event{updated("lang", `"en"`, `"fr"`), removed("theme", `"light"`), updated("tz", `null`, `"UTC"`)}},
		{"put treats null as absent", uc.Replace(prefs(`{"beta":false,"lang":"en","layout":{"cols":2,"tabs":["a","b"]},"theme":null}`)),
			[]event.Event{removed("theme", `"light"`)}},
	} {
		t.Run(tc.name, func(t *testing.T) { aggregatetest.Given(uc.Definition, base).When(tc.cmd).Then(t, tc.then...) })
	}
}

func TestCreateRules(t *testing.T) {
	for _, tc := range []struct {
		name  string
		given []event.Event
		cmd   aggregate.Command[uc.Context]
		then  []event.Event
		err   error
	}{
		{"without preferences", nil, uc.Create(nil), []event.Event{created(`{}`)}, nil},
		{"null initial values are left out", nil, uc.Create(prefs(`{"a":1,"b":null}`)), []event.Event{created(`{"a":1}`)}, nil},
		{"values of every JSON kind", nil, uc.Create(prefs(`{"s":"x","n":1.5,"t":true,"o":{"k":[1,{"z":null}]},"a":[]}`)),
			[]event.Event{created(`{"s":"x","n":1.5,"t":true,"o":{"k":[1,{"z":null}]},"a":[]}`)}, nil},
		{"the maximum number of keys", nil, uc.Create(keys("k", uc.MaxPreferences)), []event.Event{created(encode(keys("k", uc.MaxPreferences)))}, nil},
		{"one key too many", nil, uc.Create(keys("k", uc.MaxPreferences+1)), nil, aggregate.ErrRule},
		{"the longest key", nil, uc.Create(prefs(`{"` + strings.Repeat("k", uc.MaxKeyLength) + `":1}`)),
			[]event.Event{created(`{"` + strings.Repeat("k", uc.MaxKeyLength) + `":1}`)}, nil},
		{"a key too long", nil, uc.Create(prefs(`{"` + strings.Repeat("k", uc.MaxKeyLength+1) + `":1}`)), nil, eventstore.ErrInvalid},
		{"an empty key", nil, uc.Create(prefs(`{"":1}`)), nil, eventstore.ErrInvalid},
		{"existing", []event.Event{created(`{}`)}, uc.Create(nil), nil, aggregate.ErrExists},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := aggregatetest.Given(uc.Definition, tc.given...).When(tc.cmd)
			if tc.err != nil {
				s.ThenErrorIs(t, tc.err)
				return
			}
			s.Then(t, tc.then...)
		})
	}
}

// The key cap applies to the resulting set, whichever command grows it; the change cap
// to the events one request produces (one atomic append). Both are rule violations (422)
// with their own code, so a client learns which limit it hit.
func TestPreferenceCap(t *testing.T) {
	full := created(encode(keys("k", uc.MaxPreferences)))
	empty := created(`{}`)
	for _, tc := range []struct {
		name  string
		given event.Event
		cmd   aggregate.Command[uc.Context]
		code  string // "" for success
	}{
		{"patch adding to a full context", full, uc.Patch(prefs(`{"extra":1}`)), uc.CodeTooManyPreferences},
		{"patch updating a full context", full, uc.Patch(prefs(`{"k000":"x"}`)), ""},
		{"patch swapping one key in a full context", full, uc.Patch(prefs(`{"k000":null,"extra":1}`)), ""},
		{"put one key too many", full, uc.Replace(keys("k", uc.MaxPreferences+1)), uc.CodeTooManyPreferences},
		{"patch adding the most changes one request may make", empty, uc.Patch(keys("n", uc.MaxChangesPerRequest)), ""},
		{"patch adding one change too many", empty, uc.Patch(keys("n", uc.MaxChangesPerRequest+1)), uc.CodeTooManyChanges},
		{"patch naming many keys but changing few", full, uc.Patch(keys("k", uc.MaxPreferences)), ""},
		{"put replacing every key of a full context", full, uc.Replace(keys("z", uc.MaxPreferences)), uc.CodeTooManyChanges},
		{"create with the most keys", event.Event{}, uc.Create(keys("k", uc.MaxPreferences)), ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var given []event.Event
			var v int64
			if tc.given.EventType != "" {
				given, v = []event.Event{tc.given}, 1
			}
			if tc.code != "" {
				aggregatetest.Given(uc.Definition, given...).When(tc.cmd).ThenErrorIs(t, aggregate.ErrRule)
			}
			_, err := tc.cmd(replay(t, given...), v)
			var rule *aggregate.RuleError
			switch {
			case tc.code == "" && err != nil:
				t.Fatalf("unexpected error: %v", err)
			case tc.code != "" && (!errors.As(err, &rule) || rule.Code != tc.code):
				t.Fatalf("err = %v, want rule %s", err, tc.code)
			case tc.code != "" && !strings.Contains(rule.Message, "at most"):
				t.Fatalf("message %q does not name the limit", rule.Message)
			}
		})
	}
}

// Every command but CREATE needs a live context: never created and deleted are both 404.
func TestLifecycle(t *testing.T) {
	del := event.MustNew(uc.Deleted, uc.DeletedPayload{})
	for _, tc := range []struct {
		name  string
		given []event.Event
		cmd   aggregate.Command[uc.Context]
		err   error
	}{
		{"put missing", nil, uc.Replace(prefs(`{}`)), aggregate.ErrNotFound},
		{"delete missing", nil, uc.Delete(), aggregate.ErrNotFound},
		{"empty patch on deleted", []event.Event{created(`{}`), del}, uc.Patch(prefs(`{}`)), aggregate.ErrNotFound},
		{"recreate after delete", []event.Event{created(`{}`), del}, uc.Create(prefs(`{"a":1}`)), aggregate.ErrExists},
	} {
		t.Run(tc.name, func(t *testing.T) {
			aggregatetest.Given(uc.Definition, tc.given...).When(tc.cmd).ThenErrorIs(t, tc.err)
		})
	}
}

func replay(t *testing.T, history ...event.Event) uc.Context {
	t.Helper()
	c := uc.Definition.New("test")
	for i, e := range history {
		e.Version = int64(i + 1)
		var err error
		if c, err = uc.Evolve(c, e); err != nil {
			t.Fatal(err)
		}
	}
	return c
}

func TestEvolve(t *testing.T) {
	for _, tc := range []struct {
		name    string
		history []event.Event
		want    string
		version int64
		deleted bool
	}{
		{"created", []event.Event{created(`{"a":1}`)}, `{"a":1}`, 1, false},
		{"updated and added", []event.Event{created(`{"a":1}`), updated("a", `1`, `2`), updated("b", `null`, `"x"`)}, `{"a":2,"b":"x"}`, 3, false},
		{"removed", []event.Event{created(`{"a":1,"b":2}`), removed("a", `1`)}, `{"b":2}`, 2, false},
		{"deleted keeps the last preferences", []event.Event{created(`{"a":1}`), event.MustNew(uc.Deleted, uc.DeletedPayload{})}, `{"a":1}`, 2, true},
		{"an unknown event type is ignored", []event.Event{created(`{"a":1}`), event.MustNew("context.future", map[string]int{"x": 1})}, `{"a":1}`, 1, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := replay(t, tc.history...)
			if got := encode(c.Preferences); !sameJSON(got, tc.want) || c.Version != tc.version || c.Deleted != tc.deleted {
				t.Fatalf("state %s v%d deleted=%v, want %s v%d deleted=%v", got, c.Version, c.Deleted, tc.want, tc.version, tc.deleted)
			}
		})
	}
}

// Evolve must not share maps between states: a snapshot or an as-of state taken earlier
// must not change when later events are applied.
func TestEvolveDoesNotAlias(t *testing.T) {
	before := replay(t, created(`{"a":1}`))
	after, err := uc.Evolve(before, updated("a", `1`, `2`))
	if err != nil {
		t.Fatal(err)
	}
	if after, err = uc.Evolve(after, removed("a", `2`)); err != nil {
		t.Fatal(err)
	}
	if string(before.Preferences["a"]) != "1" || len(after.Preferences) != 0 {
		t.Fatalf("aliasing: before %s, after %s", encode(before.Preferences), encode(after.Preferences))
	}
}

func sameJSON(a, b string) bool {
	var x, y any
	return json.Unmarshal([]byte(a), &x) == nil && json.Unmarshal([]byte(b), &y) == nil && reflect.DeepEqual(x, y)
}

// The read model is the replayed state, keeps the deletion, and remembers the last event
// id (x-ecm-event-id on reads).
func TestProjectionEqualsReplay(t *testing.T) {
	ctx := context.Background()
	store, docs := memstore.New(), memstore.NewDocs()
	repo := aggregate.NewRepository(store, uc.Definition, aggregate.DefaultConfig())
	for _, cmd := range []aggregate.Command[uc.Context]{
		uc.Create(prefs(`{"theme":"light","lang":"en"}`)),
		uc.Patch(prefs(`{"theme":"dark","tz":"UTC"}`)),
		uc.Replace(prefs(`{"theme":"dark","font":{"size":14}}`)),
		uc.Delete(),
	} {
		if _, err := repo.Execute(ctx, "u1", cmd, aggregate.Options{}); err != nil {
			t.Fatal(err)
		}
	}
	evs, err := store.Load(ctx, eventstore.Stream{Type: uc.AggregateType, ID: "u1"}, eventstore.Range{})
	if err != nil {
		t.Fatal(err)
	}
	for i, e := range evs {
		if err := docs.Update(ctx, func(ctx context.Context, tx docstore.Tx) error { return uc.Projection{}.Apply(ctx, tx, e) }); err != nil {
			t.Fatal(err)
		}
		want, err := repo.LoadVersion(ctx, "u1", e.Version)
		if err != nil {
			t.Fatal(err)
		}
		var got struct {
			uc.Context
			LastEventID string `json:"lastEventId"`
		}
		if ok, err := docs.Get(ctx, uc.Collection, "u1", &got); err != nil || !ok {
			t.Fatalf("read model after event %d: ok=%v err=%v", i+1, ok, err)
		}
		if encode(got.Preferences) != encode(want.State.Preferences) || got.Version != want.Version ||
			got.Deleted != want.State.Deleted || got.LastEventID != e.EventID {
			t.Fatalf("after %s: read model %+v, replay %+v", e.EventType, got, want.State)
		}
	}
}
