#!/bin/sh
# Entrypoint of the redis stand-in (redis.Dockerfile). Like the official image's: options alone mean
# redis-server; as root, /data is given to the redis user and the server drops to it. The official image
# is built with protected mode off (it has no password and must answer other containers); Debian's
# binary is not, so the option is passed here.
set -eu

case "${1:-}" in
  -*) set -- redis-server "$@" ;;
esac

if [ "${1:-}" = redis-server ]; then
  if [ "$(id -u)" = 0 ]; then
    find . \! -user redis -exec chown redis:redis '{}' +
    exec setpriv --reuid=redis --regid=redis --init-groups "$0" "$@"
  fi
  shift
  exec redis-server --protected-mode no "$@"
fi
exec "$@"
