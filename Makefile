# ecmstore — see README.md. `make run` and `make test` are the two commands a fresh
# machine needs.
SHELL := /bin/bash
GO ?= go

.PHONY: run test test-unit vet fmt bench

## --- core (owner: lead) ---------------------------------------------------------------
run:
	$(GO) run ./functions/local

vet:
	$(GO) vet ./...
	@test -z "$$(gofmt -l $$(git ls-files '*.go'))" || (gofmt -l $$(git ls-files '*.go'); echo "gofmt needed"; exit 1)

test-unit:
	$(GO) test -race -count=1 ./...

test: vet test-unit

bench: ## benchmarks; figures go into the README
	$(GO) test -run '^$$' -bench . -benchtime 2s ./shared/...

## --- emulators (owner: emulator helper) -----------------------------------------------

## --- build & deploy (owner: template helper) ------------------------------------------
