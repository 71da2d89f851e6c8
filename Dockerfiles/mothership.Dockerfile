# mothership: the control plane: one reconcile pass per `tick`, or `run --every`.
#
# With a registry:  docker build -f Dockerfiles/mothership.Dockerfile -t colony-mothership .
#   The last stage is the default: the binary is built from this checkout in
#   RUST_IMAGE and copied onto BASE_IMAGE.
# Without one:      Dockerfiles/build.sh (air-gapped hosts, this repo's CI). It
#   passes a debootstrap-made BASE_IMAGE and builds --target prebuilt, which
#   takes $BINARY_DIR/mothership from the build context and never reaches the
#   Rust stage (so the stages are ordered for the classic builder too).
#
# Build arguments:
#   BASE_IMAGE   runtime base, Debian bookworm family   default debian:bookworm-slim
#   RUST_IMAGE   build image                             default rust:1-bookworm
#   BINARY_DIR   --target prebuilt only: where the binary is (default target/release)
ARG BASE_IMAGE=debian:bookworm-slim
ARG RUST_IMAGE=rust:1-bookworm

FROM ${BASE_IMAGE} AS runtime
# Installs only what the base lacks, so a base that already carries it (the
# debootstrap one) needs no network here.
RUN set -eu; need=""; \
    [ -e /etc/ssl/certs/ca-certificates.crt ] || need="ca-certificates"; \
    if [ -n "$need" ]; then \
        apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends $need \
        && rm -rf /var/lib/apt/lists/*; \
    fi; \
    useradd --uid 10001 --user-group --home-dir /var/lib/colony --create-home --shell /usr/sbin/nologin colony
USER colony:colony
WORKDIR /var/lib/colony
ENV TMPDIR=/tmp COLONY_LOG_FORMAT=json
ENTRYPOINT ["/usr/local/bin/mothership"]

FROM runtime AS prebuilt
ARG BINARY_DIR=target/release
COPY ${BINARY_DIR}/mothership /usr/local/bin/mothership

FROM ${RUST_IMAGE} AS build
WORKDIR /src
COPY . .
# The release profile keeps line tables for backtraces; the image keeps the
# symbols but not the debug info (about 180 MB → 33 MB).
RUN cargo build --release --locked -p mothership \
 && objcopy --strip-debug target/release/mothership /usr/local/bin/mothership

FROM runtime
COPY --from=build /usr/local/bin/mothership /usr/local/bin/mothership
