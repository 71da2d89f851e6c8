#!/usr/bin/env bash
# Build Colony's three images on a machine that cannot reach a container
# registry: a Debian bookworm root filesystem made by debootstrap and loaded
# with `docker import` stands in for debian:bookworm-slim, and the binaries
# come from this checkout's cargo build instead of the official Rust image.
# Both bases also carry python3 and the pinned resolvers of
# Dockerfiles/resolvers.txt (streamlink, yt-dlp) in the venv
# /opt/colony/resolvers; bases made from another lock are remade. The
# Dockerfiles are the same ones a user with a registry builds with plain
# `docker build -f Dockerfiles/<name>.Dockerfile .`.
#
#   Dockerfiles/build.sh                    # release build, tags :latest
#   Dockerfiles/build.sh --profile debug --tag dev --no-cargo
#   Dockerfiles/build.sh --base-only        # just the two base images
#   Dockerfiles/build.sh --infra            # also the images of infra/compose.yaml
#
# With --infra it also builds the service images that infra/compose.yaml runs,
# so the whole stack comes from this machine: colony-postgres:bookworm
# (Debian's postgresql-15), colony-prometheus:bookworm (Debian's prometheus),
# both installed by apt in a Dockerfile RUN step on the slim base, and
# colony-garage:local, the binary that `cargo install garage --locked` left on
# PATH or in ~/.cargo/bin (GARAGE_BIN overrides), on the slim base.
#
# Needs root (debootstrap, chroot), debootstrap, and the Docker engine; making
# the bases also needs the network (the Debian mirror and PyPI), and so do the
# postgres and prometheus images (the Debian mirror, from `docker build`).
set -euo pipefail
cd "$(dirname "$0")/.."

profile=release tag=latest cargo=1 base_only=0 rebuild_base=0
mirror=${DEBIAN_MIRROR:-http://deb.debian.org/debian}
suite=bookworm
base=colony-base:$suite
media_base=colony-base-ffmpeg:$suite
images=(mothership observer-cell harvest-cell)
infra=0 infra_only=0
# The service images of infra/compose.yaml: image=Dockerfile (all on $base).
infra_images=(colony-postgres:$suite=postgres colony-garage:local=garage colony-prometheus:$suite=prometheus)
# The resolvers' lock, and where the bases carry the venv made from it.
lock=Dockerfiles/resolvers.txt
venv=/opt/colony/resolvers

usage() {
    sed -n '2,/^set /s/^# \{0,1\}//p' "$0"
    cat <<USAGE

Options:
  --profile NAME    cargo profile whose binaries go into the images (default release)
  --tag TAG         image tag (default latest): colony-<binary>:TAG
  --no-cargo        use the binaries already in target/<profile>/ as they are
  --base-only       build the base images ($base, $media_base) and stop
  --rebuild-base    remake the base images even if they exist
  --infra           also build the images infra/compose.yaml runs:
                    ${infra_images[*]%%=*}
  --infra-only      build the bases if missing, then only those three
  -h, --help        this help

Environment: DEBIAN_MIRROR (default $mirror), PIP_INDEX_URL (a PyPI mirror
for the resolvers; the lock's hashes still apply), DOCKER_HOST, GARAGE_BIN
(the garage binary for --infra; default: garage on PATH, else ~/.cargo/bin/garage).
USAGE
}

while (($#)); do
    case $1 in
        --profile) profile=${2:?--profile needs a name}; shift 2 ;;
        --tag) tag=${2:?--tag needs a tag}; shift 2 ;;
        --no-cargo) cargo=0; shift ;;
        --base-only) base_only=1; shift ;;
        --rebuild-base) rebuild_base=1; shift ;;
        --infra) infra=1; shift ;;
        --infra-only) infra=1 infra_only=1; shift ;;
        -h | --help) usage; exit 0 ;;
        *) echo "build.sh: unknown option '$1' (try --help)" >&2; exit 2 ;;
    esac
done

log() { printf '==> %s\n' "$*" >&2; }
die() { printf 'build.sh: %s\n' "$*" >&2; exit 1; }

docker info >/dev/null 2>&1 || die "the Docker engine is not reachable (is dockerd running? DOCKER_HOST=${DOCKER_HOST:-unset})"
have_image() { docker image inspect "$1" >/dev/null 2>&1; }
[[ -f $lock ]] || die "$lock is missing (see Dockerfiles/resolvers.in)"
lock_sha=$(sha256sum "$lock" | cut -d' ' -f1)
# A base records the lock it was made from (docker import takes ENV, not LABEL).
carries_lock() {
    docker image inspect --format '{{range .Config.Env}}{{println .}}{{end}}' "$1" 2>/dev/null |
        grep -qx "COLONY_RESOLVERS_LOCK=$lock_sha"
}

