# Everything a fresh machine needs is installed by these targets themselves:
# a virtualenv with the Python packages, the test server's npm packages, and the
# control plane's binaries (built from the Go module proxy, cached in ~/.cache).

PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

# The one version of the package, the image and the chart (docs/releasing.md).
VERSION := $(shell sed -n 's/^__version__ = "\(.*\)"$$/\1/p' operator/raidiam_operator/__init__.py)

.PHONY: demo test lint typecheck unit integration e2e binaries manifests bench clean chart lock sbom node image

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $(STAMP)

binaries: $(STAMP)
	PYTHONPATH=devenv $(BIN)/python -m raidiam_devenv.binaries
	PYTHONPATH=devenv $(BIN)/python -m raidiam_devenv.kubeconform
	PYTHONPATH=devenv $(BIN)/python -m raidiam_devenv.promtool
	PYTHONPATH=devenv $(BIN)/python -m raidiam_devenv.prometheus_operator

## image: build the operator image from the Dockerfile without Docker (buildah, Debian base) into dist/
image: $(STAMP)
	PYTHONPATH=devenv $(BIN)/python -m raidiam_devenv.image

## manifests: after changing crds/ or the chart: copy the CRD into the chart, regenerate deploy/ and docs/reference.md
manifests: $(STAMP) binaries
	cp crds/*.yaml charts/raidiam-token-operator/crds/
	PYTHONPATH=devenv $(BIN)/python -m raidiam_devenv.chart
	PYTHONPATH=devenv $(BIN)/python -m raidiam_devenv.crd_reference --write

## chart: package the Helm chart as dist/raidiam-token-operator-$(VERSION).tgz
chart: $(STAMP) binaries
	PYTHONPATH=devenv $(BIN)/python -m raidiam_devenv.chart package dist

## lock: after changing the dependencies in pyproject.toml, pin the image's packages with their hashes
lock: $(STAMP)
	env -u PIP_FIND_LINKS $(BIN)/pip-compile --quiet --generate-hashes --allow-unsafe --strip-extras \
		--no-emit-index-url --no-emit-find-links --output-file requirements/image.lock.txt pyproject.toml

## sbom: a CycloneDX SBOM of the image's Python packages, from the lock
sbom: $(STAMP)
	mkdir -p dist
	$(BIN)/cyclonedx-py requirements --pyproject pyproject.toml --output-reproducible \
		--output-file dist/raidiam-token-operator-$(VERSION).cdx.json requirements/image.lock.txt

## demo: bring up a local control plane and test authorization server, run the operator on two RaidiamClients
demo: $(STAMP) binaries
	PYTHONPATH=devenv $(BIN)/python -m raidiam_devenv.demo

## test: lint, type-check and the unit tests (seconds), then the builds, then every test against the real servers
# The builds take minutes (the first, over twenty), so what fails in seconds runs before them;
# they are made from the recipe, not as prerequisites, so that `make -j test` keeps that order.
test: lint typecheck unit
	$(MAKE) --no-print-directory binaries image
	PYTHONPATH=devenv $(BIN)/python -c 'from raidiam_devenv.authserver import ensure_node_modules; ensure_node_modules()'
	$(BIN)/python -m pytest -p no:cacheprovider -ra tests/integration tests/e2e tests/node

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/lint-imports

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
