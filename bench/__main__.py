"""``python -m bench [--suite llm|voice|components|soak|all] [--smoke]``: print markdown
tables, write plots.

``--smoke`` is the quick pass CI runs: the tiny random-weight GGUF instead of SmolLM2, two
prompt lengths, two rounds, and a two-turn voice conversation with the tiny model; the soak
suite always talks to SmolLM2 (its answers must be speakable) and runs 20 turns with
``--smoke`` instead of 200. ``all`` does not include the soak (about 30 minutes).
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
import tempfile
import time
from pathlib import Path

from bench import llm
from bench.common import Table, loadavg, machine, stamp
from devtools.tinygguf import write_tiny_gguf
from pipecatapp.embedded.models import cache_dir, smollm2_gguf
from pipecatapp.errors import ConfigError, EngineUnavailable

RESULTS = Path(__file__).resolve().parent / "results"


def _progress(message: str) -> None:
    print(f"[bench {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    parser.add_argument("--suite", choices=("llm", "tuning", "voice", "components", "soak",
                                            "all"),
                        default="all",
                        help="tuning: each llama-server setting against the app's, with the "
                             "memory and compute rooflines; soak: a long session (neither is "
                             "part of all)")
    parser.add_argument("--smoke", action="store_true",
                        help="quick pass with the tiny model (what CI runs)")
    parser.add_argument("--repeats", type=int, default=None,
                        help="rounds per LLM measurement (default 3, smoke 2)")
    parser.add_argument("--llm-lengths", default="",
                        help="user-text lengths in tokens, comma-separated "
                             "(default 32,128,512,1024; smoke 16,64)")
    parser.add_argument("--skip-loaded", action="store_true",
                        help="skip the LLM runs with one core kept busy (the slow part)")
    parser.add_argument("--builds", action="store_true",
                        help="LLM suite: only the portable and the native llama.cpp build, "
                             "1 thread each, side by side")
    parser.add_argument("--turns", type=int, default=None,
                        help="questions per voice of the scripted voice conversation (default "
                             "6 per voice, 10 with --voices 1, smoke 2; soak: user turns, "
                             "default 200, smoke 20)")
    parser.add_argument("--voices", type=int, default=None,
                        help="voice suite: how many voices of the panel (default all six, "
                             "smoke 1)")
    parser.add_argument("--profiles", default="stock,tuned",
                        help="voice suite: app profiles to run side by side (default stock,tuned); "
                        "PROFILE@REV runs the app of git revision REV in that profile, e.g. "
                        "tuned@v0.1,tuned compares a release with this checkout; "
                        "PROFILE+NAME=VALUE adds a setting to that profile alone, e.g. "
                        "tuned,tuned+turn.speculate=true")
    parser.add_argument("--set", dest="app_settings", action="append", default=[],
                        metavar="NAME=VALUE",
                        help="voice suite: an app setting for every profile, e.g. "
                             "--set turn.speech_timeout=0.15 (repeatable)")
    parser.add_argument("--out", type=Path, default=RESULTS,
                        help="where tables (results.md) and plots go (default bench/results)")
    args = parser.parse_args(argv)
    # SIGTERM unwinds like Ctrl-C, so every server and worker process is stopped.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    args.out.mkdir(parents=True, exist_ok=True)
    logs = args.out / "logs"
    logs.mkdir(exist_ok=True)
    header = [f"# Benchmark run {stamp()}{' (smoke)' if args.smoke else ''}", "",
              f"Machine: {machine()}", ""]
    print("\n".join(header), flush=True)
    sections: list[str] = []
    plots: list[Path] = []
    try:
        if args.smoke:
            tmp = Path(tempfile.mkdtemp(prefix="bench-tiny-", dir=cache_dir()
                                        if cache_dir().exists() else None))
            model = write_tiny_gguf(tmp / "tiny.gguf")
        else:
            model = smollm2_gguf()
        if args.suite in ("llm", "all"):
            run = llm.run(model, smoke=args.smoke, repeats=args.repeats or (2 if args.smoke
                                                                             else 3),
                          logs=logs, progress=_progress, loaded=not args.skip_loaded,
                          builds_only=args.builds,
                          lengths=[int(x) for x in args.llm_lengths.split(",") if x.strip()]
                          or None)
            for table in llm.tables(run):
                sections.append(table.markdown())
                print(table.markdown(), flush=True)
            plots += llm.plots(run, args.out)
        if args.suite == "tuning":
            from bench import llm_tuning

            trun = llm_tuning.run(model, repeats=args.repeats or (1 if args.smoke else 3),
                                  logs=logs, progress=_progress,
                                  turns=2 if args.smoke else 8)
            for table in llm_tuning.tables(trun):
                sections.append(table.markdown())
                print(table.markdown(), flush=True)
        if args.suite in ("voice", "components", "all"):
            from bench import components

            parts = components.run(args.out / "voice", smoke=args.smoke, progress=_progress)
            for table in components.tables(parts):
                sections.append(table.markdown())
                print(table.markdown(), flush=True)
            from bench import odd_audio

            odd = odd_audio.run(args.out / "odd", smoke=args.smoke, progress=_progress)
            for table in odd_audio.tables(odd):
                sections.append(table.markdown())
                print(table.markdown(), flush=True)
        if args.suite in ("voice", "all"):
            from bench import voice

            vrun = voice.run(model, smoke=args.smoke, turns=args.turns or (
                                 2 if args.smoke else 10 if args.voices == 1 else 6),
                             work=args.out / "voice", progress=_progress,
                             profiles=[p.strip() for p in args.profiles.split(",") if p.strip()],
                             settings=args.app_settings, voices=args.voices)
            for table in voice.tables(vrun):
                sections.append(table.markdown())
                print(table.markdown(), flush=True)
            plots += voice.plots(vrun, args.out)
        if args.suite == "soak":
            from bench import soak

            srun = soak.run(smollm2_gguf(), turns=args.turns or (20 if args.smoke else 200),
                            work=args.out / "soak", progress=_progress)
            for table in soak.tables(srun):
                sections.append(table.markdown())
                print(table.markdown(), flush=True)
            plots += soak.plots(srun, args.out)
    except (ConfigError, EngineUnavailable) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    footer = Table("Run", ["what", "value"])
    footer.add("load average at end", loadavg())
    footer.add("plots", ", ".join(p.name for p in plots) or "-")
    print(footer.markdown(), flush=True)
    (args.out / "results.md").write_text("\n".join(header + sections + [footer.markdown()]))
    _progress(f"tables in {args.out / 'results.md'}, plots in {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
