package migrate

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"

	"github.com/ecmstore/ecmstore/shared/event"
	"github.com/ecmstore/ecmstore/shared/eventstore"
)

// Export writes every event of the feed as one JSON object per line, in position order:
// the stored envelope with every field (the position too, for reference; an import gives
// events the target's own positions). It returns the number of events written.
func Export(ctx context.Context, src eventstore.Feed, out io.Writer, progress Progress) (int, error) {
	head, err := src.Head(ctx)
	if err != nil {
		return 0, err
	}
	bw := bufio.NewWriter(out)
	enc := json.NewEncoder(bw)
	enc.SetEscapeHTML(false)
	n := 0
	err = ReadFeed(ctx, src, func(e event.Event) error {
		n++
		if progress != nil && n%500 == 0 {
			progress(e.Position, max(head, e.Position))
		}
		return enc.Encode(e)
	})
	if err != nil {
		return n, err
	}
	if progress != nil {
		progress(head, head)
	}
	return n, bw.Flush()
}

// MaxLineBytes bounds one line of an export: an event is at most
// eventstore.MaxEventBytes encoded, with room for JSON escaping.
const MaxLineBytes = 4 * eventstore.MaxEventBytes

// ReadLines calls fn for every event of a JSON-lines export, in file order.
func ReadLines(in io.Reader, fn func(event.Event) error) error {
	sc := bufio.NewScanner(in)
	sc.Buffer(make([]byte, 64*1024), MaxLineBytes)
	line := 0
	for sc.Scan() {
		line++
		if len(sc.Bytes()) == 0 {
			continue
		}
		var e event.Event
		if err := json.Unmarshal(sc.Bytes(), &e); err != nil {
			return fmt.Errorf("line %d: %w", line, err)
		}
		if e.EventID == "" || e.Version < 1 || e.Timestamp.IsZero() {
			return fmt.Errorf("line %d: an exported event needs eventId, version and timestamp", line)
		}
		if err := fn(e); err != nil {
			return fmt.Errorf("line %d: %w", line, err)
		}
	}
	if err := sc.Err(); err != nil {
		return fmt.Errorf("after line %d: %w", line, err)
	}
	return nil
}

// Import appends the events of a JSON-lines export to the target and returns what it did
// and the manifest of the file (to verify the target against). Importing the same file
// again writes nothing: the events are recognised by id.
func Import(ctx context.Context, in io.Reader, dst eventstore.Store, progress func(events int)) (Stats, *Manifest, error) {
	w := &Writer{Target: dst}
	m := NewManifest()
	err := ReadLines(in, func(e event.Event) error {
		if err := m.Add(e); err != nil {
			return err
		}
		if err := w.Add(ctx, e); err != nil {
			return err
		}
		if progress != nil && w.Stats.Read%500 == 0 {
			progress(w.Stats.Read)
		}
		return nil
	})
	if err == nil {
		err = w.Flush(ctx)
	}
	if progress != nil {
		progress(w.Stats.Read)
	}
	return w.Stats, m, err
}
