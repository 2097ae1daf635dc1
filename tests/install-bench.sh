#!/usr/bin/env bash
# Installs the peer of the ingest benchmark (`cargo bench --bench ingest`): the rotel OTLP collector
# (Rust; its PyPI wheel bundles the `rotel-agent` binary inside the package folder) into this
# repository's `.tools/venv`, and prints the absolute path of `rotel-agent` as the last line of
# stdout. Idempotent: no network when rotel is already installed.
#
#   ROTEL_AGENT="$(bash tests/install-bench.sh | tail -n 1)" cargo bench --bench ingest
#
# The benchmark itself installs nothing; without ROTEL_AGENT it looks for the binary in the same
# place this script puts it. `taskset` (util-linux) pins each server to one core when present.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="$ROOT/.tools/venv"
PY="${PYTHON:-python3}"

log() { printf 'install-bench: %s\n' "$*" >&2; }

if ! "$VENV/bin/python" -c 'import sys' >/dev/null 2>&1; then
  log "creating $VENV"
  rm -rf "$VENV"
  mkdir -p "$ROOT/.tools"
  "$PY" -m venv "$VENV"
fi

# Finds rotel-agent inside the installed package folder (the wheel puts it next to the Python code,
# not in the venv's bin/).
find_rotel_agent() {
  local pkg
  pkg="$("$VENV/bin/python" -c 'import os, rotel; print(os.path.dirname(rotel.__file__))' 2>/dev/null)" \
    || return 1
  find "$pkg" -type f -name rotel-agent -perm -u+x 2>/dev/null | head -n 1
}

agent="$(find_rotel_agent || true)"
if [ -z "$agent" ]; then
  log "pip install --pre rotel"
  "$VENV/bin/python" -m pip install -q --disable-pip-version-check --pre rotel
  agent="$(find_rotel_agent || true)"
fi
if [ -z "$agent" ]; then
  # Older or newer wheels may keep the binary elsewhere in the distribution: search its file list.
  agent="$("$VENV/bin/python" - <<'EOF' || true
import importlib.metadata as md, os
for f in md.distribution("rotel").files or []:
    if os.path.basename(str(f)) == "rotel-agent":
        p = os.path.realpath(f.locate())
        if os.path.isfile(p):
            print(p)
            break
EOF
)"
fi
if [ -z "$agent" ] || [ ! -f "$agent" ]; then
  log "rotel-agent not found in the rotel package"
  exit 1
fi
[ -x "$agent" ] || chmod +x "$agent"

command -v taskset >/dev/null 2>&1 || log "taskset (util-linux) not found: servers will not be pinned"
"$agent" --version >&2 2>/dev/null || true
printf '%s\n' "$agent"
