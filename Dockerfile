# The NAE execution node. docker-compose.yml builds and runs it; docs/DEPLOYMENT.md explains it.
# Not built on the development machines (no Docker engine there); tests/unit/test_deploy_compose.py
# checks its shape: a non-root user, dependencies in their own layer from requirements.lock, a HEALTHCHECK.
FROM python:3.12.8-slim-bookworm

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

RUN groupadd --system --gid 10001 nae \
 && useradd --system --uid 10001 --gid nae --home-dir /var/lib/nae --create-home --shell /usr/sbin/nologin nae

WORKDIR /app

# 1. dependencies, exactly as locked, in a layer of their own: a change to the code does not reinstall them
COPY requirements.lock ./
RUN pip install --no-deps -r requirements.lock

# 2. the node itself (no dependency resolution here: the lock has them all; pip check proves it)
COPY pyproject.toml README.md ./
COPY node node
COPY actors actors
COPY adapters adapters
COPY bench bench
COPY sql sql
RUN pip install --no-deps . && pip check

USER nae
WORKDIR /var/lib/nae
VOLUME ["/var/lib/nae"]

# intake (ZeroMQ), events feed (ZeroMQ XPUB), HTTP API
EXPOSE 5555 5556 8080

HEALTHCHECK --interval=10s --timeout=5s --start-period=60s --retries=3 \
  CMD ["python", "-c", "import urllib.request,sys; sys.exit(0 if urllib.request.urlopen('http://127.0.0.1:8080/health', timeout=3).status == 200 else 1)"]

STOPSIGNAL SIGTERM
CMD ["execnode", "--config", "/etc/nae/node.toml", "up"]
