package eventstore

import (
	"context"

	"github.com/ecmstore/ecmstore/shared/event"
)

// PositionQuery is a Query in progress on a backend with a global position (memory,
// embedded, PostgreSQL): the cursor is the last position returned, and the page fills
// with the events that match the filter, in position order, until it is full.
type PositionQuery struct {
	// After is the position to continue after (0: the start).
	After  uint64
	filter Filter
	limit  int
	page   Page
}

type positionCursor struct {
	After uint64 `json:"after"`
}

// StartPositionQuery checks the context, the filter and the cursor, and applies the page
// size, before a backend reads anything.
func StartPositionQuery(ctx context.Context, f Filter) (*PositionQuery, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	if err := CheckFilter(f); err != nil {
		return nil, err
	}
	var c positionCursor
	if f.Cursor != "" {
		if err := DecodeCursor(f.Cursor, &c); err != nil {
			return nil, err
		}
	}
	return &PositionQuery{After: c.After, filter: f, limit: PageSize(f.Limit),
		page: Page{Events: []event.Event{}}}, nil
}

// Limit is the page size: a backend that filters itself reads at most Limit+1 events, the
// one past the page telling that there is a next page.
func (q *PositionQuery) Limit() int { return q.limit }

// Take offers the next candidate in position order; it keeps the event if it matches the
// whole filter and returns false once the page is full (a matching event beyond it
// exists, so the page gets a cursor).
func (q *PositionQuery) Take(e event.Event) bool {
	if !q.filter.Matches(e) {
		return true
	}
	if len(q.page.Events) == q.limit {
		q.page.NextCursor = EncodeCursor(positionCursor{After: q.page.Events[q.limit-1].Position})
		return false
	}
	q.page.Events = append(q.page.Events, e)
	return true
}

// Page is the result.
func (q *PositionQuery) Page() Page { return q.page }
