package api_test

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/ecmstore/ecmstore/shared/api"
	"github.com/ecmstore/ecmstore/shared/system"
)

// serve runs the assembled system (memory backend) behind api.NewHTTPServer on a
// loopback port until the test ends.
func serve(t *testing.T, cfg api.ServerConfig) string { return serveWith(t, cfg, api.Access{}) }

// serveWith is serve with the given access control (api.Access{}: the loopback trust).
func serveWith(t *testing.T, cfg api.ServerConfig, access api.Access) string {
	t.Helper()
	sys := system.Assemble(system.Config{EventStore: "memory"}, mustMemory(t), slog.New(slog.DiscardHandler), system.WithAccess(access))
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := api.NewHTTPServer("", sys.Handler, cfg)
	done := make(chan error, 1)
	go func() { done <- srv.Serve(ln) }()
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		_ = srv.Shutdown(ctx)
		if err := <-done; !errors.Is(err, http.ErrServerClosed) {
			t.Errorf("serve: %v", err)
		}
	})
	return ln.Addr().String()
}

// A connection that stalls in any phase is closed by the server: the client never holds
// it (and a server goroutine) for longer than the configured timeout. The test paces its
// writes but never relies on timing for its verdict: it waits, with a generous bound, for
// the server to close the connection.
func TestServerCutsOffSlowConnections(t *testing.T) {
	const timeout = time.Second
	const bound = 30 * time.Second // far above timeout: a loaded machine still passes
	addr := serve(t, api.ServerConfig{ReadHeaderTimeout: timeout, ReadTimeout: timeout, IdleTimeout: timeout})
	for _, tc := range []struct {
		name string
		head string // sent at once
		drip string // then one byte at a time
		// wantStatus is the response the client sees before the close (0: none or net/http's 400).
		wantStatus int
		wantCode   string
	}{
		{"body trickled one byte at a time", "POST /accounts/trickle/deposit HTTP/1.1\r\nHost: x\r\nContent-Length: 100000\r\n\r\n",
			strings.Repeat("1", 100000), http.StatusRequestTimeout, "request_timeout"},
		// net/http handles this itself: it closes, silently or after a plain-text 400,
		// depending on where in a header line the deadline falls.
		{"headers trickled one byte at a time", "GET /healthz HTTP/1.1\r\n", strings.Repeat("X-Slow: y\r\n", 10000), 0, ""},
		{"idle keep-alive connection", "GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n", "", http.StatusOK, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			conn, err := net.Dial("tcp", addr)
			if err != nil {
				t.Fatal(err)
			}
			defer conn.Close()
			read := make(chan []byte, 1)
			go func() { b, _ := io.ReadAll(conn); read <- b }()
			if _, err := io.WriteString(conn, tc.head); err != nil {
				t.Fatal(err)
			}
			deadline := time.After(bound)
			tick := time.NewTicker(50 * time.Millisecond)
			defer tick.Stop()
			var got []byte
			for i := 0; got == nil; {
				select {
				case got = <-read:
				case <-deadline:
					t.Fatalf("connection still open after %v (timeout %v)", bound, timeout)
				case <-tick.C:
					if i < len(tc.drip) {
						_, _ = conn.Write([]byte{tc.drip[i]}) // fails once the server has closed
						i++
					}
				}
			}
			if tc.wantStatus == 0 {
				const plain400 = "HTTP/1.1 400 Bad Request\r\nContent-Type: text/plain; charset=utf-8\r\nConnection: close\r\n\r\n400 Bad Request"
				if len(got) != 0 && string(got) != plain400 {
					t.Fatalf("want no response or net/http's 400, got %q", got)
				}
				return
			}
			res, err := http.ReadResponse(bufio.NewReader(strings.NewReader(string(got))), nil)
			if err != nil {
				t.Fatalf("response %q: %v", got, err)
			}
			body, _ := io.ReadAll(res.Body)
			if res.StatusCode != tc.wantStatus {
				t.Fatalf("status %d, want %d: %s", res.StatusCode, tc.wantStatus, body)
			}
			if tc.wantCode != "" {
				var e struct{ Error struct{ Code string } }
				if json.Unmarshal(body, &e) != nil || e.Error.Code != tc.wantCode {
					t.Fatalf("body %s, want error code %s", body, tc.wantCode)
				}
			}
		})
	}
}

