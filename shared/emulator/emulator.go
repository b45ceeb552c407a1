// Package emulator starts the real services that integration tests run against —
// Amazon's DynamoDB Local (with Streams), the fauxqs SQS emulator and PostgreSQL — on
// 127.0.0.1 and free ports, once per test process, and stops them when the tests end (or
// when the test process dies: children get SIGKILL with their parent). A test that needs
// a service that cannot start fails and says why; nothing is skipped.
//
// Set ECM_TEST_DYNAMODB_ENDPOINT, ECM_TEST_SQS_ENDPOINT or ECM_TEST_DATABASE_URL to use an
// existing service instead (LocalStack at http://localhost:4566, a real PostgreSQL): the
// same suites then run there unchanged.
package emulator

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	"github.com/aws/aws-sdk-go-v2/service/dynamodbstreams"
	"github.com/aws/aws-sdk-go-v2/service/sqs"
)

// Endpoint is a service URL such as http://127.0.0.1:41234.
type Endpoint string

type service struct {
	once     sync.Once
	endpoint string
	err      error
	proc     *exec.Cmd
	log      *syncWriter
	cleanup  func()
}

var (
	ddbSvc, sqsSvc, pgSvc service
	all                   = []*service{&ddbSvc, &sqsSvc, &pgSvc}
)

// Main runs the tests and then stops every service this process started.
func Main(m *testing.M) {
	code := m.Run()
	StopAll()
	os.Exit(code)
}

// StopAll stops the services this process started.
func StopAll() {
	for _, s := range all {
		if s.proc != nil && s.proc.Process != nil {
			_ = syscall.Kill(-s.proc.Process.Pid, syscall.SIGKILL)
			_ = s.proc.Wait()
			s.proc = nil
		}
		if s.cleanup != nil {
			s.cleanup()
			s.cleanup = nil
		}
	}
}

// Root returns the repository root (the directory holding go.mod).
func Root() (string, error) {
	dir, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			return dir, nil
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", errors.New("emulator: go.mod not found above the working directory")
		}
		dir = parent
	}
}

func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

// start launches a child in its own process group that dies with the test process.
func start(s *service, dir string, cred *syscall.Credential, env []string, name string, args ...string) error {
	cmd := exec.Command(name, args...)
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), env...)
	s.log = &syncWriter{w: &bytes.Buffer{}}
	cmd.Stdout, cmd.Stderr = s.log, s.log
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL, Credential: cred}
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("start %s: %w", name, err)
	}
	s.proc = cmd
	return nil
}

type syncWriter struct {
	mu sync.Mutex
	w  *bytes.Buffer
}

func (w *syncWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.w.Write(p)
}

func (s *service) tail() string {
	if s.log == nil {
		return ""
	}
	s.log.mu.Lock()
	text := s.log.w.String()
	s.log.mu.Unlock()
	lines := strings.Split(strings.TrimSpace(text), "\n")
	return strings.Join(lines[max(0, len(lines)-20):], "\n")
}

// waitReady polls ready until it succeeds, the process exits, or the timeout passes.
func waitReady(s *service, what string, timeout time.Duration, ready func(context.Context) error) error {
	deadline := time.Now().Add(timeout)
	exited := make(chan struct{})
	go func() {
		if s.proc != nil {
			_, _ = s.proc.Process.Wait()
		}
		close(exited)
	}()
	var last error
	for time.Now().Before(deadline) {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		last = ready(ctx)
		cancel()
		if last == nil {
			return nil
		}
		select {
		case <-exited:
			return fmt.Errorf("%s exited during start-up: %v\n%s", what, last, s.tail())
		case <-time.After(100 * time.Millisecond):
		}
	}
	return fmt.Errorf("%s not ready within %v: %v\n%s", what, timeout, last, s.tail())
}

func staticCreds() aws.CredentialsProvider {
	return credentials.NewStaticCredentialsProvider("local", "local", "")
}

func awsConfig() aws.Config {
	return aws.Config{Region: "us-east-1", Credentials: staticCreds()}
}

// DynamoDBClient returns a DynamoDB client for an endpoint (options add, for example,
// request-counting middleware).
func DynamoDBClient(ep Endpoint, opts ...func(*dynamodb.Options)) *dynamodb.Client {
	return dynamodb.NewFromConfig(awsConfig(), append([]func(*dynamodb.Options){
		func(o *dynamodb.Options) { o.BaseEndpoint = aws.String(string(ep)) }}, opts...)...)
}

// DynamoDBStreamsClient returns a DynamoDB Streams client for an endpoint.
func DynamoDBStreamsClient(ep Endpoint) *dynamodbstreams.Client {
	return dynamodbstreams.NewFromConfig(awsConfig(), func(o *dynamodbstreams.Options) { o.BaseEndpoint = aws.String(string(ep)) })
}

// SQSClient returns an SQS client for an endpoint.
func SQSClient(ep Endpoint) *sqs.Client {
	return sqs.NewFromConfig(awsConfig(), func(o *sqs.Options) { o.BaseEndpoint = aws.String(string(ep)) })
}

func fail(t testing.TB, what string, err error) {
	t.Helper()
	t.Fatalf("%s is needed by this test and could not be started: %v\n(install the emulators with `make emulators`; `make test` does it)", what, err)
}
