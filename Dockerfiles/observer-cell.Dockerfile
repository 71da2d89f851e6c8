# observer-cell: records one live channel (started by the mothership).
#
# With a registry:  docker build -f Dockerfiles/observer-cell.Dockerfile -t colony-observer-cell .
#   The last stage is the default: the binary is built from this checkout in
#   RUST_IMAGE and copied onto BASE_IMAGE.
# Without one:      Dockerfiles/build.sh (air-gapped hosts, this repo's CI). It
#   passes a debootstrap-made BASE_IMAGE and builds --target prebuilt, which
#   takes $BINARY_DIR/observer-cell from the build context and never reaches the
#   Rust stage (so the stages are ordered for the classic builder too).
#
# Build arguments:
#   BASE_IMAGE   runtime base, Debian bookworm family   default debian:bookworm-slim
#   RUST_IMAGE   build image                             default rust:1-bookworm
#   BINARY_DIR   --target prebuilt only: where the binary is (default target/release)
#
# The image carries the pinned resolvers of Dockerfiles/resolvers.txt
# (streamlink, yt-dlp) in the venv /opt/colony/resolvers, and allows them with
# COLONY_RESOLVERS; see Dockerfiles/resolvers.in to move a pin.
ARG BASE_IMAGE=debian:bookworm-slim
ARG RUST_IMAGE=rust:1-bookworm

FROM ${BASE_IMAGE} AS runtime
# Installs only what the base lacks, so a base that already carries it (the
# debootstrap one) needs no network here.
RUN set -eu; need=""; \
    [ -e /etc/ssl/certs/ca-certificates.crt ] || need="ca-certificates"; \
    [ -x /opt/colony/resolvers/bin/streamlink ] || need="$need python3 python3-venv"; \
    command -v ffmpeg >/dev/null || need="$need ffmpeg"; \
    if [ -n "$need" ]; then \
        apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends $need \
        && rm -rf /var/lib/apt/lists/*; \
    fi; \
    useradd --uid 10001 --user-group --home-dir /var/lib/colony --create-home --shell /usr/sbin/nologin colony; \
    install -d -o colony -g colony -m 0700 /var/lib/colony/spool
# The resolvers, hash-checked from the lock. A base that carries the venv
# (the debootstrap one) must carry exactly this lock: pip checks it offline
# (--no-index) and the build fails on a stale base instead of shipping it.
COPY Dockerfiles/resolvers.txt /opt/colony/resolvers/requirements.txt
RUN set -eu; venv=/opt/colony/resolvers; index=--no-index; \
    if [ ! -x $venv/bin/streamlink ]; then python3 -m venv $venv; index=""; fi; \
    $venv/bin/pip install -q --no-cache-dir --no-input --disable-pip-version-check $index \
        --require-hashes --only-binary :all: -r $venv/requirements.txt; \
    ln -sf $venv/bin/streamlink $venv/bin/yt-dlp /usr/local/bin/; \
    streamlink --version; yt-dlp --version
# The resolver programs this image carries, allowed for resolver commands;
# an operator may still narrow or widen the list.
ENV COLONY_RESOLVERS=streamlink,yt-dlp
# The docker launcher mounts a named volume here; a new volume takes this
# directory's owner and mode.
ENV COLONY_SPOOL_DIR=/var/lib/colony/spool
USER colony:colony
WORKDIR /var/lib/colony
ENV TMPDIR=/tmp COLONY_LOG_FORMAT=json
ENTRYPOINT ["/usr/local/bin/observer-cell"]

FROM runtime AS prebuilt
ARG BINARY_DIR=target/release
COPY ${BINARY_DIR}/observer-cell /usr/local/bin/observer-cell

FROM ${RUST_IMAGE} AS build
WORKDIR /src
COPY . .
# The release profile keeps line tables for backtraces; the image keeps the
# symbols but not the debug info (about 180 MB → 33 MB).
RUN cargo build --release --locked -p observer-cell \
 && objcopy --strip-debug target/release/observer-cell /usr/local/bin/observer-cell

FROM runtime
COPY --from=build /usr/local/bin/observer-cell /usr/local/bin/observer-cell
