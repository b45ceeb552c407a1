package boltstore_test

import (
	"bufio"
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"

	"github.com/ecmstore/ecmstore/shared/event"
	"github.com/ecmstore/ecmstore/shared/eventstore"
	"github.com/ecmstore/ecmstore/shared/eventstore/boltstore"
)

// The kill -9 test cannot see a missing fsync: SIGKILL leaves the page cache, so the data
// survives anyway. This test watches the system calls instead. A child appends events one
// at a time and prints one acknowledgement line after each Append returns; strace records
// the child's syncs and writes; every acknowledgement must come after an fsync or
// fdatasync of the store file that followed the file's last write. Only a power loss or
// a kernel crash would show the difference otherwise.

const (
	fsyncAppends = 20
	fsyncDBName  = "fsync-check.db" // the trace names files by path; this one is unique
	noSyncEnv    = "BOLTSTORE_TEST_NOSYNC"
)

func TestAcknowledgedOnlyAfterFsync(t *testing.T) {
	strace, err := exec.LookPath("strace")
	if err != nil {
		t.Fatalf("strace is needed to check that appends are fsynced before they are acknowledged, "+
			"and it is not installed: run `make strace` (Debian package strace): %v", err)
	}
	for _, tc := range []struct {
		name          string
		noSync        bool
		wantViolation bool
	}{
		{"fsync at commit", false, false},
		{"NoSync", true, true}, // proves the check can fail
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			trace := filepath.Join(dir, "strace.out")
			cmd := exec.Command(strace, "-f", "-y", "-e", "trace=fsync,fdatasync,write,pwrite64", "-o", trace,
				"--", os.Args[0], "-test.run=^$")
			cmd.Env = append(os.Environ(), childEnv+"=fsync", childPathEnv+"="+filepath.Join(dir, fsyncDBName),
				noSyncEnv+"="+strconv.FormatBool(tc.noSync))
			var stdout, stderr bytes.Buffer
			cmd.Stdout, cmd.Stderr = &stdout, &stderr
			if err := cmd.Run(); err != nil {
				t.Fatalf("strace or the child failed: %v\n%s", err, stderr.String())
			}
			if n := strings.Count(stdout.String(), "ack "); n != fsyncAppends {
				t.Fatalf("the child acknowledged %d appends, want %d:\n%s\n%s", n, fsyncAppends, stdout.String(), stderr.String())
			}
			raw, err := os.ReadFile(trace)
			if err != nil {
				t.Fatal(err)
			}
			rep := checkSyncBeforeAck(string(raw), fsyncDBName)
			if rep.acks != fsyncAppends {
				t.Fatalf("the trace shows %d acknowledgements, the child printed %d: is stdout fd 1?", rep.acks, fsyncAppends)
			}
			t.Logf("%d acknowledgements, %d syncs of the store file, %d violations", rep.acks, rep.syncs, len(rep.violations))
			switch {
			case tc.wantViolation && len(rep.violations) == 0:
				t.Fatalf("with NoSync every acknowledgement still followed an fsync: the check cannot catch a missing fsync")
			case !tc.wantViolation && len(rep.violations) > 0:
				t.Fatalf("appends acknowledged before they were on disk:\n%s", strings.Join(rep.violations, "\n"))
			}
		})
	}
}

// fsyncChild appends fsyncAppends events, one Append at a time, and writes "ack <version>"
// to stdout after each returns: the acknowledgement a client would get.
func fsyncChild(path string) {
	var opts []boltstore.Option
	if os.Getenv(noSyncEnv) == "true" {
		opts = append(opts, boltstore.WithNoSync())
	}
	s, err := boltstore.Open(path, opts...)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(2)
	}
	// What Open wrote (and synced: bbolt syncs a new file whatever NoSync says) is not an
	// append; the check starts here.
	fmt.Fprintln(os.Stdout, "ready")
	st := eventstore.Stream{Type: "Durable", ID: "d"}
	for v := int64(1); v <= fsyncAppends; v++ {
		if _, err := s.Append(bg(), st, v-1, []event.Event{event.MustNew("Tick", v)}); err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(3)
		}
		fmt.Fprintf(os.Stdout, "ack %d\n", v)
	}
	if err := s.Close(); err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(4)
	}
	os.Exit(0)
}

type syncReport struct {
	acks, syncs int
	violations  []string
}

var (
	// 1234 fdatasync(3</tmp/x/fsync-check.db>) = 0
	// 1234 fdatasync(3</tmp/x/fsync-check.db> <unfinished ...>
	// 1234 <... fdatasync resumed>) = 0
	straceCall    = regexp.MustCompile(`^(?:(\d+) +)?([a-z0-9_]+)\((.*)$`)
	straceResumed = regexp.MustCompile(`^(?:(\d+) +)?<\.\.\. ([a-z0-9_]+) resumed>(.*)$`)
	straceResult  = regexp.MustCompile(`\) += (-?\d+)`)
)

