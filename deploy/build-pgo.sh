#!/usr/bin/env bash
# Builds the release binary with profile-guided optimisation (PGO):
#   1. an instrumented release build (`-Cprofile-generate`);
#   2. training: it serves the ingest benchmark's OTLP load (tests/bench: logs, spans and metric
#      points over HTTP and gRPC, then the fixed-rate mix) for a few seconds per mode, and writes
#      its profile when it shuts down;
#   3. the final release build uses that profile (`-Cprofile-use`) to lay out hot and cold code
#      and to guide inlining.
# The result is target/pgo/release/pipewarden (same features and behaviour as the plain release
# build). It needs the `llvm-tools` rustup component, which it adds when missing.
#
#   bash deploy/build-pgo.sh               # the release build: fat LTO, about three release builds
#   PGO_QUICK=1 bash deploy/build-pgo.sh   # no LTO, 1 s of training per mode, unoptimised load: checks the steps
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD
data="$root/target/pgo-data"
log() { echo "build-pgo: $*" >&2; }

duration=3
fixed_duration=5
# The load generator is built like `cargo bench` builds it (reusing the usual release build).
# The quick mode builds it as `cargo test` does (the test profile, reusing the test build: a few
# seconds instead of another optimised build of every dependency) and runs it with `--bench`; an
# unoptimised generator cannot load the server as hard, which a check of the steps does not need.
train=(cargo bench --locked --bench ingest --)
if [ -n "${PGO_QUICK:-}" ]; then
    export CARGO_PROFILE_RELEASE_LTO=false CARGO_PROFILE_RELEASE_CODEGEN_UNITS=16
    duration=1
    fixed_duration=1
    train=(cargo test --locked --bench ingest -- --bench)
fi

if ! rustup component list --installed 2>/dev/null | grep -q '^llvm-tools'; then
    log "adding the llvm-tools rustup component (for llvm-profdata)"
    rustup component add llvm-tools >&2
fi
host=$(rustc -vV | sed -n 's/^host: //p')
profdata="$(rustc --print sysroot)/lib/rustlib/$host/bin/llvm-profdata"
if [ ! -x "$profdata" ]; then
    log "llvm-profdata not found at $profdata"
    exit 1
fi

rm -rf "$data"
mkdir -p "$data/build" "$data/train"

log "1/4 instrumented build (target/pgo-generate)"
# Build scripts are instrumented too; they write their profiles apart, under build/.
CARGO_TARGET_DIR="$root/target/pgo-generate" RUSTFLAGS="-Cprofile-generate=$data/build" \
    cargo build --release --locked --bin pipewarden

log "2/4 training on the ingest benchmark's load"
# Only the server is instrumented; it writes one profile per process when it exits.
LLVM_PROFILE_FILE="$data/train/pipewarden-%p-%m.profraw" "${train[@]}" --targets pipewarden \
    --pipewarden "$root/target/pgo-generate/release/pipewarden" --modes all --reps 1 \
    --warmup 1 --duration "$duration" --fixed-duration "$fixed_duration" >&2
shopt -s nullglob
profiles=("$data"/train/*.profraw)
if [ "${#profiles[@]}" -lt 7 ]; then
    log "training wrote ${#profiles[@]} profiles, expected one per mode (7)"
    exit 1
fi

log "3/4 merging ${#profiles[@]} profiles"
"$profdata" merge -o "$data/pipewarden.profdata" "${profiles[@]}"

log "4/4 optimised build (target/pgo)"
CARGO_TARGET_DIR="$root/target/pgo" RUSTFLAGS="-Cprofile-use=$data/pipewarden.profdata" \
    cargo build --release --locked --bin pipewarden
"$root/target/pgo/release/pipewarden" --version >&2
echo "$root/target/pgo/release/pipewarden"
