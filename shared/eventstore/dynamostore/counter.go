package dynamostore

import (
	"context"
	"maps"
	"sync"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb/types"
	"github.com/aws/smithy-go/middleware"
)

// RequestCounter counts, through SDK middleware, the DynamoDB requests a client sends —
// every HTTP attempt, SDK retries included — per operation, and the capacity DynamoDB
// reports for them. Tests use it to hold the cost of each operation to account. It asks
// for ReturnConsumedCapacity=INDEXES on requests that set none, so the figures split the
// table from its indexes (each GSI entry written is billed like a table write).
type RequestCounter struct {
	mu  sync.Mutex
	ops map[string]OpCost
}

// OpCost is what the requests of one operation cost.
type OpCost struct {
	Requests int
	// Capacity is the capacity units reported (read units for reads, write units for
	// writes), table and indexes together; Table is the table's share.
	Capacity, Table float64
}

// NewRequestCounter returns an empty counter.
func NewRequestCounter() *RequestCounter { return &RequestCounter{ops: map[string]OpCost{}} }

// Option returns the client option that installs the counter, for dynamodb.New or
// dynamodb.NewFromConfig.
func (c *RequestCounter) Option() func(*dynamodb.Options) {
	return func(o *dynamodb.Options) { o.APIOptions = append(o.APIOptions, c.install) }
}

func (c *RequestCounter) install(st *middleware.Stack) error {
	err := st.Initialize.Add(middleware.InitializeMiddlewareFunc("ecmReturnConsumedCapacity",
		func(ctx context.Context, in middleware.InitializeInput, next middleware.InitializeHandler) (middleware.InitializeOutput, middleware.Metadata, error) {
			in.Parameters = withCapacity(in.Parameters)
			return next.HandleInitialize(ctx, in)
		}), middleware.After)
	if err != nil {
		return err
	}
	// After the retry middleware, so each attempt counts.
	return st.Finalize.Add(middleware.FinalizeMiddlewareFunc("ecmCountRequests",
		func(ctx context.Context, in middleware.FinalizeInput, next middleware.FinalizeHandler) (middleware.FinalizeOutput, middleware.Metadata, error) {
			out, md, err := next.HandleFinalize(ctx, in)
			c.record(middleware.GetOperationName(ctx), consumed(out.Result))
			return out, md, err
		}), middleware.After)
}

// withCapacity returns a copy of the request asking for per-index consumed capacity (the
// caller's input is left alone).
func withCapacity(params any) any {
	const rcc = types.ReturnConsumedCapacityIndexes
	switch p := params.(type) {
	case *dynamodb.PutItemInput:
		if p.ReturnConsumedCapacity == "" {
			q := *p
			q.ReturnConsumedCapacity = rcc
			return &q
		}
	case *dynamodb.DeleteItemInput:
		if p.ReturnConsumedCapacity == "" {
			q := *p
			q.ReturnConsumedCapacity = rcc
			return &q
		}
	case *dynamodb.UpdateItemInput:
		if p.ReturnConsumedCapacity == "" {
			q := *p
			q.ReturnConsumedCapacity = rcc
			return &q
		}
	case *dynamodb.GetItemInput:
		if p.ReturnConsumedCapacity == "" {
			q := *p
			q.ReturnConsumedCapacity = rcc
			return &q
		}
	case *dynamodb.QueryInput:
		if p.ReturnConsumedCapacity == "" {
			q := *p
			q.ReturnConsumedCapacity = rcc
			return &q
		}
	case *dynamodb.TransactWriteItemsInput:
		if p.ReturnConsumedCapacity == "" {
			q := *p
			q.ReturnConsumedCapacity = rcc
			return &q
		}
	case *dynamodb.BatchWriteItemInput:
		if p.ReturnConsumedCapacity == "" {
			q := *p
			q.ReturnConsumedCapacity = rcc
			return &q
		}
	}
	return params
}

func consumed(result any) []types.ConsumedCapacity {
	one := func(c *types.ConsumedCapacity) []types.ConsumedCapacity {
		if c == nil {
			return nil
		}
		return []types.ConsumedCapacity{*c}
	}
	switch r := result.(type) {
	case *dynamodb.PutItemOutput:
		return one(r.ConsumedCapacity)
	case *dynamodb.DeleteItemOutput:
		return one(r.ConsumedCapacity)
	case *dynamodb.UpdateItemOutput:
		return one(r.ConsumedCapacity)
	case *dynamodb.GetItemOutput:
		return one(r.ConsumedCapacity)
	case *dynamodb.QueryOutput:
		return one(r.ConsumedCapacity)
	case *dynamodb.TransactWriteItemsOutput:
		return r.ConsumedCapacity
	case *dynamodb.BatchWriteItemOutput:
		return r.ConsumedCapacity
	}
	return nil
}

func (c *RequestCounter) record(op string, cc []types.ConsumedCapacity) {
	c.mu.Lock()
	defer c.mu.Unlock()
	o := c.ops[op]
	o.Requests++
	for _, x := range cc {
		o.Capacity += aws.ToFloat64(x.CapacityUnits)
		if x.Table != nil {
			o.Table += aws.ToFloat64(x.Table.CapacityUnits)
		} else {
			o.Table += aws.ToFloat64(x.CapacityUnits)
		}
	}
	c.ops[op] = o
}

// Reset clears the counts.
func (c *RequestCounter) Reset() {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.ops = map[string]OpCost{}
}

// Costs returns a copy of the per-operation figures.
func (c *RequestCounter) Costs() map[string]OpCost {
	c.mu.Lock()
	defer c.mu.Unlock()
	return maps.Clone(c.ops)
}

// Calls returns the number of requests per operation.
func (c *RequestCounter) Calls() map[string]int {
	out := map[string]int{}
	for op, o := range c.Costs() {
		out[op] = o.Requests
	}
	return out
}

// Total returns the number of requests.
func (c *RequestCounter) Total() int {
	n := 0
	for _, o := range c.Costs() {
		n += o.Requests
	}
	return n
}

// WriteUnits returns the write capacity reported: in all, and on the table alone.
func (c *RequestCounter) WriteUnits() (total, table float64) { return c.units(isWrite) }

// ReadUnits returns the read capacity reported: in all, and on the table alone.
func (c *RequestCounter) ReadUnits() (total, table float64) {
	return c.units(func(op string) bool { return !isWrite(op) })
}

func (c *RequestCounter) units(pick func(string) bool) (total, table float64) {
	for op, o := range c.Costs() {
		if pick(op) {
			total += o.Capacity
			table += o.Table
		}
	}
	return total, table
}

func isWrite(op string) bool {
	switch op {
	case "PutItem", "DeleteItem", "UpdateItem", "BatchWriteItem", "TransactWriteItems":
		return true
	}
	return false
}
