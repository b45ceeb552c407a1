package dynamostore_test

import (
	"context"
	"errors"
	"net/http"
	"sync"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb/types"
	"github.com/aws/smithy-go"
	"github.com/aws/smithy-go/middleware"
	smithyhttp "github.com/aws/smithy-go/transport/http"

	"github.com/ecmstore/ecmstore/shared/docstore"
	"github.com/ecmstore/ecmstore/shared/event"
	"github.com/ecmstore/ecmstore/shared/eventstore"
	"github.com/ecmstore/ecmstore/shared/eventstore/dynamostore"
)

// injector fails chosen requests before they leave the client, as DynamoDB would have
// answered them, and counts the requests per operation.
type injector struct {
	mu    sync.Mutex
	fail  func(op string, n int) error // n: requests of op before this one
	count map[string]int
}

func (f *injector) option() func(*dynamodb.Options) {
	return func(o *dynamodb.Options) {
		o.RetryMaxAttempts = 1 // the store sees what the SDK would give up with, at once
		o.APIOptions = append(o.APIOptions, func(st *middleware.Stack) error {
			return st.Finalize.Add(middleware.FinalizeMiddlewareFunc("ecmInject",
				func(ctx context.Context, in middleware.FinalizeInput, next middleware.FinalizeHandler) (middleware.FinalizeOutput, middleware.Metadata, error) {
					op := middleware.GetOperationName(ctx)
					f.mu.Lock()
					n := f.count[op]
					f.count[op]++
					f.mu.Unlock()
					if err := f.fail(op, n); err != nil {
						return middleware.FinalizeOutput{}, middleware.Metadata{}, err
					}
					return next.HandleFinalize(ctx, in)
				}), middleware.After)
		})
	}
}

func canceled(codes ...string) error {
	reasons := make([]types.CancellationReason, len(codes))
	for i, c := range codes {
		reasons[i] = types.CancellationReason{Code: aws.String(c)}
	}
	return &types.TransactionCanceledException{Message: aws.String("Transaction cancelled"), CancellationReasons: reasons}
}

// on fails the first `times` requests of op (all of them when times < 0).
func on(op string, times int, err error) func(string, int) error {
	return func(o string, n int) error {
		if o == op && (times < 0 || n < times) {
			return err
		}
		return nil
	}
}

func TestFailureMapping(t *testing.T) {
	ctx := context.Background()
	throttled := &types.ProvisionedThroughputExceededException{Message: aws.String("slow down")}
	single := func(s *dynamostore.Store, st eventstore.Stream) error {
		_, err := s.Append(ctx, st, eventstore.NoStream, drafts(1))
		return err
	}
	multi := func(s *dynamostore.Store, st eventstore.Stream) error {
		_, err := s.Append(ctx, st, eventstore.NoStream, drafts(3))
		return err
	}
	load := func(s *dynamostore.Store, st eventstore.Stream) error {
		_, err := s.Load(ctx, st, eventstore.Range{})
		return err
	}
	for _, tc := range []struct {
		name     string
		fail     func(string, int) error
		do       func(*dynamostore.Store, eventstore.Stream) error
		want     error // nil, ErrThrottled, or errAny (another error)
		op       string
		requests int
	}{
		{"put throttled", on("PutItem", -1, throttled), single, eventstore.ErrThrottled, "PutItem", 1},
		{"query throttled", on("Query", -1, &smithy.GenericAPIError{Code: "ThrottlingException"}), load, eventstore.ErrThrottled, "Query", 1},
		{"request limit", on("PutItem", -1, &smithy.GenericAPIError{Code: "RequestLimitExceeded"}), single, eventstore.ErrThrottled, "PutItem", 1},
		{"put meets a transaction once", on("PutItem", 1, &types.TransactionConflictException{Message: aws.String("busy")}), single, nil, "PutItem", 2},
		{"put meets transactions for ever", on("PutItem", -1, &types.TransactionConflictException{Message: aws.String("busy")}), single, eventstore.ErrThrottled, "PutItem", 6},
		{"transaction conflict once", on("TransactWriteItems", 1, canceled("None", "TransactionConflict", "None")), multi, nil, "TransactWriteItems", 2},
		{"transaction throttled twice", on("TransactWriteItems", 2, canceled("ThrottlingError", "None", "None")), multi, nil, "TransactWriteItems", 3},
		{"transaction conflict for ever", on("TransactWriteItems", -1, canceled("TransactionConflict", "None", "None")), multi, eventstore.ErrThrottled, "TransactWriteItems", 6},
		{"transaction invalid", on("TransactWriteItems", -1, canceled("ValidationError", "None", "None")), multi, errAny, "TransactWriteItems", 1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			inj := &injector{fail: tc.fail, count: map[string]int{}}
			db, events, _ := env(t, inj.option())
			st := uniqueStream("fail")
			err := tc.do(dynamostore.New(db, events), st)
			switch {
			case tc.want == nil && err != nil:
				t.Fatalf("err = %v, want success after retrying", err)
			case tc.want == eventstore.ErrThrottled:
				var te *eventstore.ThrottledError
				if !errors.As(err, &te) || !errors.Is(err, eventstore.ErrThrottled) || te.RetryAfter <= 0 {
					t.Fatalf("err = %v, want a *ThrottledError with a RetryAfter", err)
				}
			case tc.want == errAny:
				if err == nil || errors.Is(err, eventstore.ErrConflict) || errors.Is(err, eventstore.ErrThrottled) {
					t.Fatalf("err = %v, want a plain failure", err)
				}
			}
			if got := inj.count[tc.op]; got != tc.requests {
				t.Errorf("%d %s requests, want %d", got, tc.op, tc.requests)
			}
		})
	}
}

