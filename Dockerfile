# syntax=docker/dockerfile:1
# The raidiam-token-operator image: the wheel built from this repository on a slim Python base,
# run as a fixed non-root user. Build (see docs/install.md):
#
#   docker build -t raidiam-token-operator:0.1.0 .
#
# Pin the base by digest in CI: --build-arg PYTHON_IMAGE=python:3.11.14-slim-trixie@sha256:<digest>
ARG PYTHON_IMAGE=python:3.11.14-slim-trixie

# --- build: the wheel of this project and of every dependency --------------------------------
FROM ${PYTHON_IMAGE} AS build
ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PYTHONDONTWRITEBYTECODE=1
WORKDIR /src
# The dependencies exactly as locked, each file checked against its sha256 (`make lock` writes the
# lock; `make sbom` lists the same packages as a CycloneDX SBOM). A layer of its own, so a change
# to the operator's code reuses it.
COPY requirements/image.lock.txt requirements/
RUN pip wheel --require-hashes --no-deps --wheel-dir /wheels -r requirements/image.lock.txt
COPY pyproject.toml README.md LICENSE ./
COPY operator/ operator/
# Wheels only from here on: the runtime stage installs offline, without compilers or sources.
RUN pip wheel --no-deps --wheel-dir /wheels .

# --- runtime ---------------------------------------------------------------------------------
FROM ${PYTHON_IMAGE}
ARG UID=65532
ENV PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1
RUN --mount=type=bind,from=build,source=/wheels,target=/wheels \
    pip install --no-index /wheels/*.whl \
    && pip check \
    && groupadd --system --gid ${UID} operator \
    && useradd --system --uid ${UID} --gid ${UID} --no-create-home --home-dir /nonexistent \
        --shell /usr/sbin/nologin operator
# Numeric, so that Kubernetes' runAsNonRoot can check it without reading /etc/passwd.
USER 65532:65532
# kopf's health endpoint (GET /healthz) and the metrics endpoint (GET /metrics).
EXPOSE 8081 8080
ENTRYPOINT ["raidiam-operator", "run"]
CMD ["--all-namespaces"]
