# Stand-in for python:3.11-slim, built on the Debian 12 minbase the image tests make with
# debootstrap (no registry is reachable): Debian's Python 3.11 with venv and its headers, linked
# where the official image keeps its own (/usr/local/bin/python, /usr/local/include/python3.11).
ARG DEBIAN_IMAGE
FROM ${DEBIAN_IMAGE}
# hadolint ignore=DL3008
RUN apt-get update \
    && apt-get install -y --no-install-recommends python3 python3-venv python3-dev ca-certificates netbase tzdata \
    && rm -rf /var/lib/apt/lists/* \
    && for name in python python3 python3.11; do ln -s /usr/bin/python3.11 "/usr/local/bin/${name}"; done \
    && ln -s /usr/include/python3.11 /usr/local/include/python3.11
ENV LANG=C.UTF-8
CMD ["python3"]