var errAny = errors.New("any other error")

// A commit that meets another transaction on its documents is retried as it is; a
// failed condition reruns fn.
func TestDocsCommitRetries(t *testing.T) {
	ctx := context.Background()
	for _, tc := range []struct {
		name   string
		fail   func(string, int) error
		keys   []string
		op     string
		want   int // requests of op
		rounds int // runs of fn
	}{
		{"single put meets a transaction", on("PutItem", 1, &types.TransactionConflictException{Message: aws.String("busy")}), []string{"a"}, "PutItem", 2, 1},
		{"transaction conflict", on("TransactWriteItems", 2, canceled("TransactionConflict", "None")), []string{"a", "b"}, "TransactWriteItems", 3, 1},
		{"condition failed", on("TransactWriteItems", 1, canceled("ConditionalCheckFailed", "None")), []string{"a", "b"}, "TransactWriteItems", 2, 2},
	} {
		t.Run(tc.name, func(t *testing.T) {
			inj := &injector{fail: tc.fail, count: map[string]int{}}
			db, _, models := env(t, inj.option())
			d := dynamostore.NewDocs(db, models)
			coll := uniqueStream("docs").ID
			rounds := 0
			err := d.Update(ctx, func(ctx context.Context, tx docstore.Tx) error {
				rounds++
				for _, k := range tc.keys {
					if err := tx.Put(ctx, coll, k, map[string]int{"n": rounds}); err != nil {
						return err
					}
				}
				return nil
			})
			if err != nil {
				t.Fatal(err)
			}
			if inj.count[tc.op] != tc.want || rounds != tc.rounds {
				t.Errorf("%d %s requests and %d runs of fn, want %d and %d", inj.count[tc.op], tc.op, rounds, tc.want, tc.rounds)
			}
		})
	}
}

// lostResponses lets the first n requests of op reach DynamoDB, then answers them with a
// retryable server error, as a timeout or a reset connection after the write would: the
// SDK sends the same request again.
func lostResponses(op string, n int) (func(*dynamodb.Options), *int) {
	lost := new(int)
	var mu sync.Mutex
	return func(o *dynamodb.Options) {
		o.RetryMaxAttempts = 3
		o.APIOptions = append(o.APIOptions, func(st *middleware.Stack) error {
			return st.Finalize.Add(middleware.FinalizeMiddlewareFunc("ecmLoseResponse",
				func(ctx context.Context, in middleware.FinalizeInput, next middleware.FinalizeHandler) (middleware.FinalizeOutput, middleware.Metadata, error) {
					out, md, err := next.HandleFinalize(ctx, in)
					mu.Lock()
					defer mu.Unlock()
					if err == nil && middleware.GetOperationName(ctx) == op && *lost < n {
						*lost++
						return out, md, &smithyhttp.ResponseError{Response: &smithyhttp.Response{Response: &http.Response{StatusCode: 500}},
							Err: errors.New("injected: response lost after the write")}
					}
					return out, md, err
				}), middleware.After)
		})
	}, lost
}

