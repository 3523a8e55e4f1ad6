# syntax=docker/dockerfile:1
# The raidiam-token-operator image: this project and its dependencies in a virtual environment on a
# Python base, run as a fixed non-root user (or any UID the platform assigns). Build (see
# docs/install.md):
#
#   docker build -t raidiam-token-operator:0.1.0 .
#
# Pin the base by digest in CI: --build-arg PYTHON_IMAGE=python:3.11.14-slim-trixie@sha256:<digest>
# Any image with Python >= 3.11 and its venv module works as a base: `make image` builds this file
# without Docker on a Debian base assembled from Debian packages (devenv/raidiam_devenv/image.py).
ARG PYTHON_IMAGE=python:3.11.14-slim-trixie

# --- build: a virtual environment with this project and every dependency ------------------------
FROM ${PYTHON_IMAGE} AS build
ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PYTHONDONTWRITEBYTECODE=1
WORKDIR /src
# A venv rather than the system site-packages: Debian's own python3 refuses pip there (PEP 668),
# and the runtime stage takes the whole environment in one COPY, without pip or compilers.
RUN python3 -m venv /opt/raidiam-token-operator
ENV PATH=/opt/raidiam-token-operator/bin:$PATH
# The dependencies exactly as locked, each file checked against its sha256 (`make lock` writes the
# lock; `make sbom` lists the same packages as a CycloneDX SBOM). A layer of its own, so a change
# to the operator's code reuses it.
COPY requirements/image.lock.txt requirements/
RUN pip install --require-hashes --no-deps -r requirements/image.lock.txt
COPY pyproject.toml README.md LICENSE ./
COPY operator/ operator/
RUN pip install --no-deps . \
    && pip check
# The runtime user, made here so that the runtime stage needs no RUN (and no shell).
# Not named "operator": Debian's base-passwd already has an "operator" group (gid 37).
ARG UID=65532
RUN groupadd --system --gid ${UID} raidiam-operator \
    && useradd --system --uid ${UID} --gid ${UID} --no-create-home --home-dir /nonexistent \
        --shell /usr/sbin/nologin raidiam-operator

# --- runtime ---------------------------------------------------------------------------------
FROM ${PYTHON_IMAGE}
ENV PATH=/opt/raidiam-token-operator/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1
COPY --from=build /opt/raidiam-token-operator /opt/raidiam-token-operator
COPY --from=build /etc/passwd /etc/group /etc/shadow /etc/gshadow /etc/
# Numeric, so that Kubernetes' runAsNonRoot can check it without reading /etc/passwd. The operator
# needs no passwd entry: OpenShift's restricted SCC runs it under an arbitrary UID without one.
USER 65532:65532
# kopf's health endpoint (GET /healthz) and the metrics endpoint (GET /metrics).
EXPOSE 8081 8080
ENTRYPOINT ["raidiam-operator", "run"]
CMD ["--all-namespaces"]
