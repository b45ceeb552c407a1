package api_test

import (
	"bytes"
	"net/http"
	"net/http/httptest"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/ecmstore/ecmstore/shared/api"
	"github.com/ecmstore/ecmstore/shared/eventstore/memstore"
)

// blocking is a route whose first command waits until released, counting its runs.
type blocking struct {
	release chan struct{}
	started chan struct{}
	runs    atomic.Int32
}

func (b *blocking) Routes(s *api.Server) {
	s.Handle("POST /block", func(w http.ResponseWriter, r *http.Request) error {
		if b.runs.Add(1) == 1 { // only the first run waits: a second one answers at once
			b.started <- struct{}{}
			<-b.release
		}
		api.WriteJSON(w, http.StatusOK, map[string]string{"done": "yes"})
		return nil
	})
}

// A keyed request still running in this process is never taken over as abandoned, however
// long it has been pending (queued behind other commands on a loaded process): a second
// request with the key is answered request_in_progress, not run a second time, and once the
// first is done it replays the first answer.
func TestRunningKeyIsNotTakenOver(t *testing.T) {
	var mu sync.Mutex
	now := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	clock := func() time.Time { mu.Lock(); defer mu.Unlock(); return now }
	b := &blocking{release: make(chan struct{}), started: make(chan struct{}, 1)}
	s := api.New(api.Deps{Docs: memstore.NewDocs(), Modules: []api.Module{{Name: "block", Routes: b.Routes}}, Now: clock})
	send := func() *httptest.ResponseRecorder {
		req := httptest.NewRequest(http.MethodPost, "/block", bytes.NewBufferString(`{}`))
		req.Header.Set("Idempotency-Key", "k")
		w := httptest.NewRecorder()
		s.ServeHTTP(w, req)
		return w
	}
	first := make(chan *httptest.ResponseRecorder)
	go func() { first <- send() }()
	<-b.started
	for _, pending := range []time.Duration{time.Second, time.Hour} {
		mu.Lock()
		now = now.Add(pending) // an hour: far past the stale limit
		mu.Unlock()
		if w := send(); w.Code != http.StatusConflict || !bytes.Contains(w.Body.Bytes(), []byte(`"request_in_progress"`)) {
			t.Fatalf("after %v pending: %d %s, want 409 request_in_progress", pending, w.Code, w.Body)
		}
	}
	close(b.release)
	if w := <-first; w.Code != http.StatusOK {
		t.Fatalf("first request: %d %s", w.Code, w.Body)
	}
	if w := send(); w.Code != http.StatusOK || w.Header().Get("Idempotent-Replayed") != "true" {
		t.Fatalf("after the first: %d %s (replayed %q), want its answer replayed", w.Code, w.Body, w.Header().Get("Idempotent-Replayed"))
	}
	if n := b.runs.Load(); n != 1 {
		t.Fatalf("the command ran %d times, want 1", n)
	}
}
