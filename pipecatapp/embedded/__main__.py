"""``python -m pipecatapp.embedded prepare``: build or find llama-server and assemble the
embedded models, with progress; prints where everything is."""

from __future__ import annotations

import argparse
import sys

from pipecatapp.embedded import models
from pipecatapp.embedded.server import llama_bin_dir
from pipecatapp.errors import ConfigError, EngineUnavailable


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m pipecatapp.embedded")
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("prepare", help="build/find llama-server and assemble the embedded models")
    sub.add_parser("paths", help="print the paths without building anything")
    args = parser.parse_args(argv)
    try:
        bin_dir = llama_bin_dir(build=args.command == "prepare")
        paths = models.prepare_all() if args.command == "prepare" else {
            "llm": models.smollm2_gguf(), "piper": models.piper_voice(),
            "vad": models.silero_vad_onnx(),
        }
    except (ConfigError, EngineUnavailable) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    print(f"llama-server: {bin_dir / 'llama-server'}")
    for name, path in paths.items():
        print(f"{name}: {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
