# Two commands set everything up: `make run` (the whole stack on the embedded default) and `make test`.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: run test install redis redis-cluster browser lint typecheck pytest test-cluster clean

# the service with its test tools, and the dev tools (devtools/: dev broker, simulator, `adapter dev`), at the
# versions of constraints.txt (scripts/lock renews it)
$(STAMP): pyproject.toml devtools/pyproject.toml constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -c constraints.txt -e '.[dev]' -e ./devtools
	touch $(STAMP)

install: $(STAMP)

redis:
	@bash scripts/ensure-redis

# a throwaway 3-primary Redis Cluster (REDIS_CLUSTER_PORTS, default 7001 7002 7003; docs/cluster.md)
REDIS_CLUSTER_PORTS ?= 7001 7002 7003
redis-cluster:
	@REDIS_CLUSTER_PORTS="$(REDIS_CLUSTER_PORTS)" bash scripts/ensure-redis-cluster

browser:
	@bash scripts/ensure-chromium

lint: install
	$(BIN)/ruff check adapter devtools tests scripts

typecheck: install
	$(BIN)/mypy --no-incremental adapter devtools/adapter_devtools

pytest: install redis browser
	$(BIN)/pytest

# every test on one Redis and, side by side, the integration tests again on a 3-primary Redis Cluster, and mypy
# beside them (docs/cluster.md, docs/testing.md)
test: lint install redis redis-cluster browser
	@REDIS_CLUSTER_PORTS="$(REDIS_CLUSTER_PORTS)" bash scripts/test-passes

# the integration tests on the cluster (RQ stays on the single test Redis, which `redis` starts)
test-cluster: install redis redis-cluster
	TEST_REDIS_MODE=cluster TEST_REDIS_CLUSTER_PORTS="$(REDIS_CLUSTER_PORTS)" $(BIN)/pytest tests/integration

run: install
	$(BIN)/adapter dev

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache .hypothesis .test-logs
