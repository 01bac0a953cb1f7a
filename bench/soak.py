"""Soak suite: one long conversation through the app's file transport.

``python -m bench --suite soak [--turns 200]`` builds one WAV of user speech (espeak-ng, a
voice unlike the bot's) with ``--turns`` user turns in a random but seeded order: questions,
long requests that are barged in on, not-understood utterances (reversed speech), with
silences and white-noise bursts between them. ``python -m pipecatapp --transport file``
plays it into the app in real time against SmolLM2 on llama-server, while this harness
samples the app's resident memory (``/proc/PID/status`` VmRSS) every second. The timeline
the app writes gives the rest:

- turn latency over time: voice-to-voice (end of the user's speech to the bot's first
  sample) of each turn the LLM answered (not the "didn't catch that" replies);
- stuck turns: a user turn with no bot reaction (answer, apology, "didn't catch that")
  within 10 s of its end, unless the user spoke again before that;
- context size: the messages the LLM got each turn (``llm_context`` events).

Targets (issue 10): RSS growth <= 50 MB after warm-up, zero stuck turns, latency at the end
within 10 % of the start.
"""

from __future__ import annotations

import json
import os
import random
import re
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from bench.common import Table, fmt, median
from devtools.utterances import espeak_wav
from pipecatapp.embedded.server import LlamaServer
from pipecatapp.timeline import read_timeline
from pipecatapp.transports.wavio import read_audio, write_wav

RATE = 16000
STUCK_SECS = 10.0
WARMUP_SHARE = 0.1  # the first 10 % of the session is warm-up (models, caches, allocator)
RSS_TARGET_MB = 50.0
LATENCY_TARGET = 0.10
QUESTIONS = (
    "What is the capital of France?",
    "What is the capital of Italy?",
    "What is the largest planet in our solar system?",
    "What do bees make?",
    "What color is the sky on a clear day?",
)
LONG_REQUESTS = (
    "Tell me a long story about a dragon and a knight.",
    "Describe the city of Paris in detail.",
)
INTERRUPTIONS = (
    "Wait, what is the capital of Spain?",
    "Stop, what is the capital of Germany?",
)
GARBLED = ("How many legs does a spider have?", "Who wrote Romeo and Juliet?")


@dataclass
class Cue:
    kind: str  # question, long, interruption, garbled, noise
    start: float
    end: float


@dataclass
class SoakScript:
    wav: Path
    cues: list[Cue]
    seconds: float

    @property
    def user_turns(self) -> int:
        return sum(c.kind != "noise" for c in self.cues)


