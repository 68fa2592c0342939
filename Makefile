# Batchyard developer entry points. `make test` works on a fresh machine: it creates the
# virtualenv, installs the package with its test extras, builds (or reuses) the control-plane
# binaries under ~/.cache/batchyard, and runs the unit and cluster tests.

PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-$(shell cat pyproject.toml | cksum | cut -d' ' -f1)
PYTEST_ARGS ?=

.PHONY: venv binaries test unit cluster lint format generate verify demo clean
.PHONY: helm chart-crds deploy-manifest verify-packaging

venv: $(STAMP)

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --disable-pip-version-check --upgrade pip
	$(PY) -m pip install -q --disable-pip-version-check -e '.[test,lint]'
	rm -f $(VENV)/.installed-*
	touch $@

binaries: venv helm
	$(PY) -m batchyard.devcluster build

test: venv binaries
	$(PY) -m pytest tests/unit tests/cluster $(PYTEST_ARGS)

unit: venv
	$(PY) -m pytest tests/unit $(PYTEST_ARGS)

cluster: venv binaries
	$(PY) -m pytest tests/cluster $(PYTEST_ARGS)

lint: venv
	$(VENV)/bin/ruff check operator tests bench
	$(VENV)/bin/ruff format --check operator tests bench
	$(VENV)/bin/mypy operator/batchyard
	$(VENV)/bin/lint-imports

format: venv
	$(VENV)/bin/ruff format operator tests bench
	$(VENV)/bin/ruff check --fix operator tests bench

# CRDs are generated from operator/batchyard/api (the models are the source of truth).
CRD_DIRS ?= crds helm/batchyard/crds

generate: venv
	$(PY) -m batchyard.api.crdgen $(foreach d,$(CRD_DIRS),--out $(d))

verify: venv
	@tmp=$$(mktemp -d) && trap 'rm -rf "$$tmp"' EXIT && \
	$(PY) -m batchyard.api.crdgen --out "$$tmp" 2>/dev/null && \
	if diff -ru --exclude='.*' crds "$$tmp"; then echo "crds/ is up to date"; \
	else echo "crds/ differs from the generator's output: run 'make generate'" >&2; exit 1; fi

# Packaging: Helm (built from its Go module into the cache, ~1 min once), the chart's CRDs
# (the generator's output), and the plain
# manifest in deploy/, rendered from the chart so that the two never drift.
helm: venv
	$(PY) -m batchyard.devcluster.helm >/dev/null

chart-crds: venv
	$(PY) -m batchyard.api.crdgen --out helm/batchyard/crds

deploy-manifest: venv chart-crds
	$(PY) -m batchyard.devcluster.helm deploy-manifest

verify-packaging: venv helm
	$(VENV)/bin/python -m pytest -q tests/unit/test_packaging.py
	$$($(PY) -m batchyard.devcluster.helm) lint --strict helm/batchyard
	$(PY) -m batchyard.devcluster.helm deploy-manifest --check

verify: verify-packaging

demo: venv binaries
	$(PY) -m batchyard.cli.main demo $(DEMO_ARGS)

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
