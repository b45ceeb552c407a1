package migrate

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"hash"
	"sort"
	"strings"
	"time"

	"github.com/ecmstore/ecmstore/shared/event"
	"github.com/ecmstore/ecmstore/shared/eventstore"
)

// ErrMismatch: a verified target does not hold exactly the source's events.
var ErrMismatch = errors.New("verification failed")

// Canonical is the encoding digests are computed over: every field the stores keep
// except the position (each backend numbers its own global order), with the timestamp in
// UTC and the payload and metadata re-encoded with sorted keys and no insignificant
// space. PostgreSQL keeps JSON as jsonb (the value, not the text), so digests compare
// values, which is what every backend promises to keep.
func Canonical(e event.Event) ([]byte, error) {
	payload, err := canonicalJSON(e.Payload)
	if err != nil {
		return nil, fmt.Errorf("%s v%d: payload: %w", eventstore.StreamOf(e), e.Version, err)
	}
	return json.Marshal(struct {
		EventID       string          `json:"eventId"`
		EventType     string          `json:"eventType"`
		AggregateType string          `json:"aggregateType"`
		AggregateID   string          `json:"aggregateId"`
		Version       int64           `json:"version"`
		SchemaVersion int             `json:"schemaVersion"`
		Timestamp     string          `json:"timestamp"`
		Metadata      event.Metadata  `json:"metadata"`
		Payload       json.RawMessage `json:"payload"`
	}{e.EventID, e.EventType, e.AggregateType, e.AggregateID, e.Version, e.SchemaVersion,
		e.Timestamp.UTC().Format(time.RFC3339Nano), e.Metadata, payload})
}

func canonicalJSON(raw json.RawMessage) (json.RawMessage, error) {
	if len(bytes.TrimSpace(raw)) == 0 {
		return json.RawMessage("null"), nil
	}
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.UseNumber() // numbers as written: no float rounding
	var v any
	if err := dec.Decode(&v); err != nil {
		return nil, err
	}
	return json.Marshal(v)
}

// Digest sums one stream: its event count, last version and SHA-256 over the canonical
// encoding of its events in version order (each followed by a newline).
type Digest struct {
	Stream  eventstore.Stream `json:"stream"`
	Events  int               `json:"events"`
	Version int64             `json:"version"`
	SHA256  string            `json:"sha256"`
}

// Manifest is the digest of every stream of a store, built from its events in order.
type Manifest struct {
	streams map[string]*running
	order   []string
	events  int
}

type running struct {
	d Digest
	h hash.Hash
}

// NewManifest returns an empty manifest.
func NewManifest() *Manifest { return &Manifest{streams: map[string]*running{}} }

// Add folds the next event of its stream in. Each stream's events must come in version
// order, from version 1, without gaps.
func (m *Manifest) Add(e event.Event) error {
	st := eventstore.StreamOf(e)
	r := m.streams[st.Key()]
	if r == nil {
		r = &running{d: Digest{Stream: st}, h: sha256.New()}
		m.streams[st.Key()] = r
		m.order = append(m.order, st.Key())
	}
	if e.Version != r.d.Version+1 {
		return fmt.Errorf("%s: version %d follows %d", st, e.Version, r.d.Version)
	}
	b, err := Canonical(e)
	if err != nil {
		return err
	}
	r.h.Write(append(b, '\n'))
	r.d.Events++
	r.d.Version = e.Version
	m.events++
	return nil
}

// Events is the number of events added.
func (m *Manifest) Events() int { return m.events }

// Digests returns every stream's digest, sorted by stream key.
func (m *Manifest) Digests() []Digest {
	keys := append([]string(nil), m.order...)
	sort.Strings(keys)
	out := make([]Digest, len(keys))
	for i, k := range keys {
		r := m.streams[k]
		out[i] = r.d
		out[i].SHA256 = hex.EncodeToString(r.h.Sum(nil))
	}
	return out
}

// StreamDigest digests one stream as a store returns it.
func StreamDigest(ctx context.Context, s eventstore.Store, st eventstore.Stream) (Digest, error) {
	events, err := s.Load(ctx, st, eventstore.Range{})
	if err != nil {
		return Digest{}, err
	}
	m := NewManifest()
	for _, e := range events {
		if err := m.Add(e); err != nil {
			return Digest{}, err
		}
	}
	if len(events) == 0 {
		return Digest{Stream: st, SHA256: hex.EncodeToString(sha256.New().Sum(nil))}, nil
	}
	return m.Digests()[0], nil
}

// Mismatch is one stream whose target digest differs from the source's.
type Mismatch struct {
	Source Digest `json:"source"`
	Target Digest `json:"target"`
}

// Report is the outcome of a verification.
type Report struct {
	Streams    int        `json:"streams"`
	Events     int        `json:"events"`
	Mismatches []Mismatch `json:"mismatches,omitempty"`
}

// MismatchError lists the streams that differ (the first few in the message).
type MismatchError struct{ Report Report }

func (e *MismatchError) Error() string {
	var b strings.Builder
	fmt.Fprintf(&b, "%d of %d streams differ between source and target", len(e.Report.Mismatches), e.Report.Streams)
	for i, m := range e.Report.Mismatches {
		if i == 5 {
			fmt.Fprintf(&b, "; …")
			break
		}
		fmt.Fprintf(&b, "; %s: source %d events (v%d, sha256 %.12s), target %d events (v%d, sha256 %.12s)",
			m.Source.Stream, m.Source.Events, m.Source.Version, m.Source.SHA256, m.Target.Events, m.Target.Version, m.Target.SHA256)
	}
	return b.String()
}

func (e *MismatchError) Is(target error) bool { return target == ErrMismatch }

// Verify loads every stream of the manifest from the target and compares digests: the
// target must hold exactly the manifest's events in those streams, field for field.
func Verify(ctx context.Context, dst eventstore.Store, m *Manifest, progress Progress) (Report, error) {
	want := m.Digests()
	rep := Report{Streams: len(want), Events: m.Events()}
	for i, d := range want {
		got, err := StreamDigest(ctx, dst, d.Stream)
		if err != nil {
			return rep, fmt.Errorf("verify %s: %w", d.Stream, err)
		}
		if got != d {
			rep.Mismatches = append(rep.Mismatches, Mismatch{Source: d, Target: got})
		}
		if progress != nil && (i%100 == 99 || i == len(want)-1) {
			progress(uint64(i+1), uint64(len(want)))
		}
	}
	if len(rep.Mismatches) > 0 {
		return rep, &MismatchError{Report: rep}
	}
	return rep, nil
}

// VerifyCount checks that a target with a feed holds no events beyond the manifest's
// (a copy into a store that was not empty). A target without a feed (DynamoDB) has no
// cheap count; Verify's stream-by-stream check is what holds there.
func VerifyCount(ctx context.Context, dst eventstore.Store, m *Manifest) error {
	feed, ok := dst.(eventstore.Feed)
	if !ok {
		return nil
	}
	n := 0
	if err := ReadFeed(ctx, feed, func(event.Event) error { n++; return nil }); err != nil {
		return fmt.Errorf("count target events: %w", err)
	}
	if n != m.Events() {
		return fmt.Errorf("%w: target holds %d events, source %d", ErrMismatch, n, m.Events())
	}
	return nil
}