# Drop what a runtime image never reads: docs, man pages, locales, apt lists.
trim() {
    local root=$1
    rm -rf "$root"/usr/share/{doc,man,info,locale,lintian,linda}/* \
        "$root"/var/lib/apt/lists/* "$root"/var/cache/apt/*.bin "$root"/var/cache/apt/archives/*.deb \
        "$root"/var/log/*.log "$root"/var/log/apt/* "$root"/tmp/* "$root"/root/.cache
}

import() {
    local root=$1 image=$2
    tar -C "$root" --numeric-owner -c . |
        docker import --change 'ENV LANG=C.UTF-8 PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
            --change "ENV COLONY_RESOLVERS_LOCK=$lock_sha" --change 'CMD ["bash"]' - "$image" >/dev/null
    log "imported $image ($(docker image inspect --format '{{.Size}}' "$image" | numfmt --to=iec))"
}

build_bases() {
    [[ $(id -u) == 0 ]] || die "making the base images needs root (debootstrap, chroot); run with sudo, or build them elsewhere"
    command -v debootstrap >/dev/null || die "debootstrap is missing: apt-get install debootstrap"
    local work
    work=$(mktemp -d /var/tmp/colony-rootfs.XXXXXX)
    # shellcheck disable=SC2064
    trap "umount -l '$work'/slim/proc '$work'/media/proc 2>/dev/null || true; rm -rf '$work'" EXIT
    log "debootstrap $suite (minbase + ca-certificates) from $mirror: about 2 minutes"
    debootstrap --variant=minbase --include=ca-certificates "$suite" "$work/slim" "$mirror" >"$work/debootstrap.log" 2>&1 ||
        { tail -20 "$work/debootstrap.log" >&2; die "debootstrap failed (log above)"; }
    # bookworm-slim also ships the security and updates suites.
    cat >"$work/slim/etc/apt/sources.list" <<SOURCES
deb $mirror $suite main
deb $mirror $suite-updates main
deb ${mirror%/debian}/debian-security $suite-security main
SOURCES
    # Into the slim rootfs, before the cell base is copied from it: the
    # mothership's resolver probe also runs streamlink. The chroot gets a clean
    # environment, so this host's pip configuration stays out; the image keeps
    # the lock it was installed from next to the venv. pip checks PyPI's
    # certificate against this host's CA bundle, not the new rootfs's: a host
    # behind a TLS-inspecting proxy trusts the proxy's CA only there. What is
    # installed is still decided by the lock's hashes.
    log "adding python3 and the pinned resolvers ($lock: streamlink, yt-dlp) to both bases"
    mkdir -p "$work/slim$venv"
    cp "$lock" "$work/slim$venv/requirements.txt"
    local host_ca=${PIP_CERT:-${SSL_CERT_FILE:-/etc/ssl/certs/ca-certificates.crt}} pip_ca=
    if [[ -f $host_ca ]]; then
        cp "$host_ca" "$work/slim/tmp/host-ca.crt"
        pip_ca=/tmp/host-ca.crt
    fi
    cp /etc/resolv.conf "$work/slim/etc/resolv.conf"
    mount -t proc proc "$work/slim/proc"
    env -i PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin HOME=/root LANG=C.UTF-8 DEBIAN_FRONTEND=noninteractive \
        ${PIP_INDEX_URL:+PIP_INDEX_URL="$PIP_INDEX_URL"} ${pip_ca:+PIP_CERT="$pip_ca"} chroot "$work/slim" /bin/sh -c "set -e
        apt-get update -q
        apt-get install -y -q --no-install-recommends python3 python3-venv
        apt-get clean
        python3 -m venv $venv
        $venv/bin/pip install --no-cache-dir --no-input --disable-pip-version-check \
            --require-hashes --only-binary :all: -r $venv/requirements.txt
        ln -s $venv/bin/streamlink $venv/bin/yt-dlp /usr/local/bin/
        streamlink --version
        yt-dlp --version" \
        >"$work/resolvers.log" 2>&1 || { tail -20 "$work/resolvers.log" >&2; die "installing the resolvers in the base failed (log above)"; }
    umount -l "$work/slim/proc"
    : >"$work/slim/etc/resolv.conf"
    rm -f "$work/slim/tmp/host-ca.crt"
    log "resolvers: $(tail -2 "$work/resolvers.log" | paste -sd' ' -)"
    log "adding ffmpeg for the cell base"
    cp -a "$work/slim" "$work/media"
    cp /etc/resolv.conf "$work/media/etc/resolv.conf"
    mount -t proc proc "$work/media/proc"
    chroot "$work/media" /bin/sh -c 'export DEBIAN_FRONTEND=noninteractive;
        apt-get update -q && apt-get install -y -q --no-install-recommends ffmpeg && apt-get clean' \
        >"$work/apt.log" 2>&1 || { tail -20 "$work/apt.log" >&2; die "installing ffmpeg in the cell base failed (log above)"; }
    umount -l "$work/media/proc"
    : >"$work/media/etc/resolv.conf"
    trim "$work/slim"
    trim "$work/media"
    import "$work/slim" "$base"
    import "$work/media" "$media_base"
    rm -rf "$work"
    trap - EXIT
}

if ((rebuild_base)) || ! have_image "$base" || ! have_image "$media_base"; then
    build_bases
elif ! carries_lock "$base" || ! carries_lock "$media_base"; then
    log "base images $base and $media_base were not made from the current $lock (sha256 ${lock_sha:0:12}): remaking them"
    build_bases
else
    log "base images $base and $media_base exist (--rebuild-base to remake them)"
fi
((base_only)) && exit 0

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

# The service images of infra/compose.yaml, on the slim base.
build_infra() {
    local garage=${GARAGE_BIN:-}
    if [[ -z $garage ]]; then
        garage=$(command -v garage 2>/dev/null || echo "$HOME/.cargo/bin/garage")
    fi
    [[ -x $garage ]] || die "no garage binary at '$garage': cargo install garage --locked (about 14 minutes), or set GARAGE_BIN"
    # A dynamically linked binary must find its libraries in the base: list
    # what ldd names beyond glibc, which the base carries.
    local extra
    extra=$(ldd "$garage" 2>/dev/null | awk '/=>/ { print $1 }' | grep -Ev '^(libc|libm|libgcc_s|libpthread|libdl|librt)\.so' || true)
    [[ -z $extra ]] || die "$garage links libraries the base may lack ($(echo $extra)): build it with the default features"
    command -v objcopy >/dev/null || die "objcopy is missing: apt-get install binutils"
    # Garage's build context is the binary alone (.dockerignore keeps
    # target/ out of the repository's context).
    mkdir -p "$tmp/garage"
    objcopy --strip-debug "$garage" "$tmp/garage/garage"
    log "garage for colony-garage:local: $("$tmp/garage/garage" --version 2>/dev/null | head -1) ($garage)"
    local entry image file
    for entry in "${infra_images[@]}"; do
        image=${entry%%=*} file=${entry#*=}
        log "docker build $image (Dockerfiles/$file.Dockerfile on $base)"
        local args=(.)
        [[ $file == garage ]] && args=(--target prebuilt --build-arg BINARY_DIR=. "$tmp/garage")
        DOCKER_BUILDKIT=0 docker build -q -f "Dockerfiles/$file.Dockerfile" \
            --build-arg BASE_IMAGE="$base" -t "$image" "${args[@]}" >/dev/null 2>"$tmp/build.err" ||
            { cat "$tmp/build.err" >&2; die "docker build of $image failed (above)"; }
        log "built $image ($(docker image inspect --format '{{.Size}}' "$image" | numfmt --to=iec))"
    done
}
if ((infra_only)); then
    build_infra
    exit 0
fi

# cargo calls the debug profile "dev"; its binaries live in target/debug.
case $profile in debug | dev) profile=dev dir=debug ;; *) dir=$profile ;; esac
if ((cargo)); then
    log "cargo build --profile $profile (the binaries the images carry)"
    cargo build --locked --profile "$profile" -p mothership -p observer-cell -p harvest-cell
fi
# The images carry the binaries without their debug info (symbols stay, so
# backtraces still name functions): a release binary shrinks from ~180 MB to ~33 MB.
command -v objcopy >/dev/null || die "objcopy is missing: apt-get install binutils"
mkdir -p target/image
for bin in "${images[@]}"; do
    [[ -x target/$dir/$bin ]] || die "target/$dir/$bin is missing: build it, or drop --no-cargo"
    objcopy --strip-debug "target/$dir/$bin" "target/image/$bin"
done

for bin in "${images[@]}"; do
    from=$base
    [[ $bin == mothership ]] || from=$media_base
    log "docker build colony-$bin:$tag (base $from, binary target/$dir/$bin without debug info)"
    # The classic builder: BuildKit needs the buildx plugin, which this kind of
    # machine may lack; the Dockerfiles are ordered so that it never reaches
    # the Rust stage with --target prebuilt.
    DOCKER_BUILDKIT=0 docker build -q -f "Dockerfiles/$bin.Dockerfile" --target prebuilt \
        --build-arg BASE_IMAGE="$from" --build-arg BINARY_DIR=target/image \
        -t "colony-$bin:$tag" . >/dev/null 2>"$tmp/build.err" ||
        { cat "$tmp/build.err" >&2; die "docker build of colony-$bin:$tag failed (above)"; }
    log "built colony-$bin:$tag ($(docker image inspect --format '{{.Size}}' "colony-$bin:$tag" | numfmt --to=iec))"
done
((infra)) && build_infra
exit 0
