# Everything a fresh machine needs is installed by these targets themselves:
# a virtualenv with the Python packages, the test server's npm packages, and the
# control plane's binaries (built from the Go module proxy, cached in ~/.cache).

PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: demo test lint typecheck unit integration e2e binaries manifests bench clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $(STAMP)

binaries: $(STAMP)
	PYTHONPATH=devenv $(BIN)/python -m raidiam_devenv.binaries
	PYTHONPATH=devenv $(BIN)/python -m raidiam_devenv.kubeconform
	PYTHONPATH=devenv $(BIN)/python -m raidiam_devenv.promtool

## manifests: after changing crds/ or the chart: copy the CRD into the chart, regenerate deploy/ and docs/reference.md
manifests: $(STAMP) binaries
	cp crds/*.yaml charts/raidiam-token-operator/crds/
	PYTHONPATH=devenv $(BIN)/python -m tests.e2e.chart_helpers
	PYTHONPATH=devenv $(BIN)/python -m raidiam_devenv.crd_reference --write

## demo: bring up a local control plane and test authorization server, run the operator on two RaidiamClients
demo: $(STAMP) binaries
	PYTHONPATH=devenv $(BIN)/python -m raidiam_devenv.demo

## test: lint, type-check and run every test against the real servers
test: lint typecheck binaries
	PYTHONPATH=devenv $(BIN)/python -c 'from raidiam_devenv.authserver import ensure_node_modules; ensure_node_modules()'
	$(BIN)/python -m pytest -p no:cacheprovider -ra

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

typecheck: $(STAMP)
	$(BIN)/mypy

unit: $(STAMP)
	$(BIN)/python -m pytest -p no:cacheprovider tests/unit

integration: $(STAMP)
	$(BIN)/python -m pytest -p no:cacheprovider tests/integration

e2e: $(STAMP) binaries
	$(BIN)/python -m pytest -p no:cacheprovider tests/e2e

## bench: thousands of RaidiamClients on one replica, against the floor and a sidecar (docs/benchmarks.md)
bench: $(STAMP) binaries
	PYTHONPATH=devenv $(BIN)/python -m benchmarks

clean:
	rm -rf $(VENV) devenv/authserver/node_modules
