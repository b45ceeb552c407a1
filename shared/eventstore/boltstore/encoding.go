package boltstore

import (
	"bytes"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"time"
	"unsafe"

	"github.com/ecmstore/ecmstore/shared/event"
	"github.com/ecmstore/ecmstore/shared/eventstore"
	"github.com/ecmstore/ecmstore/shared/eventstore/internal/arena"
)

// ErrCorrupt reports a stored value or index entry this package cannot read back.
var ErrCorrupt = fmt.Errorf("boltstore: %w in the store file", eventstore.ErrCorrupt)

// A log value is a binary envelope: a fixed header, the envelope's fields, then the
// payload's JSON as raw bytes, which is never parsed on a read. Replay used to spend half
// its CPU re-parsing a JSON envelope per event; this one is read with a few length
// prefixes. The header carries what only the committer knows (the version, and the
// timestamp when the store assigns it), so the rest is encoded by the appending
// goroutine, outside the serial commit path; the position is the key.
//
//	0x02 | version (8B BE) | timestamp (8B BE, µs since the Unix epoch) |
//	schemaVersion (varint) | 8 × (uvarint length, bytes): eventId, eventType,
//	aggregateId, aggregateType, actor, source, correlationId, causationId | payload JSON
//
// Two older formats exist in files written by earlier releases: a plain JSON envelope
// (starts with '{') and 0x01 + the same header + a JSON envelope. Open rewrites them into
// this one (migrateFormat), with this decoder, which reads all three.
const (
	formatJSONHeader = 0x01
	formatBinary     = 0x02
	headerLen        = 1 + 8 + 8 // format, version, timestamp
)

// encodeBody encodes e for the log, with the header left for the committer to fill.
// The payload is compacted, as the JSON envelope did, so a read returns the same bytes
// whichever format holds them.
func encodeBody(e event.Event) ([]byte, error) {
	m := e.Metadata
	fields := [...]string{e.EventID, e.EventType, e.AggregateID, e.AggregateType, m.Actor, m.Source, m.CorrelationID, m.CausationID}
	n := headerLen + binary.MaxVarintLen64 + len(e.Payload) + 4
	for _, f := range fields {
		n += binary.MaxVarintLen32 + len(f)
	}
	v := make([]byte, headerLen, n)
	v[0] = formatBinary
	v = binary.AppendVarint(v, int64(e.SchemaVersion))
	for _, f := range fields {
		v = binary.AppendUvarint(v, uint64(len(f)))
		v = append(v, f...)
	}
	if len(e.Payload) == 0 {
		return append(v, "null"...), nil
	}
	buf := bytes.NewBuffer(v)
	if err := json.Compact(buf, e.Payload); err != nil {
		return nil, fmt.Errorf("boltstore: encode %s: payload: %w", e.EventType, err)
	}
	return buf.Bytes(), nil
}

func setHeader(v []byte, version int64, ts time.Time) {
	binary.BigEndian.PutUint64(v[1:9], uint64(version))
	binary.BigEndian.PutUint64(v[9:17], uint64(ts.UnixMicro()))
}

// decoder turns log values into events. bbolt's values live in its memory map and are
// valid only inside the transaction, so each is copied once, into an arena chunk shared
// with the events decoded before it; the event's strings and payload point into that
// copy, which makes a decoded event cost no allocation of its own.
type decoder struct{ a arena.Arena }

// pageDecoder is for reads that return many events (Load, ReadAll, Query).
func pageDecoder() *decoder { return &decoder{a: *arena.New(32 << 10)} }

func (d *decoder) decode(pos uint64, v []byte) (event.Event, error) {
	var e event.Event
	err := d.decodeInto(&e, pos, v)
	return e, err
}

// decodeInto decodes in place, so that a replay fills its result slice without copying
// each event through the stack.
func (d *decoder) decodeInto(e *event.Event, pos uint64, v []byte) error {
	if len(v) > 0 && v[0] == formatBinary {
		if d.decodeBinary(e, v) {
			e.Position = pos
			return nil
		}
		return fmt.Errorf("%w: event at position %d: truncated envelope", ErrCorrupt, pos)
	}
	var err error
	*e, err = decodeJSON(pos, v)
	return err
}

