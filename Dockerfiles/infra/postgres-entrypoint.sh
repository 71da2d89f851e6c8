#!/bin/sh
# Entrypoint of colony-postgres (Dockerfiles/postgres.Dockerfile): initdb on
# first start from POSTGRES_USER / POSTGRES_PASSWORD / POSTGRES_DB, then the
# server in the foreground as the `postgres` user.
set -eu
: "${PGDATA:=/var/lib/postgresql/data}"
: "${POSTGRES_USER:=postgres}"
: "${POSTGRES_DB:=$POSTGRES_USER}"

if [ "$(id -u)" = 0 ]; then
    # A new named volume is root's: hand it to postgres, then drop root.
    install -d -o postgres -g postgres -m 0700 "$PGDATA"
    chown postgres:postgres "$PGDATA"
    exec setpriv --reuid=postgres --regid=postgres --init-groups "$0" "$@"
fi

if [ ! -s "$PGDATA/PG_VERSION" ]; then
    if [ -z "${POSTGRES_PASSWORD:-}" ]; then
        echo "colony-postgres: POSTGRES_PASSWORD is empty: set it (the server listens on the network with password auth)" >&2
        exit 2
    fi
    echo "colony-postgres: first start: initdb in $PGDATA (superuser $POSTGRES_USER, database $POSTGRES_DB)" >&2
    pwfile=$(mktemp)
    printf '%s\n' "$POSTGRES_PASSWORD" >"$pwfile"
    initdb -D "$PGDATA" -U "$POSTGRES_USER" --pwfile="$pwfile" -E UTF8 --locale=C.UTF-8 \
        --auth-local=trust --auth-host=scram-sha-256 >/dev/null
    rm -f "$pwfile"
    # Every address, password auth: the compose network and the published port.
    printf '%s\n' "host all all 0.0.0.0/0 scram-sha-256" "host all all ::/0 scram-sha-256" >>"$PGDATA/pg_hba.conf"
    printf '%s\n' "listen_addresses = '*'" >>"$PGDATA/postgresql.conf"
    if [ "$POSTGRES_DB" != postgres ]; then
        # Single-user mode: nothing listens until the database exists, so the
        # healthcheck cannot pass on a half-made cluster.
        echo "CREATE DATABASE \"$POSTGRES_DB\" OWNER \"$POSTGRES_USER\"" |
            postgres --single -D "$PGDATA" postgres >/dev/null
    fi
fi
exec postgres -D "$PGDATA" "$@"
