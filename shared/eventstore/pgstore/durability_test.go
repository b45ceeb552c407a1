package pgstore_test

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/ecmstore/ecmstore/shared/emulator"
	"github.com/ecmstore/ecmstore/shared/event"
	"github.com/ecmstore/ecmstore/shared/eventstore"
	"github.com/ecmstore/ecmstore/shared/eventstore/pgstore"
)

// An append is acknowledged when its commit returns. That means durable only if the
// server flushed the commit's WAL first: fsync on at the server, and synchronous_commit
// not off in the session that commits — also when the database's default is off, a
// common bulk-load tuning, which the store overrides for its own sessions.
//
// The settings alone do not prove the flush happens, so the test also watches it: strace
// attaches to the whole server (the postmaster, following its forks, and every process it
// runs, since any of them may flush WAL that covers the store's commit), and every
// response the store's server process sends for an append must come after an fsync or
// fdatasync of a WAL file that followed the previous response. A session with
// synchronous_commit = off shows that the check can fail.
func TestCommitWaitsForTheWALFlush(t *testing.T) {
	strace, err := exec.LookPath("strace")
	if err != nil {
		t.Fatalf("strace is needed to check that commits wait for the WAL flush, and it is not installed: "+
			"run `make strace` (Debian package strace): %v", err)
	}
	dsn := emulator.Postgres(t)
	ctx := context.Background()
	admin, err := pgx.Connect(ctx, dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer admin.Close(ctx)
	for setting, want := range map[string]string{"fsync": "on", "wal_sync_method": "fdatasync"} {
		var got string
		if err := admin.QueryRow(ctx, "SELECT current_setting($1)", setting).Scan(&got); err != nil {
			t.Fatal(err)
		}
		if got != want {
			t.Fatalf("server %s = %s, want %s: commits are not flushed the way this test watches", setting, got, want)
		}
	}
	if _, err := admin.Exec(ctx, "ALTER DATABASE "+pgx.Identifier{admin.Config().Database}.Sanitize()+" SET synchronous_commit = off"); err != nil {
		t.Fatal(err)
	}

	for _, tc := range []struct {
		name          string
		sessionSync   string // set on the store's sessions by WithPoolConfig; "" = the store's choice
		wantSetting   string
		wantViolation bool
	}{
		{"store sessions, database default off", "", "on", false},
		{"session with synchronous_commit off", "off", "off", true}, // proves the check can fail
	} {
		t.Run(tc.name, func(t *testing.T) {
			// One connection: the process serving it is the one to watch.
			s := open(t, dsn, pgstore.WithPoolConfig(func(c *pgxpool.Config) {
				c.MaxConns, c.MinConns = 1, 1
				if tc.sessionSync != "" {
					c.ConnConfig.RuntimeParams["synchronous_commit"] = tc.sessionSync
				}
			}))
			var setting string
			var backend int
			if err := s.Pool().QueryRow(ctx, `SELECT current_setting('synchronous_commit'), pg_backend_pid()`).Scan(&setting, &backend); err != nil {
				t.Fatal(err)
			}
			if setting != tc.wantSetting {
				t.Fatalf("synchronous_commit in the store's session = %s, want %s", setting, tc.wantSetting)
			}
			st := eventstore.Stream{Type: "Durable", ID: fmt.Sprint("d-", time.Now().UnixNano())}
			// The first append prepares the statements (a round trip that commits nothing).
			if _, err := s.Append(ctx, st, 0, []event.Event{event.MustNew("Tick", 0)}); err != nil {
				t.Fatal(err)
			}

			trace := filepath.Join(t.TempDir(), "strace.out")
			stop := traceProcesses(t, strace, trace, serverProcesses(t, backend)...)
			const appends = 20
			for v := int64(1); v <= appends; v++ {
				if _, err := s.Append(ctx, st, v, []event.Event{event.MustNew("Tick", v)}); err != nil {
					t.Fatal(err)
				}
			}
			stop()
			raw, err := os.ReadFile(trace)
			if err != nil {
				t.Fatal(err)
			}
			responses, syncs, violations := checkWALFlushBeforeResponse(string(raw), backend)
			t.Logf("%d responses, %d WAL syncs, %d violations", responses, syncs, len(violations))
			if responses < appends {
				t.Fatalf("the trace shows %d responses to %d appends: did strace see the server process?\n%s", responses, appends, raw)
			}
			switch {
			case tc.wantViolation && len(violations) == 0:
				t.Fatalf("with synchronous_commit off every response still followed a WAL flush: the check cannot catch it")
			case !tc.wantViolation && len(violations) > 0:
				t.Fatalf("appends acknowledged before their WAL was flushed:\n%s", strings.Join(violations, "\n"))
			}
		})
	}
}

// serverProcesses returns the PostgreSQL server that runs backend: its postmaster and
// every child of it. The server must run on this machine.
func serverProcesses(t *testing.T, backend int) []int {
	t.Helper()
	ppid := func(pid int) (int, error) {
		raw, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
		if err != nil {
			return 0, err
		}
		// pid (comm) state ppid ...: comm may hold spaces, so parse after its ')'.
		var state string
		var parent int
		_, err = fmt.Sscan(string(raw[bytes.LastIndexByte(raw, ')')+1:]), &state, &parent)
		return parent, err
	}
	postmaster, err := ppid(backend)
	if err != nil {
		t.Fatalf("the PostgreSQL server process %d is not on this machine (strace must attach to it): %v", backend, err)
	}
	pids := []int{postmaster}
	entries, err := os.ReadDir("/proc")
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range entries {
		var pid int
		if _, err := fmt.Sscan(e.Name(), &pid); err != nil {
			continue
		}
		if p, err := ppid(pid); err == nil && p == postmaster {
			pids = append(pids, pid)
		}
	}
	return pids
}

// traceProcesses attaches strace to the given processes and returns once it has attached
// to all of them; the returned function detaches it and waits for it to write the log.
func traceProcesses(t *testing.T, strace, out string, pids ...int) (stop func()) {
	t.Helper()
	args := []string{"-f", "-y", "-e", "trace=fsync,fdatasync,sendto", "-o", out}
	for _, p := range pids {
		args = append(args, "-p", fmt.Sprint(p))
	}
	cmd := exec.Command(strace, args...)
	var mu sync.Mutex
	var stderr bytes.Buffer
	pr, pw, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stderr = pw
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	pw.Close()
	attached := make(chan struct{})
	go func() {
		sc := bufio.NewScanner(pr)
		n := 0
		for sc.Scan() {
			mu.Lock()
			stderr.WriteString(sc.Text() + "\n")
			mu.Unlock()
			if strings.Contains(sc.Text(), "attached") {
				if n++; n == len(pids) {
					close(attached)
				}
			}
		}
	}()
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	select {
	case <-attached:
	case err := <-done:
		mu.Lock()
		defer mu.Unlock()
		t.Fatalf("strace could not attach to the PostgreSQL processes %v: %v\n%s", pids, err, stderr.String())
	case <-time.After(time.Minute):
		_ = cmd.Process.Kill()
		t.Fatalf("strace did not attach to %v within a minute", pids)
	}
	return func() {
		_ = cmd.Process.Signal(syscall.SIGINT) // detaches from the server processes, which go on
		select {
		case <-done:
		case <-time.After(time.Minute):
			_ = cmd.Process.Kill()
			t.Fatal("strace did not detach within a minute")
		}
	}
}

var (
	pgTraceCall    = regexp.MustCompile(`^(\d+) +([a-z0-9_]+)\((.*)$`)
	pgTraceResumed = regexp.MustCompile(`^(\d+) +<\.\.\. ([a-z0-9_]+) resumed>(.*)$`)
	pgTraceResult  = regexp.MustCompile(`\) += (-?\d+)`)
)

// checkWALFlushBeforeResponse reads an `strace -f -y` log of the server: every sendto of
// the backend (its response to a commit) must start after a successful fsync or
// fdatasync of a file under pg_wal, by any server process, completed since the backend's
// previous response.
func checkWALFlushBeforeResponse(trace string, backend int) (responses, syncs int, violations []string) {
	synced := false
	pending := map[string]bool{} // pid → its unfinished call is a WAL sync
	isSync := func(name string) bool { return name == "fsync" || name == "fdatasync" }
	ok := func(rest string) bool {
		m := pgTraceResult.FindStringSubmatch(rest)
		return m != nil && m[1] == "0"
	}
	for _, line := range strings.Split(trace, "\n") {
		if m := pgTraceResumed.FindStringSubmatch(line); m != nil {
			if isSync(m[2]) && pending[m[1]] && ok(m[3]) {
				synced = true
				syncs++
			}
			delete(pending, m[1])
			continue
		}
		m := pgTraceCall.FindStringSubmatch(line)
		if m == nil {
			continue
		}
		pid, name, rest := m[1], m[2], m[3]
		switch {
		case isSync(name) && strings.Contains(rest, "/pg_wal/"):
			if strings.HasSuffix(rest, "<unfinished ...>") {
				pending[pid] = true
			} else if ok(rest) {
				synced = true
				syncs++
			}
		case name == "sendto" && pid == fmt.Sprint(backend):
			responses++
			if !synced {
				violations = append(violations, fmt.Sprintf("response %d: no WAL flush since the previous one: %s", responses, line))
			}
			synced = false
		}
	}
	return responses, syncs, violations
}

// The checker on hand-written traces.
func TestCheckWALFlushBeforeResponse(t *testing.T) {
	const (
		send    = `10 sendto(9<socket:[1]>, "2\0\0\0\4"..., 120, 0, NULL, 0) = 120`
		flush   = `10 fdatasync(5</data/pg_wal/000000010000000000000001>) = 0`
		byOther = `11 fdatasync(5</data/pg_wal/000000010000000000000001>) = 0`
	)
	for _, tc := range []struct {
		name       string
		lines      []string
		violations int
	}{
		{"flush, response", []string{flush, send}, 0},
		{"no flush", []string{send}, 1},
		{"flushed by another process", []string{byOther, send}, 0},
		{"one flush, two responses", []string{flush, send, send}, 1},
		{"data file, not WAL", []string{`10 fdatasync(6</data/base/1/1234>) = 0`, send}, 1},
		{"other process's response", []string{`11 sendto(9<socket:[2]>, "x", 1, 0, NULL, 0) = 1`}, 0},
		{"response while the flush runs", []string{`11 fdatasync(5</data/pg_wal/0001> <unfinished ...>`, send,
			`11 <... fdatasync resumed>) = 0`}, 1},
		{"flush resumed first", []string{`11 fdatasync(5</data/pg_wal/0001> <unfinished ...>`,
			`11 <... fdatasync resumed>) = 0`, send}, 0},
	} {
		_, _, v := checkWALFlushBeforeResponse(strings.Join(tc.lines, "\n"), 10)
		if len(v) != tc.violations {
			t.Errorf("%s: %d violations, want %d: %v", tc.name, len(v), tc.violations, v)
		}
	}
}