// checkSyncBeforeAck reads an `strace -f -y` log: after the child's "ready" line, every
// "ack" written to fd 1 must be preceded, since the previous acknowledgement, by a
// successful fsync or fdatasync of the file named db, and the file must not have been
// written (pwrite64) after that sync. A sync counts when it returns; an acknowledgement
// when its write starts, so one issued while the sync is still running is a violation.
func checkSyncBeforeAck(trace, db string) syncReport {
	var rep syncReport
	started, synced, dirty := false, false, false
	pending := map[string]bool{} // pid → its unfinished call is a sync of db
	isDB := func(args string) bool { return strings.Contains(args, "/"+db+">") }
	isSync := func(name string) bool { return name == "fsync" || name == "fdatasync" }
	succeeded := func(rest string) bool {
		m := straceResult.FindStringSubmatch(rest)
		return m != nil && m[1] == "0"
	}
	sc := bufio.NewScanner(strings.NewReader(trace))
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		if m := straceResumed.FindStringSubmatch(line); m != nil {
			if isSync(m[2]) && pending[m[1]] && succeeded(m[3]) && started {
				synced, dirty = true, false
				rep.syncs++
			}
			delete(pending, m[1])
			continue
		}
		m := straceCall.FindStringSubmatch(line)
		if m == nil {
			continue // signals, exits
		}
		pid, name, rest := m[1], m[2], m[3]
		unfinished := strings.HasSuffix(rest, "<unfinished ...>")
		switch {
		case isSync(name) && isDB(rest):
			if unfinished {
				pending[pid] = true
			} else if succeeded(rest) && started {
				synced, dirty = true, false
				rep.syncs++
			}
		case name == "pwrite64" && isDB(rest):
			dirty = true
		case name == "write" && (strings.HasPrefix(rest, "1<") || strings.HasPrefix(rest, "1,")):
			switch {
			case strings.Contains(rest, `"ready`):
				started, synced, dirty = true, false, false
			case started && strings.Contains(rest, `"ack `):
				rep.acks++
				switch {
				case !synced:
					rep.violations = append(rep.violations, fmt.Sprintf("acknowledgement %d: no sync of %s since the previous one: %s", rep.acks, db, line))
				case dirty:
					rep.violations = append(rep.violations, fmt.Sprintf("acknowledgement %d: %s written after its last sync: %s", rep.acks, db, line))
				}
				synced = false
			}
		}
	}
	return rep
}

// The checker on hand-written traces, including the interleavings a multi-threaded
// process produces (a call left unfinished while another thread runs).
func TestCheckSyncBeforeAck(t *testing.T) {
	const (
		ready = `10 write(1<pipe:[7]>, "ready\n", 6) = 6`
		ack   = `10 write(1<pipe:[7]>, "ack 1\n", 6) = 6`
		pw    = `11 pwrite64(3</tmp/a/x.db>, "\0\0"..., 4096, 8192) = 4096`
		sync  = `11 fdatasync(3</tmp/a/x.db>) = 0`
	)
	for _, tc := range []struct {
		name       string
		lines      []string
		violations int
	}{
		{"write, sync, ack", []string{ready, pw, sync, ack}, 0},
		{"no sync", []string{ready, pw, ack}, 1},
		{"sync before ready does not count", []string{pw, sync, ready, ack}, 1},
		{"write after the sync", []string{ready, pw, sync, pw, ack}, 1},
		{"one sync for two acks", []string{ready, pw, sync, ack, ack}, 1},
		{"fsync counts too", []string{ready, pw, `11 fsync(3</tmp/a/x.db>) = 0`, ack}, 0},
		{"sync of another file", []string{ready, pw, `11 fdatasync(4</tmp/a/other.db>) = 0`, ack}, 1},
		{"failed sync", []string{ready, pw, `11 fdatasync(3</tmp/a/x.db>) = -1 EIO (Input/output error)`, ack}, 1},
		{"sync resumed before the ack", []string{ready, pw, `11 fdatasync(3</tmp/a/x.db> <unfinished ...>`,
			`12 --- SIGURG {si_signo=SIGURG} ---`, `11 <... fdatasync resumed>) = 0`, ack}, 0},
		{"ack while the sync runs", []string{ready, pw, `11 fdatasync(3</tmp/a/x.db> <unfinished ...>`, ack,
			`11 <... fdatasync resumed>) = 0`}, 1},
		{"stderr is not an ack", []string{ready, pw, `10 write(2<pipe:[8]>, "ack 1\n", 6) = 6`}, 0},
	} {
		rep := checkSyncBeforeAck(strings.Join(tc.lines, "\n")+"\n", "x.db")
		if len(rep.violations) != tc.violations {
			t.Errorf("%s: %d violations, want %d: %v", tc.name, len(rep.violations), tc.violations, rep.violations)
		}
	}
}
