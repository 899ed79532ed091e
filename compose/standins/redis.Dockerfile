# Stand-in for redis:7.2.5-bookworm, for scripts/compose-run.sh only (no container registry is reachable
# here): Debian 12's redis-server 7.0 and redis-cli, working directory /data, and an entrypoint that
# starts redis-server as the redis user with protected mode off, as the official image does.
FROM debian:12.15-slim
# hadolint ignore=DL3008
RUN printf '#!/bin/sh\nexit 101\n' > /usr/sbin/policy-rc.d && chmod 0755 /usr/sbin/policy-rc.d \
    && apt-get update \
    && apt-get install -y --no-install-recommends redis-server \
    && rm -rf /var/lib/apt/lists/* /usr/sbin/policy-rc.d \
    && mkdir -p /data && chown redis:redis /data
COPY redis-entrypoint.sh /usr/local/bin/docker-entrypoint.sh
VOLUME /data
WORKDIR /data
EXPOSE 6379
ENTRYPOINT ["docker-entrypoint.sh"]
CMD ["redis-server"]
