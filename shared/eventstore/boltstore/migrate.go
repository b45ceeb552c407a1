package boltstore

import (
	"encoding/binary"

	bolt "go.etcd.io/bbolt"
)

// The meta bucket holds the file's format: which encoding every log value has. It is
// written by Open only, so it costs no commit a page.
var (
	bMeta      = []byte("meta")
	kFormat    = []byte("format")
	fileFormat = []byte{formatBinary}
)

// migrateBatch bounds one migration transaction: a file of millions of events is rewritten
// in steps rather than in one transaction holding every dirty page in memory.
const migrateBatch = 20000

// migrateFormat rewrites the log values of a file written by an earlier release (JSON
// envelopes) into the binary envelope, then records the format, so that reads never parse
// JSON. Each step is a transaction of its own and skips values already rewritten, so an
// interrupted migration resumes at the next Open.
func migrateFormat(db *bolt.DB) (migrated int, err error) {
	done := false
	err = db.View(func(tx *bolt.Tx) error {
		m := tx.Bucket(bMeta)
		done = m != nil && len(m.Get(kFormat)) == 1 && m.Get(kFormat)[0] >= formatBinary
		return nil
	})
	if err != nil || done {
		return 0, err
	}
	var next []byte // first log key of the next step; nil: the start
	for {
		err := db.Update(func(tx *bolt.Tx) error {
			b := tx.Bucket(bLog)
			c := b.Cursor()
			k, v := c.First()
			if next != nil {
				k, v = c.Seek(next)
			}
			next = nil
			// Collected first, then put: bbolt cursors are not stable across writes.
			var keys, vals [][]byte
			for n := 0; k != nil; k, v = c.Next() {
				if n == migrateBatch {
					next = append([]byte(nil), k...)
					break
				}
				n++
				if len(v) > 0 && v[0] == formatBinary {
					continue
				}
				raw, err := reencode(binary.BigEndian.Uint64(k), v)
				if err != nil {
					return err
				}
				keys, vals = append(keys, append([]byte(nil), k...)), append(vals, raw)
			}
			for i := range keys {
				if err := b.Put(keys[i], vals[i]); err != nil {
					return err
				}
			}
			migrated += len(keys)
			return nil
		})
		if err != nil {
			return migrated, err
		}
		if next == nil {
			break
		}
	}
	return migrated, db.Update(func(tx *bolt.Tx) error {
		m, err := tx.CreateBucketIfNotExists(bMeta)
		if err != nil {
			return err
		}
		return m.Put(kFormat, fileFormat)
	})
}

// reencode turns a log value of a JSON format into the binary envelope.
func reencode(pos uint64, v []byte) ([]byte, error) {
	e, err := decodeJSON(pos, v)
	if err != nil {
		return nil, err
	}
	raw, err := encodeBody(e)
	if err != nil {
		return nil, err
	}
	setHeader(raw, e.Version, e.Timestamp)
	return raw, nil
}
