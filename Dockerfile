# syntax=docker/dockerfile:1
# One image for every remitflow service:
#   docker run IMAGE run enrichment|notification|sweeper
#   docker run IMAGE bootstrap
# Review list (hadolint rules and the rest): docs/deploy.md#dockerfile-review

ARG PYTHON_IMAGE=python:3.11-slim-bookworm

# ---- build: resolve and install the package into a self-contained venv ----
FROM ${PYTHON_IMAGE} AS build
ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_ROOT_USER_ACTION=ignore
RUN python -m venv /opt/remitflow
WORKDIR /src
# Metadata first so the dependency layer is cached while only code changes.
COPY pyproject.toml README.md constraints.txt ./
COPY shared ./shared
COPY services ./services
# The runtime CLI only (run, bootstrap, status, jobs, notify preview; the port list):
# the dev runner, demo, bench, soak and test receivers stay out of the image
# (tests/deploy/test_runtime_image.py runs this file set).
COPY tools/__init__.py tools/cli.py tools/stack.py tools/jobs_client.py \
     tools/notify_preview.py ./tools/
# Wheels only: no compiler in either stage. Bytecode is compiled here because
# the runtime root filesystem is read-only.
RUN /opt/remitflow/bin/pip install --only-binary=:all: --no-binary=remitflow -c constraints.txt . \
 && /opt/remitflow/bin/pip uninstall -y pip setuptools wheel \
 && /opt/remitflow/bin/python -m compileall -q /opt/remitflow \
 && /opt/remitflow/bin/python -m tools.stack --ports > /opt/remitflow/ports.json

# ---- runtime: interpreter + venv + tini, nothing else ----
FROM ${PYTHON_IMAGE} AS runtime
ARG VERSION=0.1.0
LABEL org.opencontainers.image.title="remitflow" \
      org.opencontainers.image.description="Event-driven remittance pipeline (enrichment, notification, sweeper)" \
      org.opencontainers.image.licenses="Apache-2.0" \
      org.opencontainers.image.version="${VERSION}"

# tini as PID 1: forwards SIGTERM to Python and reaps zombies, also under plain
# `docker run` (no --init needed). ECS/Kubernetes add nothing on top of it.
RUN apt-get update \
 && apt-get install -y --no-install-recommends tini=0.19.0-1 \
 && rm -rf /var/lib/apt/lists/* \
 && groupadd --system --gid 10001 remitflow \
 && useradd --system --uid 10001 --gid 10001 --no-create-home --home-dir /tmp \
      --shell /usr/sbin/nologin remitflow

COPY --from=build /opt/remitflow /opt/remitflow
COPY deploy/docker/healthcheck.py /opt/remitflow/healthcheck.py

# Only /tmp is written at runtime (HOME and TMPDIR point there), so the root
# filesystem can be mounted read-only.
ENV PATH=/opt/remitflow/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    HOME=/tmp \
    TMPDIR=/tmp
WORKDIR /tmp

# Numeric UID so Kubernetes runAsNonRoot can verify it.
USER 10001:10001
EXPOSE 8081 8082 8083

# Liveness only (event-loop heartbeat, never AWS). The port comes from
# REMITFLOW_HTTP_PORT or the service named on the command line.
HEALTHCHECK --interval=15s --timeout=3s --start-period=20s --retries=3 \
  CMD ["python", "/opt/remitflow/healthcheck.py"]

STOPSIGNAL SIGTERM
ENTRYPOINT ["tini", "-g", "--", "remitflow"]
CMD ["--help"]
