package projection

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/ecmstore/ecmstore/shared/docstore"
	"github.com/ecmstore/ecmstore/shared/event"
	"github.com/ecmstore/ecmstore/shared/eventstore"
)

// DeadLetters lists every parked event of every projection.
func (en *Engine) DeadLetters(ctx context.Context) ([]DeadLetter, error) {
	out := []DeadLetter{}
	for _, p := range en.projections {
		err := en.Docs.List(ctx, parkedCollection(p.Name()), func(_ string, raw json.RawMessage) error {
			d, err := decodeDeadLetter(raw)
			if err == nil {
				out = append(out, d)
			}
			return err
		})
		if err != nil {
			return nil, err
		}
	}
	return out, nil
}

// IsParked reports whether a projection has a dead letter for the stream.
func (en *Engine) IsParked(ctx context.Context, projection string, st eventstore.Stream) (bool, error) {
	p, err := en.Lookup(projection)
	if err != nil {
		return false, err
	}
	var d DeadLetter
	return en.Docs.Get(ctx, parkedCollection(p.Name()), st.Key(), &d)
}

// RedriveResult summarises a redrive.
type RedriveResult struct {
	Redriven  int          `json:"redriven"`
	Remaining []DeadLetter `json:"remaining"`
}

// Redrive re-applies every parked aggregate in order, from the parked event on, loading
// the events from the store. A dead letter whose aggregate now applies cleanly is
// removed; one that fails again stays parked with the new error. Running it twice changes
// nothing.
func (en *Engine) Redrive(ctx context.Context) (RedriveResult, error) {
	res := RedriveResult{Remaining: []DeadLetter{}}
	dls, err := en.DeadLetters(ctx)
	if err != nil {
		return res, err
	}
	for _, d := range dls {
		ok, err := en.RedriveOne(ctx, d.Projection, d.Stream())
		if err != nil && IsTransient(err) {
			return res, err
		}
		if ok {
			res.Redriven++
			continue
		}
		var cur DeadLetter
		if found, _ := en.Docs.Get(ctx, parkedCollection(d.Projection), d.Stream().Key(), &cur); found {
			res.Remaining = append(res.Remaining, cur)
		}
	}
	return res, nil
}

// RedriveOne re-applies one parked aggregate for one projection. It reports whether the
// aggregate is now unparked; a persistent failure updates the dead letter's error.
//
// A dead letter is never lost: it is deleted in the document-store transaction that
// commits the last of the events it held back (catchUp with redriving), so until that
// commits it stays listed, and a failure before or at that point leaves it where it was.
// Events appended while the aggregate was parked and delivered in the meantime were
// skipped (Blocked); the catch-up after the unpark takes them. Should that catch-up fail,
// the aggregate is parked again rather than left with skipped events nobody will
// deliver: under the failing event when the projection rejected one, else under the dead
// letter just redriven, with the new error (its next redrive resumes from the guard).
func (en *Engine) RedriveOne(ctx context.Context, projection string, st eventstore.Stream) (bool, error) {
	p, err := en.Lookup(projection)
	if err != nil {
		return false, err
	}
	lock := en.locks[p.Name()]
	lock.RLock()
	defer lock.RUnlock()
	var parked DeadLetter
	wasParked, err := en.Docs.Get(ctx, parkedCollection(p.Name()), st.Key(), &parked)
	if err != nil {
		return false, err
	}
	unparked, cause := en.catchUp(ctx, p, st, true)
	if cause != nil {
		if IsTransient(cause) {
			return false, cause
		}
		var ae *applyError
		failed := errors.As(cause, &ae)
		uerr := en.Docs.Update(ctx, func(ctx context.Context, tx docstore.Tx) error {
			var d DeadLetter
			ok, err := tx.Get(ctx, parkedCollection(p.Name()), st.Key(), &d)
			if err != nil || !ok {
				return err
			}
			d.Attempts++
			d.Error = cause.Error()
			if failed {
				d.Version, d.EventID, d.EventType, d.Event = ae.event.Version, ae.event.EventID, ae.event.EventType, ae.event
			}
			return tx.Put(ctx, parkedCollection(p.Name()), st.Key(), d)
		})
		return false, errors.Join(cause, uerr)
	}
	if !unparked {
		return false, nil
	}
	// Events that arrived while the aggregate was still parked were skipped: take them now.
	if _, err := en.catchUp(ctx, p, st, false); err != nil {
		var ae *applyError
		if errors.As(err, &ae) && !IsTransient(err) {
			return false, en.park(ctx, p, ae.event, err)
		}
		if !wasParked {
			return false, err // nothing was parked to begin with: the caller retries
		}
		return false, errors.Join(err, en.repark(ctx, p, parked, err))
	}
	return true, nil
}