// A write that landed but whose response was lost is resent by the SDK; the item in the
// way (or the id guard) is ours, so the append succeeds once instead of reporting a
// conflict that would make the caller decide the command again.
func TestLostResponseIsTheSameAppend(t *testing.T) {
	ctx := context.Background()
	keyed := func(n int) []event.Event {
		evs := drafts(n)
		seed := event.NewID()
		for i := range evs {
			evs[i].EventID = event.DerivedID(seed, i)
		}
		return evs
	}
	for _, tc := range []struct {
		name   string
		op     string
		events func() []event.Event
	}{
		{"single event, store-assigned id", "PutItem", func() []event.Event { return drafts(1) }},
		{"three events, store-assigned ids", "TransactWriteItems", func() []event.Event { return drafts(3) }},
		{"keyed single event (guarded)", "TransactWriteItems", func() []event.Event { return keyed(1) }},
		{"keyed three events (guarded)", "TransactWriteItems", func() []event.Event { return keyed(3) }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			opt, lost := lostResponses(tc.op, 1)
			db, events, _ := env(t, opt)
			s := dynamostore.New(db, events)
			st := uniqueStream("lost")
			if _, err := s.Append(ctx, st, eventstore.NoStream, drafts(1)); err != nil {
				t.Fatal(err)
			}
			*lost = 0
			evs := tc.events()
			got, err := s.Append(ctx, st, 1, evs)
			if err != nil {
				t.Fatalf("append whose response was lost: %v", err)
			}
			if *lost != 1 {
				t.Fatalf("%d responses lost, want 1", *lost)
			}
			stored, err := s.Load(ctx, st, eventstore.Range{})
			if err != nil {
				t.Fatal(err)
			}
			if len(stored) != 1+len(evs) || !eventstore.SameEvents(stored[1:], got) {
				t.Fatalf("stored %d events (%s), want %d: the append must land once", len(stored), versions(stored), 1+len(evs))
			}
		})
	}
}

// A create whose response was lost is resent by the SDK and meets its own document: it
// is reported created, not handed back as someone else's (an idempotency key would
// otherwise answer its own first request "in progress"). A document another caller
// created is still handed back.
func TestLostResponseCreateIsOurs(t *testing.T) {
	ctx := context.Background()
	opt, lost := lostResponses("PutItem", 1)
	db, _, models := env(t, opt)
	d := dynamostore.NewDocs(db, models)
	coll := "lostcreate-" + event.NewID()
	created, existing, err := d.Create(ctx, coll, "k", map[string]any{"claim": "first"})
	if err != nil || !created || existing != nil {
		t.Fatalf("create whose answer was lost: created %v, existing %s, err %v", created, existing, err)
	}
	if *lost != 1 {
		t.Fatalf("%d responses lost, want 1", *lost)
	}
	created, existing, err = d.Create(ctx, coll, "k", map[string]any{"claim": "second"})
	if err != nil || created || string(existing) != `{"claim":"first"}` {
		t.Fatalf("second create: created %v, existing %s, err %v", created, existing, err)
	}
	var got map[string]string
	if ok, err := d.Get(ctx, coll, "k", &got); err != nil || !ok || got["claim"] != "first" {
		t.Fatalf("stored %v (%v, %v), want the first create's", got, ok, err)
	}
	// A failure that is not the condition is returned as it is.
	failing := dynamostore.NewDocs(mustClient(t, (&injector{count: map[string]int{},
		fail: on("PutItem", -1, &types.ProvisionedThroughputExceededException{Message: aws.String("slow down")})}).option()), models)
	if _, _, err := failing.Create(ctx, coll, "other", 1); !errors.Is(err, eventstore.ErrThrottled) {
		t.Fatalf("throttled create: %v, want ErrThrottled", err)
	}
}

func mustClient(t *testing.T, opt func(*dynamodb.Options)) *dynamodb.Client {
	db, _, _ := env(t, opt)
	return db
}
