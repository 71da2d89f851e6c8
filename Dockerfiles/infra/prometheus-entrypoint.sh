#!/bin/sh
# Entrypoint of colony-prometheus (Dockerfiles/prometheus.Dockerfile): put the
# dashboard's bearer token where infra/prometheus/prometheus.yml reads it, then
# run Prometheus with the given flags.
set -eu
umask 077
printf '%s' "${COLONY_WEB_TOKEN:-}" >/run/colony/web-token
exec prometheus "$@"
