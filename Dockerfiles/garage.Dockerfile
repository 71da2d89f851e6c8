# garage: Garage (S3 API) for infra/compose.yaml, so the stack needs no
# registry image. Garage's own image is FROM scratch with the binary at
# /garage; this one keeps that path (and puts garage on PATH), so the
# commands in infra/compose.yaml and infra/README.md work with either.
#
# With a registry:  docker build -f Dockerfiles/garage.Dockerfile -t colony-garage:local .
#   The last stage is the default: `cargo install garage` in RUST_IMAGE,
#   copied onto BASE_IMAGE.
# Without one:      Dockerfiles/build.sh --infra. It builds --target prebuilt
#   with the binary that `cargo install garage --locked` left in
#   ~/.cargo/bin, never reaching the Rust stage.
#
# Build arguments:
#   BASE_IMAGE       runtime base, Debian bookworm family   default debian:bookworm-slim
#   RUST_IMAGE       build image                             default rust:1-bookworm
#   GARAGE_VERSION   the crates.io version the build stage installs (default 2.5.0)
#   BINARY_DIR       --target prebuilt only: where the binary is in the build
#                    context (default target/image; build.sh passes a context
#                    holding just the binary, and BINARY_DIR=.)
#
# The binary links glibc only (libc, libm, libgcc_s), which every Debian base
# carries; its CLI reads the same config and GARAGE_RPC_SECRET as the server,
# so `docker compose exec garage /garage status` works.
ARG BASE_IMAGE=debian:bookworm-slim
ARG RUST_IMAGE=rust:1-bookworm

FROM ${BASE_IMAGE} AS runtime
RUN install -d /var/lib/garage/meta /var/lib/garage/data
ENV RUST_LOG=garage=info
EXPOSE 3900 3901
# As in Garage's own image: no entrypoint, the command names the binary.
CMD ["/garage", "server"]

FROM runtime AS prebuilt
ARG BINARY_DIR=target/image
COPY ${BINARY_DIR}/garage /usr/local/bin/garage
RUN ln -s /usr/local/bin/garage /garage && garage --version

FROM ${RUST_IMAGE} AS build
ARG GARAGE_VERSION=2.5.0
RUN cargo install garage --locked --version "${GARAGE_VERSION}" --root /usr/local \
 && objcopy --strip-debug /usr/local/bin/garage

FROM runtime
COPY --from=build /usr/local/bin/garage /usr/local/bin/garage
RUN ln -s /usr/local/bin/garage /garage && garage --version
