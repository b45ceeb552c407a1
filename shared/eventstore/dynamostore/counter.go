package dynamostore

import (
	"context"
	"sync"

	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb/types"
	"github.com/aws/smithy-go/middleware"
)

// RequestCounter counts DynamoDB requests per operation and the write capacity they
// report, through SDK middleware. Tests use it to hold the cost of each operation to
// account; attach it with dynamodb.Options.APIOptions.
type RequestCounter struct {
	mu    sync.Mutex
	calls map[string]int
	wcu   float64
	rcu   float64
}

// NewRequestCounter returns an empty counter.
func NewRequestCounter() *RequestCounter { return &RequestCounter{calls: map[string]int{}} }

// Option returns the client option that installs the counter.
func (c *RequestCounter) Option() func(*dynamodb.Options) {
	return func(o *dynamodb.Options) {
		o.APIOptions = append(o.APIOptions, func(st *middleware.Stack) error {
			return st.Initialize.Add(middleware.InitializeMiddlewareFunc("ecmCount",
				func(ctx context.Context, in middleware.InitializeInput, next middleware.InitializeHandler) (middleware.InitializeOutput, middleware.Metadata, error) {
					c.mu.Lock()
					c.calls[middleware.GetOperationName(ctx)]++
					c.mu.Unlock()
					out, md, err := next.HandleInitialize(ctx, in)
					c.capacity(out.Result)
					return out, md, err
				}), middleware.After)
		})
	}
}

func (c *RequestCounter) capacity(result any) {
	var cc []types.ConsumedCapacity
	switch r := result.(type) {
	case *dynamodb.PutItemOutput:
		if r.ConsumedCapacity != nil {
			cc = append(cc, *r.ConsumedCapacity)
		}
	case *dynamodb.QueryOutput:
		if r.ConsumedCapacity != nil {
			cc = append(cc, *r.ConsumedCapacity)
		}
	case *dynamodb.GetItemOutput:
		if r.ConsumedCapacity != nil {
			cc = append(cc, *r.ConsumedCapacity)
		}
	case *dynamodb.TransactWriteItemsOutput:
		cc = r.ConsumedCapacity
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, x := range cc {
		if x.WriteCapacityUnits != nil {
			c.wcu += *x.WriteCapacityUnits
		}
		if x.ReadCapacityUnits != nil {
			c.rcu += *x.ReadCapacityUnits
		}
		if x.CapacityUnits != nil && x.WriteCapacityUnits == nil && x.ReadCapacityUnits == nil {
			c.wcu += *x.CapacityUnits
		}
	}
}

// Reset clears the counts.
func (c *RequestCounter) Reset() {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.calls, c.wcu, c.rcu = map[string]int{}, 0, 0
}

// Calls returns a copy of the per-operation counts.
func (c *RequestCounter) Calls() map[string]int {
	c.mu.Lock()
	defer c.mu.Unlock()
	out := make(map[string]int, len(c.calls))
	for k, v := range c.calls {
		out[k] = v
	}
	return out
}

// Total returns the number of requests.
func (c *RequestCounter) Total() int {
	n := 0
	for _, v := range c.Calls() {
		n += v
	}
	return n
}
