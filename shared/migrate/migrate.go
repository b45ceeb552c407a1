// Package migrate copies an event store to another backend, event for event: ids,
// versions, timestamps, schema versions, metadata and payloads as stored. It also writes
// and reads the JSON-lines export format and proves a copy complete with per-stream
// digests.
//
// A copy is safe to repeat. Every event keeps its id, the stores recognise ids, and each
// stream is appended at the version the source gave it, so a re-run after an
// interruption skips what the target already holds (checked id by id) and never writes
// an event twice. A checkpoint (the last source position fully copied) only saves the
// re-run from re-reading what is known to be done.
package migrate

import (
	"context"
	"errors"
	"fmt"

	"github.com/ecmstore/ecmstore/shared/event"
	"github.com/ecmstore/ecmstore/shared/eventstore"
)

// ErrDiverged: the target holds, at a version the source is copying, an event with
// another id. Nothing is overwritten: the operator decides.
var ErrDiverged = errors.New("target diverges from source")

// DivergedError names the first event where target and source disagree.
type DivergedError struct {
	Stream  eventstore.Stream
	Version int64
	Source  string // event id in the source
	Target  string // event id in the target ("" when the target has no event there)
}

func (e *DivergedError) Error() string {
	if e.Target == "" {
		return fmt.Sprintf("%s v%d: target cannot take source event %s (its stream is behind or the id is used elsewhere)",
			e.Stream, e.Version, e.Source)
	}
	return fmt.Sprintf("%s v%d: target holds event %s, source has %s", e.Stream, e.Version, e.Target, e.Source)
}

func (e *DivergedError) Is(target error) bool { return target == ErrDiverged }

// Stats counts what a copy or import did.
type Stats struct {
	Read    int // source events seen
	Written int // events appended to the target
	Skipped int // events the target already held (a resumed run)
}

// Writer appends events read in source order (each stream's events in version order) to
// a target store, batching consecutive events of one stream into one append. The global
// order of the source is kept: a target with a feed lists the events in the same order.
//
// A Writer starts out resuming: what an earlier, interrupted run wrote is a prefix of
// what this run writes (both follow the source's order), so until it meets the first
// event the target lacks, it reads each run from the target first and skips what is
// there. That keeps the counts honest (a store answers a repeated append with the
// stored events, as if it had written them) and costs one read per run, only there.
type Writer struct {
	Target eventstore.Store
	Stats  Stats

	run      []event.Event
	bytes    int
	appended bool // the first event the target lacked has been written: resuming is over
}

// appendLimit keeps each append well inside every backend's transaction limits
// (DynamoDB writes an item per event plus a guard in one transaction).
const (
	appendLimit      = 50
	appendBytesLimit = eventstore.MaxAppendBytes / 4
)

// Add queues one event; it writes the queued run when e starts another stream or the run
// is full.
func (w *Writer) Add(ctx context.Context, e event.Event) error {
	w.Stats.Read++
	n := eventstore.EncodedSize(e)
	if len(w.run) > 0 && (eventstore.StreamOf(w.run[0]) != eventstore.StreamOf(e) ||
		len(w.run) == appendLimit || w.bytes+n > appendBytesLimit ||
		e.Version != w.run[len(w.run)-1].Version+1) {
		if err := w.Flush(ctx); err != nil {
			return err
		}
	}
	w.run = append(w.run, e)
	w.bytes += n
	return nil
}

// Flush writes the queued run.
func (w *Writer) Flush(ctx context.Context) error {
	if len(w.run) == 0 {
		return nil
	}
	run := w.run
	w.run, w.bytes = nil, 0
	if !w.appended {
		held, err := heldPrefix(ctx, w.Target, run)
		if err != nil {
			return err
		}
		w.Stats.Skipped += held
		if run = run[held:]; len(run) == 0 {
			return nil
		}
		w.appended = true
	}
	written, err := put(ctx, w.Target, run)
	w.Stats.Written += written
	if err != nil {
		return err
	}
	w.Stats.Skipped += len(run) - written
	return nil
}

// put appends run (events of one stream, consecutive versions) at the versions the
// source gave them and returns how many it wrote; events the target already holds with
// the same ids are skipped.
func put(ctx context.Context, dst eventstore.Store, run []event.Event) (int, error) {
	st := eventstore.StreamOf(run[0])
	stored, err := dst.Append(ctx, st, run[0].Version-1, drafts(run))
	if err == nil && sameIDs(stored, run) {
		return len(run), nil
	}
	if err != nil && !errors.Is(err, eventstore.ErrConflict) && !errors.Is(err, eventstore.ErrDuplicateEvent) {
		return 0, fmt.Errorf("append %s v%d–%d: %w", st, run[0].Version, run[len(run)-1].Version, err)
	}
	// The target holds part of the run already (an earlier, interrupted run wrote it,
	// perhaps batched differently): skip what it holds, checking each id.
	held, lerr := heldPrefix(ctx, dst, run)
	if lerr != nil {
		return 0, lerr
	}
	rest := run[held:]
	if len(rest) == 0 {
		return 0, nil
	}
	if held == 0 {
		// Nothing of the run is there, yet the append was refused: the stream is behind
		// (an earlier event is missing) or an id is used by another stream.
		return 0, &DivergedError{Stream: st, Version: run[0].Version, Source: run[0].EventID}
	}
	n, err := put(ctx, dst, rest)
	return n, err
}

// drafts strips what the target assigns itself (version and position are the target's;
// the version comes out equal because each run is appended right after its predecessor).
func drafts(run []event.Event) []event.Event {
	out := make([]event.Event, len(run))
	for i, e := range run {
		e.Version, e.Position = 0, 0
		out[i] = e
	}
	return out
}

func sameIDs(stored, run []event.Event) bool {
	if len(stored) != len(run) {
		return false
	}
	for i := range stored {
		if stored[i].EventID != run[i].EventID || stored[i].Version != run[i].Version {
			return false
		}
	}
	return true
}

// heldPrefix returns how many of the run's events the target holds already, checking
// that they are the same events (same ids at the same versions).
func heldPrefix(ctx context.Context, dst eventstore.Store, run []event.Event) (int, error) {
	st := eventstore.StreamOf(run[0])
	have, err := dst.Load(ctx, st, eventstore.Range{From: run[0].Version, To: run[len(run)-1].Version})
	if err != nil {
		return 0, fmt.Errorf("load %s to resume: %w", st, err)
	}
	for i, h := range have {
		if i >= len(run) || h.EventID != run[i].EventID {
			src := ""
			if i < len(run) {
				src = run[i].EventID
			}
			return 0, &DivergedError{Stream: st, Version: h.Version, Source: src, Target: h.EventID}
		}
	}
	return len(have), nil
}
