// Package perf holds the end-to-end benchmarks behind `make bench-dynamodb` and `make
// bench-projections`: commands through the HTTP API against raw DynamoDB writes on the same
// emulator, and projection catch-up and lag on every backend. It has no code outside its
// tests.
package perf