// What a client sees for requests net/http itself refuses before the handler runs: those
// answers are net/http's plain text and cannot be JSON. Oversized headers are caught by
// the handler first (api.MaxHeaderBytes, below the server's limit), so only requests past
// twice that meet net/http's 431.
func TestServerRefusals(t *testing.T) {
	addr := serve(t, api.ServerConfig{})
	big := func(n int) string { return "X-Big: " + strings.Repeat("b", n) + "\r\n" }
	for _, tc := range []struct {
		name    string
		request string
		status  int
		code    string // JSON error code; "" for net/http's plain-text answer
		plain   string // net/http's body
	}{
		{"small headers", "GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n", 200, "", ""},
		{"headers over the handler's limit", "GET /healthz HTTP/1.1\r\nHost: x\r\n" + big(api.MaxHeaderBytes) + "\r\n",
			431, "headers_too_large", ""},
		{"headers just under the server's limit", "GET /healthz HTTP/1.1\r\nHost: x\r\n" + big(2*api.MaxHeaderBytes-200) + "\r\n",
			431, "headers_too_large", ""},
		{"headers over the server's limit", "GET /healthz HTTP/1.1\r\nHost: x\r\n" + big(4*api.MaxHeaderBytes) + "\r\n",
			431, "", "431 Request Header Fields Too Large"},
		{"long request line", "GET /healthz?q=" + strings.Repeat("q", api.MaxHeaderBytes) + " HTTP/1.1\r\nHost: x\r\n\r\n",
			431, "headers_too_large", ""},
		{"unclean path", "POST /accounts//open HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n\r\n", 400, "invalid_path", ""},
		{"asterisk target", "OPTIONS * HTTP/1.1\r\nHost: x\r\n\r\n", 400, "invalid_path", ""},
		{"malformed request line", "GARBAGE\r\n\r\n", 400, "", "400 Bad Request"},
		{"HTTP/1.1 without Host", "GET /healthz HTTP/1.1\r\n\r\n", 400, "", "400 Bad Request: missing required Host header"},
		{"invalid header name", "GET /healthz HTTP/1.1\r\nHost: x\r\nBad Header: 1\r\n\r\n", 400, "", "400 Bad Request: invalid header name"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			conn, err := net.Dial("tcp", addr)
			if err != nil {
				t.Fatal(err)
			}
			defer conn.Close()
			_ = conn.SetDeadline(time.Now().Add(30 * time.Second))
			go func() { _, _ = io.WriteString(conn, tc.request) }()
			res, err := http.ReadResponse(bufio.NewReader(conn), nil)
			if err != nil {
				t.Fatal(err)
			}
			body, _ := io.ReadAll(res.Body)
			if res.StatusCode != tc.status {
				t.Fatalf("status %d, want %d: %s", res.StatusCode, tc.status, body)
			}
			if res.StatusCode >= 300 && res.StatusCode < 400 {
				t.Fatalf("redirect to %s", res.Header.Get("Location"))
			}
			switch {
			case tc.code != "":
				var e struct{ Error struct{ Code string } }
				if res.Header.Get("Content-Type") != "application/json" || json.Unmarshal(body, &e) != nil || e.Error.Code != tc.code {
					t.Fatalf("%s %s, want JSON error %s", res.Header.Get("Content-Type"), body, tc.code)
				}
			case tc.plain != "":
				if !strings.HasPrefix(res.Header.Get("Content-Type"), "text/plain") || string(body) != tc.plain {
					t.Fatalf("%s %q, want net/http's %q", res.Header.Get("Content-Type"), body, tc.plain)
				}
			}
		})
	}
}

func TestServerConfigFromEnv(t *testing.T) {
	for _, tc := range []struct {
		env  map[string]string
		want func(api.ServerConfig) bool
		err  bool
	}{
		{nil, func(c api.ServerConfig) bool { return c == api.DefaultServerConfig() }, false},
		{map[string]string{"HTTP_READ_TIMEOUT": "2s"}, func(c api.ServerConfig) bool { return c.ReadTimeout == 2*time.Second }, false},
		{map[string]string{"HTTP_IDLE_TIMEOUT": "1m"}, func(c api.ServerConfig) bool { return c.IdleTimeout == time.Minute }, false},
		{map[string]string{"HTTP_MAX_HEADER_BYTES": fmt.Sprint(1 << 20)}, func(c api.ServerConfig) bool { return c.MaxHeaderBytes == 1<<20 }, false},
		{map[string]string{"HTTP_READ_TIMEOUT": "soon"}, nil, true},
		{map[string]string{"HTTP_WRITE_TIMEOUT": "-1s"}, nil, true},
		{map[string]string{"HTTP_MAX_HEADER_BYTES": "1024"}, nil, true}, // below the handler's own limit
	} {
		for k, v := range tc.env {
			t.Setenv(k, v)
		}
		c, err := api.ServerConfigFromEnv()
		if (err != nil) != tc.err || (!tc.err && !tc.want(c)) {
			t.Errorf("%v: %+v, %v", tc.env, c, err)
		}
		for k := range tc.env {
			t.Setenv(k, "")
		}
	}
	// Every limit is set on the server, zero fields taking the defaults.
	srv := api.NewHTTPServer("", http.NotFoundHandler(), api.ServerConfig{ReadTimeout: time.Second})
	d := api.DefaultServerConfig()
	if srv.ReadTimeout != time.Second || srv.ReadHeaderTimeout != d.ReadHeaderTimeout || srv.WriteTimeout != d.WriteTimeout ||
		srv.IdleTimeout != d.IdleTimeout || srv.MaxHeaderBytes != d.MaxHeaderBytes {
		t.Fatalf("server limits: %+v", srv)
	}
}

func TestHeaderActor(t *testing.T) {
	for _, tc := range []struct{ header, want string }{
		{"", "anonymous"},
		{"alice", "alice"},
		{"José", "José"},
		{strings.Repeat("a", 256), strings.Repeat("a", 256)},
		{strings.Repeat("a", 257), strings.Repeat("a", 257)}, // the store's field check refuses it (apitest)
		{"bad\xff", "bad\xff"},
	} {
		r, _ := http.NewRequest("GET", "/", nil)
		if tc.header != "" {
			r.Header.Set("X-Actor", tc.header)
		}
		if got := api.HeaderActor(r); got != tc.want {
			t.Errorf("X-Actor %q: actor %q, want %q", tc.header, got, tc.want)
		}
	}
}
