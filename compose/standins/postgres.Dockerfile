# Stand-in for postgres:15.13-bookworm, for scripts/compose-run.sh only (no container registry is
# reachable here): Debian 12's PostgreSQL 15 with an entrypoint that honours what compose/compose.yaml
# relies on: POSTGRES_USER, POSTGRES_PASSWORD, POSTGRES_DB, the data directory
# /var/lib/postgresql/data, listening on every address, pg_isready and psql on PATH.
FROM debian:12.15-slim
# No cluster from the package's postinst (the entrypoint makes one in the volume), and no service
# started during the build (policy-rc.d, as in Debian's own container images).
# hadolint ignore=DL3008
RUN mkdir -p /etc/postgresql-common \
    && echo 'create_main_cluster = false' > /etc/postgresql-common/createcluster.conf \
    && printf '#!/bin/sh\nexit 101\n' > /usr/sbin/policy-rc.d && chmod 0755 /usr/sbin/policy-rc.d \
    && apt-get update \
    && apt-get install -y --no-install-recommends postgresql-15 \
    && rm -rf /var/lib/apt/lists/* /usr/sbin/policy-rc.d
ENV PATH=/usr/lib/postgresql/15/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
    PGDATA=/var/lib/postgresql/data
COPY postgres-entrypoint.sh /usr/local/bin/docker-entrypoint.sh
VOLUME /var/lib/postgresql/data
EXPOSE 5432
STOPSIGNAL SIGINT
ENTRYPOINT ["docker-entrypoint.sh"]
CMD ["postgres"]
