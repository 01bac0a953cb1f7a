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
- context size: the messages the LLM got each turn (``llm_context`` events);
- the machine's load next to the latency: the 1-minute load average and the share of the
  machine's CPU time used by other processes than the app and its llama-server, sampled
  every second. The latency drift compares the median of the first ``DRIFT_TURNS`` answered
  turns after warm-up with the median of the last ones, and the table gives the load during
  each of the two stretches: on a shared machine, a drift with a load change beside it says
  more about the machine than about the app.

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

from bench.common import Table, cpu_ticks, fmt, median
from devtools.utterances import espeak_wav
from pipecatapp.embedded.server import LlamaServer
from pipecatapp.memory import TRIM_LOG
from pipecatapp.timeline import read_timeline
from pipecatapp.transports.wavio import read_audio, write_wav

RATE = 16000
STUCK_SECS = 10.0
WARMUP_SHARE = 0.1  # the first 10 % of the session is warm-up (models, caches, allocator)
RSS_TARGET_MB = 50.0
LATENCY_TARGET = 0.10
DRIFT_TURNS = 20  # answered turns at each end of the session compared for the drift
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
    # (seconds, 1-min load average, CPU share of other processes than app + llama-server)
    load: list[tuple[float, float, float]] = field(default_factory=list)
    trims: list[tuple[float, float]] = field(default_factory=list)  # (MB given back, ms)
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

    def rss_floor(self) -> tuple[float, float] | None:
        """The lowest RSS of each minute (what is left after the idle trims), median over
        the first 5 minutes after warm-up and over the last 5 minutes."""
        if not self.rss:
            return None
        end = self.rss[-1][0]
        minima: dict[int, float] = {}
        for t, mb in self.rss:
            minute = int(t // 60)
            minima[minute] = min(mb, minima.get(minute, mb))
        first_minute = int(end * WARMUP_SHARE // 60) + 1
        last_minute = int(end // 60) - 1  # the last whole minute
        head = [minima[m] for m in range(first_minute, first_minute + 5) if m in minima]
        tail = [minima[m] for m in range(last_minute - 4, last_minute + 1) if m in minima]
        if not head or not tail or last_minute - 4 < first_minute + 5:
            return None
        return median(head), median(tail)

    def rss_second_half(self) -> float:
        """RSS growth (MB) from the middle of the session to its end (the leak rate)."""
        if not self.rss:
            return 0.0
        end = self.rss[-1][0]
        middle = [mb for t, mb in self.rss if abs(t - end / 2) <= end * 0.025]
        tail = [mb for t, mb in self.rss if t >= end * 0.95]
        return median(tail) - median(middle) if middle and tail else 0.0

    def drift_windows(self) -> tuple[list[tuple[float, float]], list[tuple[float, float]]]:
        """The first and the last ``DRIFT_TURNS`` answered turns after warm-up (fewer, a
        third each, in a short session)."""
        if not self.rss:
            return [], []
        warm_end = self.rss[-1][0] * WARMUP_SHARE
        after = [(t, v) for t, v in self.latencies if t >= warm_end]
        k = min(DRIFT_TURNS, len(after) // 3)
        if k < 2:
            return [], []
        return after[:k], after[-k:]

    def latency_drift(self) -> tuple[float | None, float | None]:
        """Median voice-to-voice of the first and the last answered turns after warm-up."""
        first, last = self.drift_windows()
        if not first:
            return None, None
        return median([v for _, v in first]), median([v for _, v in last])

    def load_during(self, window: list[tuple[float, float]]) -> tuple[float, float] | None:
        """Mean load average and others' CPU share while ``window``'s turns happened."""
        if not window or not self.load:
            return None
        lo, hi = window[0][0] - 10.0, window[-1][0] + 10.0
        rows = [(la, other) for t, la, other in self.load if lo <= t <= hi]
        if not rows:
            return None
        return (sum(r[0] for r in rows) / len(rows), sum(r[1] for r in rows) / len(rows))


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


def _machine_ticks() -> tuple[int, int]:
    """(busy, total) clock ticks of all CPUs since boot."""
    values = [int(v) for v in Path("/proc/stat").read_text().splitlines()[0].split()[1:]]
    idle = values[3] + (values[4] if len(values) > 4 else 0)
    return sum(values) - idle, sum(values)


def _loadavg() -> float:
    return float(Path("/proc/loadavg").read_text().split()[0])


def run_app(script: SoakScript, llm_url: str, work: Path, extra: list[str],
            progress: Callable[[str], None], llm_pid: int | None = None) -> SoakResult:
    """One file-transport session of the app, sampling its RSS every second."""
    timeline = work / "timeline.jsonl"
    app = [sys.executable, "-m", "pipecatapp"]
    if os.environ.get("SOAK_MEMPROBE") == "1":  # diagnostics: devtools/memprobe.py
        app = [sys.executable, "-m", "devtools.memprobe", str(work / "memprobe.jsonl"), "--"]
    cmd = [*app, "--transport", "file", "--input",
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
            busy0, total0 = _machine_ticks()
            ours0 = cpu_ticks(proc.pid) + cpu_ticks(llm_pid)
            while not done.is_set():
                mb = _rss_mb(proc.pid)
                now = time.monotonic() - started
                if mb is not None:
                    result.rss.append((now, mb))
                busy, total = _machine_ticks()
                ours = cpu_ticks(proc.pid) + cpu_ticks(llm_pid)
                if total > total0:
                    others = max(0, (busy - busy0) - (ours - ours0)) / (total - total0)
                    result.load.append((now, _loadavg(), others))
                busy0, total0, ours0 = busy, total, ours
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
    (work / "load.csv").write_text("seconds,loadavg1,others_cpu_share\n" + "".join(
        f"{t:.1f},{la:.2f},{o:.3f}\n" for t, la, o in result.load))
    result.trims = _trims((work / "app.log").read_text(errors="replace"))
    if result.exit_code != 0 or not timeline.is_file():
        tail = (work / "app.log").read_text(errors="replace").splitlines()[-15:]
        result.error = f"exit {result.exit_code}: " + " | ".join(tail)
        return result
    result.events = read_timeline(timeline)
    analyse(result)
    return result


def load_result(work: Path) -> SoakResult:
    """A finished run read back from its folder (soak.json, rss.csv, load.csv, the timeline,
    app.log), to analyse it again."""
    cues = [Cue(**c) for c in json.loads((work / "soak.json").read_text())]
    script = SoakScript(work / "soak.wav", cues, max(c.end for c in cues))
    r = SoakResult(script)

    def rows(name: str) -> list[list[float]]:
        lines = (work / name).read_text().splitlines()[1:] if (work / name).exists() else []
        return [[float(v) for v in line.split(",")] for line in lines if line]

    r.rss = [(t, mb) for t, mb in rows("rss.csv")]
    r.load = [(t, la, o) for t, la, o in rows("load.csv")]
    r.wall = r.rss[-1][0] if r.rss else 0.0
    r.trims = _trims((work / "app.log").read_text(errors="replace"))
    r.events = [json.loads(line) for line in (work / "timeline.jsonl").read_text().splitlines()
                if line]
    analyse(r)
    return r


def _trims(log: str) -> list[tuple[float, float]]:
    """(MB, ms) of each idle ``malloc_trim`` the app logged (pipecatapp/memory.py)."""
    return [(float(mb), float(ms)) for mb, ms in re.findall(
        re.escape(TRIM_LOG) + r" (-?[\d.]+) MB in ([\d.]+) ms", log)]


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
        result = run_app(script, server.base_url, work, extra, progress, server.pid)
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
    floor = r.rss_floor()
    if floor:
        t.add("RSS floor (lowest per minute), 5 min after warm-up / last 5 min",
              f"{floor[0]:.0f} / {floor[1]:.0f} MB ({floor[1] - floor[0]:+.1f} MB)", "-", "-")
    head, tail = r.drift_windows()
    t.add(f"voice-to-voice, first / last {len(head)} answered turns after warm-up (median)",
          f"{fmt(first, 2)} / {fmt(last, 2)} s"
          + (f" ({drift:+.0%})" if drift is not None else ""), "within 10 %",
          "yes" if drift is not None and abs(drift) <= LATENCY_TARGET else "no")
    load_head, load_tail = r.load_during(head), r.load_during(tail)
    if load_head and load_tail:
        t.add("machine load then: load average / other processes' CPU",
              f"{load_head[0]:.1f} / {load_head[1]:.0%} then {load_tail[0]:.1f} / "
              f"{load_tail[1]:.0%}", "-", "-")
    if r.load:
        t.add("machine load over the session: load average median / max",
              f"{median([la for _, la, _ in r.load]):.1f} / "
              f"{max(la for _, la, _ in r.load):.1f}", "-", "-")
    if r.trims:
        t.add("idle malloc_trim: runs / MB given back / slowest",
              f"{len(r.trims)} / {sum(mb for mb, _ in r.trims):.0f} MB / "
              f"{max(ms for _, ms in r.trims):.0f} ms", "-", "-")
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
        "machine load: 1-minute load average (2 CPUs) and the share of all CPU time used by "
        "processes other than the app and its llama-server; the machine is shared, so the "
        "latency figures depend on what else ran",
    ]
    return [t]


def plots(r: SoakResult, out: Path) -> list[Path]:
    if r.error or not r.rss:
        return []
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(4, 1, figsize=(8, 10), sharex=True)
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
    axes[2].grid(True, alpha=0.3)
    if r.load:
        axes[3].plot([t / 60 for t, _, _ in r.load], [la for _, la, _ in r.load],
                     label="load average (1 min)")
        cpus = os.cpu_count() or 1
        axes[3].plot([t / 60 for t, _, _ in r.load], [cpus * o for _, _, o in r.load],
                     alpha=0.5, label="other processes (CPUs busy)")
        axes[3].legend(loc="upper left", fontsize="small")
    axes[3].set_ylabel("machine load")
    axes[3].set_xlabel("minutes into the session (app clock)")
    axes[3].grid(True, alpha=0.3)
    fig.tight_layout()
    path = out / "soak.png"
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return [path]
