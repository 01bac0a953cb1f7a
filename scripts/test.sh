#!/usr/bin/env bash
# Set up (first time only) and run every check: ruff, then pytest (unit, end-to-end with real
# models and audio, the Ansible lint and molecule scenario, the Nomad job checks, the ring
# tests, the benchmark smoke pass). Extra arguments go to pytest (e.g. -m "not molecule").
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
venv="$("$root/scripts/setup.sh" test)"
cd "$root"
export PATH="$venv/bin:$PATH" HF_HUB_OFFLINE=1
echo "==> ruff" >&2
ruff check .
echo "==> pytest" >&2
exec python -m pytest -ra --durations=15 "$@"
