# postgres: Debian's PostgreSQL for infra/compose.yaml, so the stack needs no
# registry image.
#
# With a registry:  docker build -f Dockerfiles/postgres.Dockerfile -t colony-postgres:bookworm .
# Without one:      Dockerfiles/build.sh --infra (passes the debootstrap base).
#
# Build arguments:
#   BASE_IMAGE   Debian bookworm family   default debian:bookworm-slim
#
# On first start (an empty PGDATA) the entrypoint runs initdb with
# POSTGRES_USER as the superuser and POSTGRES_PASSWORD as its password, and
# creates POSTGRES_DB; then it runs the server, listening on every address with
# scram-sha-256 password auth (trust only on the container's own socket, for
# pg_isready and maintenance through `docker compose exec`).
ARG BASE_IMAGE=debian:bookworm-slim
FROM ${BASE_IMAGE}
# No cluster at install time: the entrypoint makes it in the volume. The
# server binaries of bookworm's postgresql-15 live in /usr/lib/postgresql/15/bin.
RUN set -eu; \
    mkdir -p /etc/postgresql-common; \
    echo 'create_main_cluster = false' >/etc/postgresql-common/createcluster.conf; \
    apt-get update -q; \
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends postgresql-15; \
    apt-get clean; rm -rf /var/lib/apt/lists/*; \
    install -d -o postgres -g postgres -m 2775 /var/run/postgresql
COPY Dockerfiles/infra/postgres-entrypoint.sh /usr/local/bin/colony-postgres
ENV PATH=/usr/lib/postgresql/15/bin:$PATH PGDATA=/var/lib/postgresql/data
VOLUME /var/lib/postgresql/data
EXPOSE 5432
STOPSIGNAL SIGINT
ENTRYPOINT ["/usr/local/bin/colony-postgres"]
