#!/usr/bin/env bash
# Set up (first time only) and start the assistant. Arguments go to `python -m pipecatapp`;
# with none it serves the browser client at http://127.0.0.1:7860 and starts a local
# llama-server on SmolLM2.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
venv="$("$root/scripts/setup.sh" run)"
# Stay in the caller's directory, so that relative paths (--input q.wav) mean what they say.
export PYTHONPATH="$root${PYTHONPATH:+:$PYTHONPATH}"
exec "$venv/bin/python" -m pipecatapp "$@"
