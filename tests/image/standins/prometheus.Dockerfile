# Stand-in for prom/prometheus, built on the Debian 12 minbase: Debian's prometheus binary as the
# entrypoint (the compose file passes only flags), as nobody, data in /prometheus; wget for the
# compose health check (the official image has busybox's). The JavaScript of the classic console
# pages (/usr/share/javascript, 218 MB) goes: the tests use the HTTP API.
ARG DEBIAN_IMAGE
FROM ${DEBIAN_IMAGE}
# hadolint ignore=DL3008
RUN apt-get update \
    && apt-get install -y --no-install-recommends prometheus wget \
    && rm -rf /var/lib/apt/lists/* /usr/share/javascript \
    && install -d -o nobody -g nogroup /prometheus
WORKDIR /prometheus
VOLUME /prometheus
USER 65534:65534
EXPOSE 9090
ENTRYPOINT ["/usr/bin/prometheus"]
CMD ["--config.file=/etc/prometheus/prometheus.yml", "--storage.tsdb.path=/prometheus"]
