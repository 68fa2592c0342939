# syntax=docker/dockerfile:1
# The Batchyard operator image: `docker build -t ghcr.io/batchyard/batchyard:0.1.0 .`
#
# Two stages: the builder installs the package (and so exactly the dependencies pyproject.toml
# declares) into a virtualenv; the runtime stage copies only that virtualenv onto the same slim
# Python base and runs it as a non-root user. The Helm chart adds a read-only root filesystem.

# Keep in step with `requires-python` and the tools' target-version in pyproject.toml
# (tests/unit/test_packaging.py checks it).
ARG PYTHON_VERSION=3.11

FROM python:${PYTHON_VERSION}-slim AS build
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_NO_CACHE_DIR=1
RUN python -m venv /opt/batchyard
WORKDIR /src
COPY pyproject.toml README.md ./
COPY operator/ operator/
# A regular (non-editable) install of the package: its dependencies come from pyproject.toml only.
RUN /opt/batchyard/bin/pip install --upgrade pip \
    && /opt/batchyard/bin/pip install . \
    && /opt/batchyard/bin/batchyard --help >/dev/null

FROM python:${PYTHON_VERSION}-slim AS runtime
LABEL org.opencontainers.image.title="batchyard" \
      org.opencontainers.image.description="AWS Batch semantics on Kubernetes: the Batchyard operator" \
      org.opencontainers.image.licenses="Apache-2.0"
# A fixed numeric uid/gid, so that Kubernetes' runAsNonRoot can verify it without /etc/passwd.
RUN groupadd --system --gid 10001 batchyard \
    && useradd --system --uid 10001 --gid 10001 --no-create-home --home-dir /nonexistent \
       --shell /usr/sbin/nologin batchyard
COPY --from=build /opt/batchyard /opt/batchyard
ENV PATH=/opt/batchyard/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1
USER 10001:10001
WORKDIR /tmp
# 8080: Prometheus /metrics; 8081: kopf's /healthz (liveness and readiness probes).
EXPOSE 8080 8081
ENTRYPOINT ["batchyard"]
CMD ["run", "--liveness=http://0.0.0.0:8081/healthz"]
