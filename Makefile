# LSD — the two commands a user needs are `make run` and `make test`.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
LINT_PATHS := lsd tests $(wildcard bench) $(wildcard deploy)
STAMP := $(VENV)/.installed-$(shell cat pyproject.toml | cksum | cut -d' ' -f1)
CONFIG ?= config/lsd.toml
BIND ?= 127.0.0.1:3000

.PHONY: run test lint format bench bench-peers venv clean db-stop soak

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -e '.[dev]'
	rm -f $(VENV)/.installed-*
	touch $(STAMP)

venv: $(STAMP)

## make run: set up, start a local PostgreSQL under .lsd/ when LSD_DATABASE_URL is unset, migrate, serve.
run: $(STAMP)
	@if [ -z "$$LSD_DATABASE_URL" ]; then \
		LSD_DATABASE_URL=$$($(BIN)/lsd localdb start --data-dir .lsd/pgdata) || exit 1; \
		export LSD_DATABASE_URL; \
		echo "using local PostgreSQL at $$LSD_DATABASE_URL (stop it with: make db-stop)"; \
	fi; \
	exec $(BIN)/lsd serve --config $(CONFIG) --bind $(BIND)

db-stop: $(STAMP)
	$(BIN)/lsd localdb stop --data-dir .lsd/pgdata

## make test: the whole suite against a throwaway PostgreSQL (or LSD_TEST_DATABASE_URL).
test: $(STAMP)
	$(BIN)/python -m pytest $(PYTEST_ARGS)

## make soak: the robustness fuzz (tests/robustness) at length: SOAK_EXAMPLES per operation and mode (default 100,
## about 5,000 requests; CI runs 30). Prints the request and 5xx counts; any 5xx fails it. No per-test timeout
## (make test has 300 s): a soak with many examples may run one operation for longer.
SOAK_EXAMPLES ?= 100
soak: $(STAMP)
	LSD_FUZZ_EXAMPLES=$(SOAK_EXAMPLES) $(BIN)/python -m pytest tests/robustness -q -s --timeout 0 $(PYTEST_ARGS)

lint: $(STAMP)
	$(BIN)/ruff format --check $(LINT_PATHS)
	$(BIN)/ruff check $(LINT_PATHS)
	$(BIN)/mypy
	$(BIN)/lint-imports

format: $(STAMP)
	$(BIN)/ruff format $(LINT_PATHS)
	$(BIN)/ruff check --fix $(LINT_PATHS)

## make bench: gateway overhead against a bare proxy and writer throughput against bare COPY (docs/performance.md).
bench: $(STAMP)
	@command -v wrk >/dev/null || echo "wrk not found (apt-get install -y wrk): closed loops fall back to aiohttp"
	$(BIN)/python -m bench.run $(BENCH_ARGS)

## make bench-peers: the same gateway load on LiteLLM's proxy, without a database and with its PostgreSQL spend
## logs (prisma: LiteLLM's database client), installed into its own venv on first use.
PEERS_VENV ?= .bench-peers/venv
bench-peers: $(STAMP)
	@{ test -x $(PEERS_VENV)/bin/litellm && $(PEERS_VENV)/bin/python -c 'import prisma' 2>/dev/null; } || { \
		echo "installing litellm[proxy] and prisma into $(PEERS_VENV) (a few minutes)"; \
		$(PYTHON) -m venv $(PEERS_VENV) && $(PEERS_VENV)/bin/python -m pip install -q 'litellm[proxy]' prisma; \
	} || { echo "could not install litellm[proxy] and prisma into $(PEERS_VENV)"; exit 1; }
	$(BIN)/python -m bench.peers --litellm $(PEERS_VENV)/bin/litellm $(BENCH_ARGS)

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
