package emulator

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

func TestWithDatabaseKeepsOtherSettings(t *testing.T) {
	for in, want := range map[string]string{
		"postgres://u:p@h:5433/postgres?sslmode=require&application_name=x": "postgres://u:p@h:5433/db1?sslmode=require&application_name=x",
		"postgresql://h/":                     "postgresql://h/db1",
		"host=h port=5433 user=u dbname=base": "host=h port=5433 user=u dbname=base dbname=db1",
	} {
		if got := withDatabase(in, "db1"); got != want {
			t.Errorf("withDatabase(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestRedactHidesPasswords(t *testing.T) {
	if got := redact("postgres://u:secret@h/db"); strings.Contains(got, "secret") {
		t.Fatal(got)
	}
}

func TestLogBufferIsBoundedAndKeepsBothEnds(t *testing.T) {
	var b logBuffer
	_, _ = b.Write([]byte("listening on http://127.0.0.1:1\n"))
	line := []byte(strings.Repeat("x", 99) + "\n")
	for range 30000 { // 3 MB
		_, _ = b.Write(line)
	}
	_, _ = b.Write([]byte("the end\n"))
	s := b.String()
	if len(s) > logHead+2*logTail || !strings.HasPrefix(s, "listening on") || b.tail(1) != "the end" {
		t.Fatalf("%d bytes, starts %q, tail %q", len(s), s[:20], b.tail(1))
	}
}

func TestRootFindsGoMod(t *testing.T) {
	root, err := Root()
	if err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(root, "localstack", "emulators.sh")); err != nil {
		t.Fatalf("root %s: %v", root, err)
	}
}

// Directories of dead test processes go, those of live ones stay.
func TestRemoveStaleKeepsLiveServers(t *testing.T) {
	base := t.TempDir()
	gone := exec.Command("true")
	if err := gone.Run(); err != nil {
		t.Fatal(err)
	}
	dead := filepath.Join(base, fmt.Sprintf("ecm-pg-%d-1", gone.Process.Pid))
	live := filepath.Join(base, fmt.Sprintf("ecm-pg-%d-2", os.Getppid()))
	for _, d := range []string{dead, live} {
		if err := os.MkdirAll(filepath.Join(d, "data"), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	removeStale(base)
	if _, err := os.Stat(dead); !os.IsNotExist(err) {
		t.Errorf("%s of a dead process was kept: %v", dead, err)
	}
	if _, err := os.Stat(live); err != nil {
		t.Errorf("%s of a live process was removed: %v", live, err)
	}
}
