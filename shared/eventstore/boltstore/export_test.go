package boltstore

// WithNoSync turns off bbolt's fsync at commit: an acknowledged append is then only in
// the page cache. Test only, so that the durability test can show it catches this.
func WithNoSync() Option { return func(s *Store) { s.noSync = true } }
