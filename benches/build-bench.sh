#!/usr/bin/env bash
# Build times and binary sizes of two revisions, measured in one run on this
# machine (docs/BENCHMARKS.md, "Build"). For each revision, in a worktree of
# its own with an empty target directory:
#   1. a clean `cargo build --workspace` (dependencies included);
#   2. an incremental rebuild after touching the planner;
#   3. an incremental rebuild after touching the recorder;
#   4. the size of each binary, as built and stripped of debug info.
# The planner and the recorder are found where each revision keeps them.
#
#   bash benches/build-bench.sh [BEFORE [AFTER]]     (default: 2eb226d HEAD)
set -euo pipefail
cd "$(dirname "$0")/.."
before=${1:-2eb226d}
after=${2:-HEAD}
work=${BUILD_BENCH_DIR:-/tmp/colony-build-bench}
jobs=${CARGO_BUILD_JOBS:-$(nproc)}

first() { for f in "$@"; do [[ -e $f ]] && { echo "$f"; return; }; done; echo "none of: $*" >&2; exit 1; }
secs() { local t0 t1; t0=$(date +%s.%N); "$@" >/dev/null 2>&1; t1=$(date +%s.%N); echo "$t1 - $t0" | bc; }
size() { stat -c %s "$1"; }
stripped() { objcopy --strip-debug "$1" "$1.stripped" && stat -c %s "$1.stripped" && rm -f "$1.stripped"; }

measure() {
    local rev=$1 dir
    dir="$work/$(git rev-parse --short "$rev")"
    rm -rf "$dir"
    git worktree add -f --detach "$dir" "$rev" >/dev/null 2>&1
    (
        cd "$dir"
        export CARGO_TARGET_DIR="$dir/target" CARGO_BUILD_JOBS=$jobs
        cargo fetch --locked >/dev/null 2>&1
        clean=$(secs cargo build --workspace --locked --offline)
        planner=$(first mothership/planner/src/lib.rs shared/src/mothership/planner.rs)
        recorder=$(first observer-cell/src/recorder.rs shared/src/observer/recorder.rs)
        touch "$planner"
        after_planner=$(secs cargo build --workspace --locked --offline)
        touch "$recorder"
        after_recorder=$(secs cargo build --workspace --locked --offline)
        printf '%s clean=%.0fs planner=%.1fs recorder=%.1fs' "$(git rev-parse --short HEAD)" "$clean" "$after_planner" "$after_recorder"
        for bin in mothership observer-cell harvest-cell; do
            printf ' %s=%s/%s' "$bin" "$(size target/debug/$bin)" "$(stripped target/debug/$bin)"
        done
        echo
    )
    git worktree remove --force "$dir"
}

echo "build-bench: $jobs jobs; sizes in bytes as built/stripped of debug info"
measure "$before"
measure "$after"