@dataclass
class SoakResult:
    script: SoakScript
    exit_code: int = 0
    error: str = ""
    wall: float = 0.0
    rss: list[tuple[float, float]] = field(default_factory=list)  # (seconds, MB)
    turns: list[dict[str, Any]] = field(default_factory=list)
    events: list[dict[str, Any]] = field(default_factory=list)
    latencies: list[tuple[float, float]] = field(default_factory=list)  # (t, v2v)
    stuck: list[int] = field(default_factory=list)
    superseded: int = 0
    context: list[tuple[float, int, int]] = field(default_factory=list)  # (t, msgs, chars)
    llm: str = ""

    def rss_growth(self) -> tuple[float, float, float]:
        """(baseline MB at the end of warm-up, final MB, growth MB)."""
        if not self.rss:
            return 0.0, 0.0, 0.0
        end = self.rss[-1][0]
        warm = [mb for t, mb in self.rss if t <= end * WARMUP_SHARE] or [self.rss[0][1]]
        tail = [mb for t, mb in self.rss if t >= end * 0.95] or [self.rss[-1][1]]
        baseline, final = max(warm), median(tail)
        return baseline, final, final - baseline

    def rss_second_half(self) -> float:
        """RSS growth (MB) from the middle of the session to its end (the leak rate)."""
        if not self.rss:
            return 0.0
        end = self.rss[-1][0]
        middle = [mb for t, mb in self.rss if abs(t - end / 2) <= end * 0.025]
        tail = [mb for t, mb in self.rss if t >= end * 0.95]
        return median(tail) - median(middle) if middle and tail else 0.0

    def latency_drift(self) -> tuple[float | None, float | None]:
        """Median voice-to-voice of the first and the last fifth of the answered turns."""
        values = [v for _, v in self.latencies]
        if len(values) < 5:
            return None, None
        k = max(2, len(values) // 5)
        return median(values[:k]), median(values[-k:])


def _read(path: Path) -> np.ndarray:
    return read_audio(path, RATE, what="utterance").samples


def build_script(work: Path, turns: int, seed: int = 10) -> SoakScript:
    """``turns`` user turns: about 55 % questions, 15 % not understood, the rest pairs of a
    long request and its interruption; silences of 1-6 s and a noise burst after about one
    turn in eight."""
    rng = random.Random(seed)
    work.mkdir(parents=True, exist_ok=True)
    utt = work / "utterances"
    cache: dict[str, np.ndarray] = {}

    def speech(kind: str, text: str) -> np.ndarray:
        key = f"{kind}:{text}"
        if key not in cache:
            name = re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")[:40]
            audio = _read(espeak_wav(text, utt / f"{name}.wav", voice="en-us+m3", rate=120,
                                     lead_silence=0.0, tail_silence=0.0))
            cache[key] = audio[::-1].copy() if kind == "garbled" else audio
        return cache[key]

    noise = (np.random.default_rng(seed).normal(0, 0.15, int(0.5 * RATE)) * 32767).clip(
        -32767, 32767).astype(np.int16)
    pieces: list[np.ndarray] = []
    cues: list[Cue] = []
    cursor = 0.0

    def add(audio: np.ndarray, kind: str | None = None) -> None:
        nonlocal cursor
        pieces.append(audio)
        if kind:
            cues.append(Cue(kind, cursor, cursor + len(audio) / RATE))
        cursor += len(audio) / RATE

    def silence(seconds: float) -> None:
        add(np.zeros(int(seconds * RATE), dtype=np.int16))

    silence(1.5)
    count = 0
    while count < turns:
        roll = rng.random()
        if roll < 0.15:
            add(speech("garbled", rng.choice(GARBLED)), "garbled")
            silence(3.5)
            count += 1
        elif roll < 0.30 and turns - count >= 2:
            add(speech("long", rng.choice(LONG_REQUESTS)), "long")
            silence(rng.uniform(3.0, 4.5))  # the bot is talking by then
            add(speech("interruption", rng.choice(INTERRUPTIONS)), "interruption")
            silence(8.0)
            count += 2
        else:
            add(speech("question", rng.choice(QUESTIONS)), "question")
            silence(8.0)
            count += 1
        if rng.random() < 0.125:
            add(noise, "noise")
            silence(1.5)
        silence(rng.uniform(0.0, 5.0))
    path = work / "soak.wav"
    write_wav(path, np.concatenate(pieces).tobytes(), RATE)
    (work / "soak.json").write_text(json.dumps([c.__dict__ for c in cues], indent=1))
    return SoakScript(path, cues, cursor)


def _rss_mb(pid: int) -> float | None:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    except OSError:
        return None
    return None


def run_app(script: SoakScript, llm_url: str, work: Path, extra: list[str],
            progress: Callable[[str], None]) -> SoakResult:
    """One file-transport session of the app, sampling its RSS every second."""
    timeline = work / "timeline.jsonl"
    cmd = [sys.executable, "-m", "pipecatapp", "--transport", "file", "--input",
           str(script.wav), "--output", str(work / "bot.wav"), "--timeline", str(timeline),
           "--llm-url", llm_url, "--log-level", "INFO", *extra]
    result = SoakResult(script)
    started = time.monotonic()
    with open(work / "app.log", "wb") as log:
        proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT,
                                env={**os.environ, "HF_HUB_OFFLINE": "1"})
        done = threading.Event()

        def sample() -> None:
            last_report = 0.0
            while not done.is_set():
                mb = _rss_mb(proc.pid)
                now = time.monotonic() - started
                if mb is not None:
                    result.rss.append((now, mb))
                if now - last_report > 60:
                    last_report = now
                    progress(f"soak: {now:.0f}/{script.seconds:.0f} s, app RSS "
                             f"{mb or 0:.0f} MB")
                done.wait(1.0)

        sampler = threading.Thread(target=sample, daemon=True)
        sampler.start()
        try:
            result.exit_code = proc.wait(timeout=script.seconds + 300)
        except subprocess.TimeoutExpired:
            proc.kill()
            result.exit_code = proc.wait()
        done.set()
        sampler.join()
    result.wall = time.monotonic() - started
    (work / "rss.csv").write_text("seconds,rss_mb\n" + "".join(
        f"{t:.1f},{mb:.1f}\n" for t, mb in result.rss))
    if result.exit_code != 0 or not timeline.is_file():
        tail = (work / "app.log").read_text(errors="replace").splitlines()[-15:]
        result.error = f"exit {result.exit_code}: " + " | ".join(tail)
        return result
    result.events = read_timeline(timeline)
    analyse(result)
    return result


