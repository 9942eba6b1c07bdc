# syntax=docker/dockerfile:1
# otel-ai-gateway container image.
#
#   docker build -t otel-ai-gateway .
#   docker run --rm -p 4317:4317 -p 4318:4318 -p 9464:9464 otel-ai-gateway
#
# Configuration: /etc/otel-ai-gateway/gateway.yaml (config/container/gateway.yaml: binds 0.0.0.0, exporters
# chosen with GATEWAY_* environment variables); mount your own file over it for anything else.
# State (disk queues, budget state file) goes under /var/lib/otel-ai-gateway, the working directory.
# tests/integration/test_deployment.py runs these steps without Docker (see docs/deployment.md).

ARG PYTHON_IMAGE=python:3.11-slim-bookworm

# --- build: a self-contained virtualenv with the gateway and its dependencies (all binary wheels) ---
FROM ${PYTHON_IMAGE} AS build
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
RUN python -m venv /opt/otel-ai-gateway
WORKDIR /src
COPY pyproject.toml README.md ./
COPY proto_handlers ./proto_handlers
COPY gateway ./gateway
RUN /opt/otel-ai-gateway/bin/pip install --no-compile . \
 && /opt/otel-ai-gateway/bin/pip uninstall --yes pip setuptools \
 && /opt/otel-ai-gateway/bin/python -m compileall -q -j 0 /opt/otel-ai-gateway/lib

# --- runtime: the slim base, the virtualenv, the config, a non-root user -----------------------------
FROM ${PYTHON_IMAGE}
LABEL org.opencontainers.image.title="otel-ai-gateway" \
      org.opencontainers.image.description="OpenTelemetry gateway: GenAI token, cost and latency metrics from spans; forwards OTLP untouched" \
      org.opencontainers.image.licenses="Apache-2.0"
RUN groupadd --system --gid 10001 gateway \
 && useradd --system --uid 10001 --gid 10001 --no-create-home --home-dir /var/lib/otel-ai-gateway \
      --shell /usr/sbin/nologin gateway \
 && install -d -o 10001 -g 10001 -m 0750 /var/lib/otel-ai-gateway
COPY --from=build /opt/otel-ai-gateway /opt/otel-ai-gateway
COPY config/container/gateway.yaml /etc/otel-ai-gateway/gateway.yaml
ENV PATH=/opt/otel-ai-gateway/bin:$PATH PYTHONUNBUFFERED=1 PYTHONDONTWRITEBYTECODE=1
WORKDIR /var/lib/otel-ai-gateway
VOLUME ["/var/lib/otel-ai-gateway"]
USER 10001:10001
# 4317 OTLP/gRPC, 4318 OTLP/HTTP, 9464 /metrics + /health/*
EXPOSE 4317 4318 9464
# No curl in a slim image: Python's urllib. A 503 (not ready) raises, so the check fails.
HEALTHCHECK --interval=10s --timeout=3s --start-period=15s --retries=3 \
  CMD ["python", "-c", "import os, urllib.request; urllib.request.urlopen(os.environ.get('GATEWAY_HEALTH_URL', 'http://127.0.0.1:9464/health/ready'), timeout=2)"]
# Exec form: the gateway is PID 1 and gets SIGTERM itself; it installs its own handler (PID 1 has no
# default one), stops receiving, drains the exporters and exits 0 within 10 s (docker stop's default grace).
STOPSIGNAL SIGTERM
ENTRYPOINT ["/opt/otel-ai-gateway/bin/otel-ai-gateway"]
CMD ["--config", "/etc/otel-ai-gateway/gateway.yaml"]