func (d *decoder) decodeBinary(e *event.Event, v []byte) bool {
	if len(v) < headerLen {
		return false
	}
	b := d.a.Copy(v)
	e.Version = int64(binary.BigEndian.Uint64(b[1:9]))
	e.Timestamp = time.UnixMicro(int64(binary.BigEndian.Uint64(b[9:17]))).UTC()
	sv, n := binary.Varint(b[headerLen:])
	if n <= 0 {
		return false
	}
	e.SchemaVersion = int(sv)
	b = b[headerLen+n:]
	fields := [...]*string{&e.EventID, &e.EventType, &e.AggregateID, &e.AggregateType,
		&e.Metadata.Actor, &e.Metadata.Source, &e.Metadata.CorrelationID, &e.Metadata.CausationID}
	for _, f := range fields {
		l, n := binary.Uvarint(b)
		if n <= 0 || uint64(len(b)-n) < l {
			return false
		}
		*f = ""
		if l > 0 {
			// The bytes are this decoder's own copy and nothing writes them again.
			*f = unsafe.String(&b[n], int(l))
		}
		b = b[n+int(l):]
	}
	if len(b) == 0 {
		return false
	}
	e.Payload = json.RawMessage(b)
	return true
}

// decodeJSON reads the two JSON formats of earlier releases.
func decodeJSON(pos uint64, v []byte) (event.Event, error) {
	var e event.Event
	switch {
	case len(v) > 0 && v[0] == '{':
		if err := json.Unmarshal(v, &e); err != nil {
			return e, fmt.Errorf("%w: event at position %d: %v", ErrCorrupt, pos, err)
		}
		e.Position = pos
		return e, nil
	case len(v) < headerLen || v[0] != formatJSONHeader:
		return e, fmt.Errorf("%w: event at position %d has an unknown format", ErrCorrupt, pos)
	}
	if err := json.Unmarshal(v[headerLen:], &e); err != nil {
		return e, fmt.Errorf("%w: event at position %d: %v", ErrCorrupt, pos, err)
	}
	e.Version = int64(binary.BigEndian.Uint64(v[1:9]))
	e.Timestamp = time.UnixMicro(int64(binary.BigEndian.Uint64(v[9:17]))).UTC()
	e.Position = pos
	return e, nil
}

func u64(v uint64) []byte {
	b := make([]byte, 8)
	binary.BigEndian.PutUint64(b, v)
	return b
}

// Stream keys are "Type#ID" 0x00 version. Valid types and ids cannot contain 0x00, so the
// prefix of one stream is never the prefix of another.
func streamPrefix(key string) []byte { return append([]byte(key), 0) }

func streamKey(key string, version int64) []byte {
	return append(streamPrefix(key), u64(uint64(version))...)
}

// suffixVersion reads the version from a key of the streams or snapshots bucket; ok is
// false for a key of another shape.
func suffixVersion(k, prefix []byte) (int64, bool) {
	if len(k) != len(prefix)+8 {
		return 0, false
	}
	return int64(binary.BigEndian.Uint64(k[len(prefix):])), true
}

// Index kinds within the idx bucket. Values longer than maxIndexValue (only correlation
// ids can be: types are bounded by validation) are indexed under their SHA-256 with the
// kind in upper case, because bbolt refuses keys over 32 KB and long keys bloat branch
// pages. Query filters every hit with Filter.Matches, so a shared prefix only costs reads.
const (
	idxType       = 't'
	idxAggType    = 'a'
	idxCorr       = 'c'
	maxIndexValue = 512
)

func indexPrefix(kind byte, value string) []byte {
	if len(value) > maxIndexValue {
		sum := sha256.Sum256([]byte(value))
		kind -= 'a' - 'A'
		value = hex.EncodeToString(sum[:])
	}
	return append(append([]byte{kind}, value...), 0)
}

func indexKey(kind byte, value string, pos uint64) []byte {
	return append(indexPrefix(kind, value), u64(pos)...)
}
