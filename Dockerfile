# One image for every role; the command picks it:
#   docker run IMAGE animegan api      # HTTP gateway (the default command)
#   docker run IMAGE animegan worker   # Celery worker (CPU inference)
# Build: DOCKER_BUILDKIT=1 docker build -t animegan .   (README "Deployment": options, and what the tests verify.)
# No `# syntax=` line on purpose: the engine's built-in Dockerfile frontend builds this file, so a
# BuildKit build needs no registry (a syntax line makes every build pull a frontend image first).

ARG PYTHON_IMAGE=python:3.11-slim

# ---- build: a self-contained virtualenv in /opt/venv -------------------------------------------
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
    PATH=/opt/venv/bin:$PATH
RUN python -m venv /opt/venv

WORKDIR /src
# Dependencies in their own layer, keyed on the service's lock file only, so a code change rebuilds
# seconds of work instead of minutes. The lock (`make lock`) pins every package of [project]
# dependencies with its sha256: no torch (an optional extra that no serving process imports).
COPY requirements/service.txt ./requirements/service.txt
RUN --mount=type=secret,id=ca-bundle \
    if [ -f /run/secrets/ca-bundle ]; then export PIP_CERT=/run/secrets/ca-bundle; fi \
    && pip install --require-hashes --no-deps -r requirements/service.txt

# The project itself (.dockerignore lets only the packages and packaging files through), with the
# native bf16 kernels (inference/_onednn.cpp) built against Debian's oneDNN (its version is the
# base image's Debian release's own: DL3008's pin would break on the next release).
# hadolint ignore=DL3008
RUN apt-get update \
    && apt-get install -y --no-install-recommends g++ libdnnl-dev \
    && rm -rf /var/lib/apt/lists/*
COPY . .
RUN pip install --no-deps --no-build-isolation . \
    && python -I -c "from inference import runtime_onednn as r; assert r.available(), 'native kernels not built'" \
    && find /opt/venv -depth -name '__pycache__' -type d -exec rm -rf {} +

# ---- runtime: slim base + the virtualenv, non-root --------------------------------------------
FROM ${PYTHON_IMAGE} AS runtime
LABEL org.opencontainers.image.title="animegan" \
      org.opencontainers.image.description="Photos to anime-style images with AnimeGANv2 on CPU: API gateway and Celery worker" \
      org.opencontainers.image.licenses="MIT"

# PROMETHEUS_MULTIPROC_DIR lives under /tmp, which compose and the chart mount as tmpfs/emptyDir:
# metric files are rewritten on every observation and must never touch a disk.
# ANIMEGAN_CACHE_DIR holds weights fetched at build time (below) or at first start.
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PROMETHEUS_MULTIPROC_DIR=/tmp/prometheus-multiproc \
    ANIMEGAN_CACHE_DIR=/var/cache/animegan \
    ANIMEGAN_LOG_FORMAT=json \
    ANIMEGAN_HEALTHCHECK=api

# oneDNN for the native bf16 kernels (the -dev package names the library of any Debian release).
# Versions are the base image's Debian release's own (DL3008: a pin would break on the next one).
# hadolint ignore=DL3008
RUN apt-get update \
    && apt-get install -y --no-install-recommends libdnnl-dev \
    && rm -rf /var/lib/apt/lists/*
COPY --from=build /opt/venv /opt/venv
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
