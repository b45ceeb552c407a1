package pgstore

import (
	"context"
	"time"

	"github.com/jackc/pgx/v5"
)

// Notify returns a channel signalled when appends may have made new events readable, so
// that a feed reader reacts at once instead of at its next poll; readers keep polling on
// a timer too, because a notification can be lost while the listener reconnects. The
// signal is coalesced (one pending at most), also sent each time the listener
// (re)connects, and the channel closes when ctx ends or the store closes.
//
// Each call listens on a dedicated connection outside the pool, so that a listener
// neither takes one of the pool's connections for good nor keeps Close waiting.
func (s *Store) Notify(ctx context.Context) <-chan struct{} {
	ch := make(chan struct{}, 1)
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		close(ch)
		return ch
	}
	s.listeners.Add(1)
	ctx, cancel := context.WithCancel(ctx)
	stop := context.AfterFunc(s.closing, cancel)
	go func() {
		defer s.listeners.Done()
		defer close(ch)
		defer stop()
		defer cancel()
		s.listen(ctx, ch)
	}()
	return ch
}

func (s *Store) listen(ctx context.Context, ch chan struct{}) {
	signal := func() {
		select {
		case ch <- struct{}{}:
		default:
		}
	}
	backoff := 100 * time.Millisecond
	for ctx.Err() == nil {
		conn, err := pgx.ConnectConfig(ctx, s.pool.Config().ConnConfig.Copy())
		if err == nil {
			if _, err = conn.Exec(ctx, "LISTEN "+notifyChannel); err == nil {
				backoff = 100 * time.Millisecond
				signal() // appends may have committed while nobody was listening
				for {
					if _, err = conn.WaitForNotification(ctx); err != nil {
						break
					}
					signal()
				}
			}
			closeCtx, cancel := context.WithTimeout(context.Background(), time.Second)
			_ = conn.Close(closeCtx)
			cancel()
		}
		select {
		case <-ctx.Done():
		case <-time.After(backoff):
		}
		backoff = min(2*backoff, 5*time.Second)
	}
}
