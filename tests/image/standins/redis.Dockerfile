# Stand-in for the redis image, built on the Debian 12 minbase: Debian's redis-server. As in the
# official image, it runs as the redis user in /data, and protected mode is off (the official
# image builds Redis so; the network of the containers is the boundary).
ARG DEBIAN_IMAGE
FROM ${DEBIAN_IMAGE}
# The entrypoint's $1 and $@ are meant for the script, not this shell.
# hadolint ignore=DL3008,SC2016
RUN apt-get update \
    && apt-get install -y --no-install-recommends redis-server \
    && rm -rf /var/lib/apt/lists/* \
    && install -d -o redis -g redis /data \
    && printf '#!/bin/sh\nif [ "$1" = redis-server ]; then shift; set -- redis-server --protected-mode no "$@"; fi\nexec "$@"\n' \
        > /usr/local/bin/redis-entrypoint \
    && chmod 0755 /usr/local/bin/redis-entrypoint
WORKDIR /data
VOLUME /data
# hadolint ignore=DL3066
USER redis
EXPOSE 6379
ENTRYPOINT ["redis-entrypoint"]
CMD ["redis-server"]
