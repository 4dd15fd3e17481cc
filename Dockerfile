# Container images of the Bittensor validator exporter, from one file:
#   runtime (the default, last stage): the exporter alone, as a non-root user,
#            able to run on a read-only root filesystem;
#   demo:    the simulated subtensor node of simnode with the demo chain
#            (simnode/demo.py), which `docker compose --profile demo up`
#            reads instead of a real chain.
#
# What goes in is pinned: the base image by digest, every Python package by
# version and hash (requirements.lock, requirements-test.lock; `make lock`
# writes them again). No syntax directive: the builder's own Dockerfile
# frontend, not one more image pulled by tag. The OCI labels come from build
# arguments (SOURCE: the URL of the repository the image is built from):
#   docker build --build-arg REVISION="$(git rev-parse HEAD)" \
#     --build-arg CREATED="$(date -u +%Y-%m-%dT%H:%M:%SZ)" \
#     --build-arg SOURCE=https://... -t bittensor-validator-exporter .

# python:3.11-slim (Python 3.11.16, Debian trixie) as published on 2026-09-02:
# the digest of its multi-platform index (as recorded in the official images'
# docker-library/repo-info), so every build gets these bytes, not whatever the
# tag points at that day. To move to a newer build, put the tag's current
# digest here (`docker buildx imagetools inspect python:3.11-slim`, the first
# Digest line) and change the date above.
ARG PYTHON_IMAGE=python:3.11-slim@sha256:9534e5a8e315485d4061ed659af0fd78a284c015f9b73661b41d6bab25604534

# -- build: the package and its dependencies in a venv copied whole later ----
FROM ${PYTHON_IMAGE} AS build
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
RUN python -m venv /opt/venv
WORKDIR /src
# Dependencies first, in their own layer, exactly as the lock pins them: each
# file is checked against its hash, and a dependency missing from the lock
# fails the build. A code change then only re-runs the cheap install below.
COPY requirements.lock ./
RUN /opt/venv/bin/pip install --require-hashes -r requirements.lock
COPY pyproject.toml README.md ./
COPY exporter ./exporter
# The package alone (its dependencies are all there), then a check that they
# satisfy what pyproject.toml asks for.
RUN /opt/venv/bin/pip install --no-deps . && /opt/venv/bin/pip check

# -- build-demo: plus the test extra, which the simulated node needs ---------
FROM build AS build-demo
COPY requirements-test.lock ./
RUN /opt/venv/bin/pip install --require-hashes -r requirements-test.lock \
    && /opt/venv/bin/pip check

# -- base: what both images share --------------------------------------------
FROM ${PYTHON_IMAGE} AS base
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1
# The user's home is the data directory, so nothing ever needs a writable /home.
RUN groupadd --system --gid 10001 exporter \
    && useradd --system --uid 10001 --gid exporter --no-create-home \
        --home-dir /var/lib/bittensor-exporter --shell /usr/sbin/nologin exporter \
    && install -d -o exporter -g exporter -m 0750 /var/lib/bittensor-exporter

# -- demo: the simulated node serving the demo chain, changing it now and then
FROM base AS demo
COPY --from=build-demo /opt/venv /opt/venv
WORKDIR /opt/demo
COPY simnode ./simnode
USER exporter
EXPOSE 9944
HEALTHCHECK --interval=10s --timeout=3s --start-period=30s --retries=3 \
    CMD ["python", "-c", "import socket; socket.create_connection(('127.0.0.1', 9944), timeout=2).close()"]
ENTRYPOINT ["python", "-m", "simnode.demo", "--host", "0.0.0.0", "--port", "9944"]
CMD ["--change-every", "60"]
# Image metadata last, so a new commit or date changes no layer above.
ARG PYTHON_IMAGE
ARG VERSION=0.1.0
ARG REVISION=
ARG CREATED=
ARG SOURCE=
LABEL org.opencontainers.image.title="bittensor-validator-exporter demo node" \
      org.opencontainers.image.description="A simulated subtensor node serving a demo chain, for trying the Bittensor validator exporter without a real chain." \
      org.opencontainers.image.source="${SOURCE}" \
      org.opencontainers.image.licenses="MIT" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.revision="${REVISION}" \
      org.opencontainers.image.created="${CREATED}" \
      org.opencontainers.image.base.name="${PYTHON_IMAGE}"

# -- runtime: the exporter ----------------------------------------------------
FROM base AS runtime
COPY --from=build /opt/venv /opt/venv
COPY docker/config.yaml /etc/bittensor-exporter/config.yaml
COPY docker/healthcheck.py /usr/local/lib/bittensor-exporter/healthcheck.py
# The SDK caches runtime metadata on disk; keep it on the volume, since the
# root filesystem may be read-only. Relative paths in a mounted config (such
# as config.example.yaml's `history.path: history.db`) land there too.
ENV BITTENSOR_RUNTIME_CACHE_DIR=/var/lib/bittensor-exporter/runtime-cache
WORKDIR /var/lib/bittensor-exporter
VOLUME ["/var/lib/bittensor-exporter"]
USER exporter
EXPOSE 9744
# /healthz answers 503 once the last good refresh is stale (plain HTTP or TLS,
# see the script). The first refresh against mainnet takes a while, hence the
# start period.
HEALTHCHECK --interval=30s --timeout=10s --start-period=3m --retries=3 \
    CMD ["python", "/usr/local/lib/bittensor-exporter/healthcheck.py", "9744"]
ENTRYPOINT ["bittensor-validator-exporter"]
CMD ["--config.file", "/etc/bittensor-exporter/config.yaml"]
# Image metadata last, so a new commit or date changes no layer above.
ARG PYTHON_IMAGE
ARG VERSION=0.1.0
ARG REVISION=
ARG CREATED=
ARG SOURCE=
LABEL org.opencontainers.image.title="bittensor-validator-exporter" \
      org.opencontainers.image.description="Prometheus exporter for Bittensor validators: own, inherited and root stake, childkey takes and parent/child relationships." \
      org.opencontainers.image.source="${SOURCE}" \
      org.opencontainers.image.licenses="MIT" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.revision="${REVISION}" \
      org.opencontainers.image.created="${CREATED}" \
      org.opencontainers.image.base.name="${PYTHON_IMAGE}"
# The exporter reports it as bittensor_exporter_build_info's revision label.
ENV BITTENSOR_EXPORTER_REVISION=${REVISION}
