package boltstore

import (
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"time"

	"github.com/ecmstore/ecmstore/shared/event"
	"github.com/ecmstore/ecmstore/shared/eventstore"
)

// ErrCorrupt reports a stored value or index entry this package cannot read back.
var ErrCorrupt = fmt.Errorf("boltstore: %w in the store file", eventstore.ErrCorrupt)

// A log value is a fixed header followed by the JSON envelope. The header carries what
// only the committer knows (the version, and the timestamp when the store assigns it), so
// the JSON is encoded by the appending goroutine, outside the serial commit path; the
// position is the key. Files written before the header existed hold plain JSON, which
// starts with '{' and is still read.
const (
	formatHeader = 0x01
	headerLen    = 1 + 8 + 8 // format, version, timestamp (µs since the Unix epoch)
)

// encodeBody encodes e for the log, with the header left for the committer to fill.
func encodeBody(e event.Event) ([]byte, error) {
	e.Version, e.Position, e.Timestamp = 0, 0, time.Time{}
	raw, err := json.Marshal(e)
	if err != nil {
		return nil, fmt.Errorf("boltstore: encode %s: %w", e.EventType, err)
	}
	v := make([]byte, headerLen+len(raw))
	v[0] = formatHeader
	copy(v[headerLen:], raw)
	return v, nil
}

func setHeader(v []byte, version int64, ts time.Time) {
	binary.BigEndian.PutUint64(v[1:9], uint64(version))
	binary.BigEndian.PutUint64(v[9:17], uint64(ts.UnixMicro()))
}

func decodeEvent(pos uint64, v []byte) (event.Event, error) {
	var e event.Event
	switch {
	case len(v) > 0 && v[0] == '{':
		if err := json.Unmarshal(v, &e); err != nil {
			return e, fmt.Errorf("%w: event at position %d: %v", ErrCorrupt, pos, err)
		}
		e.Position = pos
		return e, nil
	case len(v) < headerLen || v[0] != formatHeader:
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