// repark puts a redriven dead letter back after the catch-up behind it failed, unless the
// aggregate was parked again meanwhile, and tells the sink again: a queue consumer may
// already have taken the first message as done while the dead letter was briefly gone
// (a second message for one dead letter is harmless, see ddbstream.Redriver).
func (en *Engine) repark(ctx context.Context, p Projection, d DeadLetter, cause error) error {
	d.Attempts++
	d.Notified = false
	d.Error = "redriven, but the catch-up behind it failed: " + cause.Error()
	put := false
	err := en.Docs.Update(ctx, func(ctx context.Context, tx docstore.Tx) error {
		var cur DeadLetter
		exists, err := tx.Get(ctx, parkedCollection(p.Name()), d.Stream().Key(), &cur)
		put = err == nil && !exists
		if !put {
			return err
		}
		return tx.Put(ctx, parkedCollection(p.Name()), d.Stream().Key(), d)
	})
	if err != nil {
		return fmt.Errorf("re-park %s: %w", d.Stream(), err)
	}
	if !put {
		return nil
	}
	return en.notify(ctx, p, d)
}

// eachStream calls fn once for every stream of an aggregate type with events since t.
func (en *Engine) eachStream(ctx context.Context, typ string, since time.Time, fn func(eventstore.Stream) error) error {
	seen := map[string]bool{}
	f := eventstore.Filter{AggregateType: typ, Since: since, Limit: eventstore.MaxPageSize}
	for {
		page, err := en.Store.Query(ctx, f)
		if err != nil {
			return err
		}
		for _, e := range page.Events {
			st := eventstore.StreamOf(e)
			if seen[st.Key()] {
				continue
			}
			seen[st.Key()] = true
			if err := fn(st); err != nil {
				return err
			}
		}
		if page.NextCursor == "" {
			return nil
		}
		f.Cursor = page.NextCursor
	}
}

func (en *Engine) setStatus(ctx context.Context, name string, fn func(*statusDoc)) error {
	return en.raw().Update(ctx, func(ctx context.Context, tx docstore.Tx) error {
		var s statusDoc
		if _, err := tx.Get(ctx, statusCollection, name, &s); err != nil {
			return err
		}
		fn(&s)
		return tx.Put(ctx, statusCollection, name, s)
	})
}

// Statuses reports every projection; head is the feed head (nil where there is none).
func (en *Engine) Statuses(ctx context.Context, head *uint64) ([]Status, error) {
	var out []Status
	for _, p := range en.projections {
		var sd statusDoc
		if _, err := en.raw().Get(ctx, statusCollection, p.Name(), &sd); err != nil {
			return nil, err
		}
		st := Status{Name: p.Name(), Status: "running", Checkpoint: sd.Checkpoint, RebuiltAt: sd.RebuiltAt, LastRecord: sd.LastRecord}
		job, found, err := en.RebuildJob(ctx, p.Name())
		if err != nil {
			return nil, err
		}
		if found {
			pr := job.Progress()
			st.Rebuild = &pr
			if job.Active() {
				st.Status = "rebuilding"
			}
		}
		if head != nil {
			lag := *head - min(*head, sd.Checkpoint)
			st.Lag = &lag
		}
		err = en.Docs.List(ctx, parkedCollection(p.Name()), func(_ string, raw json.RawMessage) error {
			st.Parked++
			if d, err := decodeDeadLetter(raw); err == nil {
				st.LastError = d.Error
			}
			return nil
		})
		if err != nil {
			return nil, err
		}
		if st.Parked > 0 && st.Status == "running" {
			st.Status = "blocked"
		}
		out = append(out, st)
	}
	return out, nil
}

// RecordStreamPosition notes, for every projection of the engine, the last stream record
// it processed (the projector function after each batch), so that GET /projections,
// served by another function, reports the stream path's lag.
func (en *Engine) RecordStreamPosition(ctx context.Context, pos StreamPosition) error {
	if pos.ProcessedAt.IsZero() {
		pos.ProcessedAt = en.now()
	}
	if !pos.CreatedAt.IsZero() {
		pos.AgeSeconds = max(0, pos.ProcessedAt.Sub(pos.CreatedAt).Seconds())
	}
	return en.raw().Update(ctx, func(ctx context.Context, tx docstore.Tx) error {
		for _, p := range en.projections {
			var s statusDoc
			if _, err := tx.Get(ctx, statusCollection, p.Name(), &s); err != nil {
				return err
			}
			s.LastRecord = &pos
			if err := tx.Put(ctx, statusCollection, p.Name(), s); err != nil {
				return err
			}
		}
		return nil
	})
}

// Checkpoint returns a projection's feed position.
func (en *Engine) Checkpoint(ctx context.Context, name string) (uint64, error) {
	var sd statusDoc
	_, err := en.raw().Get(ctx, statusCollection, name, &sd)
	return sd.Checkpoint, err
}

func (en *Engine) saveCheckpoint(ctx context.Context, name string, last event.Event) error {
	now := en.now()
	return en.setStatus(ctx, name, func(s *statusDoc) {
		if last.Position > s.Checkpoint {
			s.Checkpoint = last.Position
			s.LastRecord = &StreamPosition{Position: last.Position, CreatedAt: last.Timestamp, ProcessedAt: now,
				AgeSeconds: max(0, now.Sub(last.Timestamp).Seconds())}
		}
	})
}
