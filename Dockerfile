# syntax=docker/dockerfile:1
# Container images of the Bittensor validator exporter, from one file:
#   runtime (the default, last stage): the exporter alone, as a non-root user,
#            able to run on a read-only root filesystem;
#   demo:    the simulated subtensor node of simnode with the demo chain
#            (simnode/demo.py), which `docker compose --profile demo up`
#            reads instead of a real chain.
ARG PYTHON_IMAGE=python:3.11-slim

# -- build: the package and its dependencies in a venv copied whole later ----
FROM ${PYTHON_IMAGE} AS build
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
RUN python -m venv /opt/venv
WORKDIR /src
COPY pyproject.toml README.md ./
# Dependencies first, against an empty package, in their own layer: a code
# change then only re-runs the cheap install below.
RUN mkdir exporter && touch exporter/__init__.py \
    && /opt/venv/bin/pip install . \
    && rm -rf exporter build
COPY exporter ./exporter
RUN /opt/venv/bin/pip install --no-deps --force-reinstall .

# -- build-demo: plus the test extra, which the simulated node needs ---------
FROM build AS build-demo
RUN /opt/venv/bin/pip install ".[test]"

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