def analyse(r: SoakResult) -> None:
    r.turns = [e for e in r.events if e["event"] == "turn"]
    r.context = [(e["t"], e["messages"], e["chars"]) for e in r.events
                 if e["event"] == "llm_context"]
    starts = sorted(t["user_speech_start"] for t in r.turns
                    if t.get("user_speech_start") is not None)
    for turn in r.turns:
        stop = turn.get("user_speech_stop")
        if stop is None:
            continue
        reaction = turn.get("bot_audio_start")
        if reaction is not None and reaction - stop <= STUCK_SECS:
            answered = not turn.get("not_understood") and not turn.get("apology")
            if answered and turn.get("voice_to_voice") is not None:
                r.latencies.append((stop, turn["voice_to_voice"]))
            continue
        if any(stop < s < stop + STUCK_SECS for s in starts):
            r.superseded += 1  # the user spoke again before the bot reacted
            continue
        r.stuck.append(turn["turn"])


def run(model: Path, *, turns: int, work: Path, progress: Callable[[str], None],
        threads: int = 1, max_tokens: int = 40) -> SoakResult:
    progress(f"soak: building a {turns}-turn script")
    script = build_script(work, turns)
    progress(f"soak: {script.user_turns} user turns, {script.seconds / 60:.1f} min of audio "
             "fed in real time")
    extra = ["--max-tokens", str(max_tokens), "--set", "llm.temperature=0"]
    with LlamaServer(model, threads=threads, ctx=4096) as server:
        result = run_app(script, server.base_url, work, extra, progress)
        result.llm = f"llama-server on {model.name}, {threads} thread"
    return result


def tables(r: SoakResult) -> list[Table]:
    t = Table(f"Soak: {r.script.user_turns} user turns in one session",
              ["metric", "value", "target", "met"])
    if r.error:
        t.add("session", "failed", "-", "no")
        t.notes.append(r.error)
        return [t]
    baseline, final, growth = r.rss_growth()
    first, last = r.latency_drift()
    drift = (last - first) / first if first and last else None
    counts = {k: sum(c.kind == k for c in r.script.cues)
              for k in ("question", "long", "interruption", "garbled", "noise")}
    t.add("turn records", len(r.turns), f"{r.script.user_turns}", "-")
    t.add("stuck turns (no reaction within 10 s)", len(r.stuck), "0",
          "yes" if not r.stuck else "no")
    t.add("app RSS after warm-up / at the end", f"{baseline:.0f} / {final:.0f} MB", "-", "-")
    t.add("RSS growth after warm-up", f"{growth:+.1f} MB", f"<= {RSS_TARGET_MB:g} MB",
          "yes" if growth <= RSS_TARGET_MB else "no")
    t.add("RSS growth over the second half", f"{r.rss_second_half():+.1f} MB", "-", "-")
    t.add("voice-to-voice, first / last fifth (median)",
          f"{fmt(first, 2)} / {fmt(last, 2)} s", "within 10 %",
          "yes" if drift is not None and abs(drift) <= LATENCY_TARGET else "no")
    if r.context:
        t.add("LLM context: max / last messages",
              f"{max(m for _, m, _ in r.context)} / {r.context[-1][1]}", "bounded", "-")
        t.add("LLM context: max / last characters",
              f"{max(c for _, _, c in r.context)} / {r.context[-1][2]}", "bounded", "-")
    t.add("session", f"{r.wall / 60:.1f} min", "-", "-")
    t.notes += [
        f"script: {counts['question']} questions, {counts['long']} long requests each "
        f"interrupted ({counts['interruption']}), {counts['garbled']} not-understood "
        f"(reversed) utterances, {counts['noise']} noise bursts, silences 1-6 s; espeak-ng "
        "en-us+m3 120 wpm; bot Piper joe-medium",
        f"LLM: {r.llm}; turns superseded by the user speaking again: {r.superseded}",
        "RSS of the app process (VmRSS), sampled every second; warm-up = first "
        f"{WARMUP_SHARE:.0%} of the session, the end = median of the last 5 %",
    ]
    return [t]


def plots(r: SoakResult, out: Path) -> list[Path]:
    if r.error or not r.rss:
        return []
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(3, 1, figsize=(8, 8), sharex=True)
    axes[0].plot([t / 60 for t, _ in r.rss], [mb for _, mb in r.rss])
    axes[0].set_ylabel("app RSS (MB)")
    axes[0].set_title(f"Soak: {r.script.user_turns} user turns, one session")
    axes[0].grid(True, alpha=0.3)
    if r.latencies:
        axes[1].plot([t / 60 for t, _ in r.latencies], [v for _, v in r.latencies], ".")
    axes[1].set_ylabel("voice-to-voice (s)")
    axes[1].grid(True, alpha=0.3)
    if r.context:
        axes[2].step([t / 60 for t, _, _ in r.context], [m for _, m, _ in r.context],
                     where="post")
    axes[2].set_ylabel("LLM context (messages)")
    axes[2].set_xlabel("minutes into the session (app clock)")
    axes[2].grid(True, alpha=0.3)
    fig.tight_layout()
    path = out / "soak.png"
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return [path]
