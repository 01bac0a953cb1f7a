"""Voice suite: a scripted conversation through the app's file transport, per profile.

The script is one WAV of user speech (espeak-ng, a voice unlike the bot's Piper voice) that
the file transport plays into the app in real time: questions with pauses long enough for
the answer, then requests for long answers that are interrupted mid-answer by another
question. ``python -m pipecatapp --transport file`` runs once per profile (``stock``:
pipecat's defaults with the same models; ``tuned``: the project's settings) against the
llama-server its own app would start (profiles with the same prompt threads share one), and
the timeline it writes (JSON lines) is the measurement:

- voice-to-voice = the bot's first output sample - the end of the user's speech (both on
  the app clock, the speech end known from the input file);
- barge-in = the bot's last output sample - the onset of user speech that started while the
  bot was playing (ground truth from the input and output, whether or not the app noticed).
"""

from __future__ import annotations

import contextlib
import itertools
import json
import os
import re
import resource
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from bench.common import Table, cpu_ticks, fmt, median, percentile
from devtools.utterances import DEFAULT_RATE, DEFAULT_VOICE, espeak_wav, sox, words
from pipecatapp.embedded.server import LlamaServer
from pipecatapp.errors import ConfigError
from pipecatapp.timeline import read_timeline
from pipecatapp.transports.wavio import read_audio, write_wav

QUESTIONS = (
    "What is the capital of France?",
    "How many legs does a spider have?",
    "Who wrote Romeo and Juliet?",
    "What is the largest planet in our solar system?",
    "What color is the sky on a clear day?",
    "How many days are in a week?",
    "What is the boiling point of water in Celsius?",
    "What do bees make?",
    "What is the capital of Italy?",
    "How many hours are in a day?",
)
LONG_REQUESTS = (
    "Tell me a long story about a dragon and a knight.",
    "Describe the city of Paris in detail.",
    "Tell me everything you know about the ocean.",
    "Explain how a car engine works.",
    "Tell me a long story about a cat who travels the world.",
)
INTERRUPTIONS = (
    "Wait, what is two plus two?",
    "Stop, what is the capital of Spain?",
    "Hold on, how many legs does a cat have?",
    "Wait, what color is grass?",
    "Stop, what is the capital of Germany?",
)
RATE = 16000
PROFILES = ("stock", "tuned")


@dataclass(frozen=True)
class Voice:
    """A synthetic user voice: an espeak-ng voice and rate, sox effects on each utterance,
    and room noise mixed under the whole script (dB relative to full scale, None = none)."""

    name: str
    espeak: str
    rate: int
    effects: tuple[str, ...] = ()
    noise_db: float | None = None


# The panel: tuning decisions are made on all of them, never on one voice.
PANEL = (
    Voice("us-m7", DEFAULT_VOICE, DEFAULT_RATE),
    Voice("gb-f3", "en-gb+f3", 140),
    Voice("us-m3-fast", "en-us+m3", 170),
    Voice("scot-f4-low", "en-gb-scotland+f4", 130, ("pitch", "-250")),
    Voice("rp-m1-room", "en-gb-x-rp+m1", 135, ("reverb", "40", "50", "60")),
    Voice("us-f2-noisy", "en-us+f2", 145, (), -32.0),
)


@dataclass
class Segment:
    kind: str  # "question", "long", "interruption"
    text: str
    start: float  # seconds into the script WAV
    end: float


@dataclass
class Script:
    wav: Path
    segments: list[Segment]
    seconds: float


@dataclass
class ProfileResult:
    profile: str
    voice: str = PANEL[0].name
    turns: list[dict[str, Any]] = field(default_factory=list)
    events: list[dict[str, Any]] = field(default_factory=list)
    wall: float = 0.0
    exit_code: int = 0
    error: str = ""
    # derived
    v2v: list[float] = field(default_factory=list)
    stages: dict[str, list[float]] = field(default_factory=dict)
    barge: list[float] = field(default_factory=list)
    barge_detected: int = 0
    false_holds: int = 0  # the bot's voice held for speech that did not follow (vad.hold_output)
    playing_secs: float = 0.0
    heard_right: int = 0
    questions: int = 0
    no_audio: int = 0
    app_cpu: float = 0.0  # CPU seconds of the app process over the session
    llm_cpu: float = 0.0  # CPU seconds of the llama-server over the session
    early_used: int = 0  # transcriptions of a pause used at the VAD stop (app.log)
    early_discarded: int = 0  # ... thrown away (the user went on)
    kept: int = 0  # speculative answers spoken (turn.speculate; app.log)
    withdrawn: int = 0  # ... withdrawn before they were spoken


@dataclass
class VoiceRun:
    results: list[ProfileResult]
    script: Script
    llm: str
    notes: list[str]


def _read(path: Path) -> np.ndarray:
    return read_audio(path, RATE, what="utterance").samples


def build_script(work: Path, turns: int, interruptions: int, *, answer_gap: float = 9.0,
                 interrupt_after: tuple[float, ...] = (6.0,),
                 after_interrupt: float = 7.0, voice: Voice = PANEL[0]) -> Script:
    """``turns`` questions with ``answer_gap`` s after each, then ``interruptions`` pairs of a
    long request and, ``interrupt_after`` s after it ends (the delays taken in turn), an
    interrupting question. Several delays, so the interruptions land while the bot talks
    whether it starts answering after 0.8 s or after 3 s."""
    work.mkdir(parents=True, exist_ok=True)
    pieces: list[np.ndarray] = []
    segments: list[Segment] = []
    cursor = 0.0

    def silence(seconds: float) -> None:
        nonlocal cursor
        pieces.append(np.zeros(int(RATE * seconds), dtype=np.int16))
        cursor += int(RATE * seconds) / RATE

    def say(kind: str, text: str) -> None:
        nonlocal cursor
        name = re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")[:40]
        wav = espeak_wav(text, work / "utterances" / f"{name}.wav", voice=voice.espeak,
                         rate=voice.rate, lead_silence=0.0, tail_silence=0.0)
        if voice.effects:
            shaped = wav.with_name(f"{name}-{voice.name}.wav")
            sox(str(wav), str(shaped), *voice.effects, "rate", str(RATE), "channels", "1")
            wav = shaped
        audio = _read(wav)
        pieces.append(audio)
        segments.append(Segment(kind, text, cursor, cursor + len(audio) / RATE))
        cursor += len(audio) / RATE

    silence(1.5)
    for i in range(turns):
        say("question", QUESTIONS[i % len(QUESTIONS)])
        silence(answer_gap)
    for i in range(interruptions):
        say("long", LONG_REQUESTS[i % len(LONG_REQUESTS)])
        silence(interrupt_after[i % len(interrupt_after)])
        say("interruption", INTERRUPTIONS[i % len(INTERRUPTIONS)])
        silence(after_interrupt)
    script = np.concatenate(pieces)
    if voice.noise_db is not None:
        noise = np.random.default_rng(0).standard_normal(len(script))
        noise *= 32767 * 10 ** (voice.noise_db / 20)
        script = np.clip(script.astype(np.float64) + noise, -32768, 32767).astype(np.int16)
    pieces = [script]
    path = work / "script.wav"
    write_wav(path, np.concatenate(pieces).tobytes(), RATE)
    (work / "script.json").write_text(json.dumps([s.__dict__ for s in segments], indent=1))
    return Script(path, segments, cursor)


def split_profile(profile: str) -> tuple[str, str]:
    """``tuned@REV`` -> (``tuned``, ``REV``): the app of git revision REV in that profile;
    a plain profile name runs this checkout's app (REV empty). Settings after ``+`` are
    :func:`profile_settings`."""
    name, _, rev = profile.split("+", 1)[0].partition("@")
    if name not in PROFILES:
        raise ConfigError("--profiles", f"unknown profile {name!r}; one of {PROFILES}")
    profile_settings(profile)
    return name, rev


def profile_settings(profile: str) -> list[str]:
    """``tuned+turn.speculate=true+stt.early_secs=0.05`` -> the app settings (``--set``) of
    that profile alone, e.g. the same profile with and without a feature in one run."""
    settings = profile.split("+")[1:]
    for setting in settings:
        if "=" not in setting:
            raise ConfigError("--profiles", f"{setting!r} in {profile!r} is not KEY=VALUE")
    return settings


def _cpu_secs(pid: int | None) -> float:
    """User + system CPU seconds of a running process (0 if it is gone)."""
    return cpu_ticks(pid) / os.sysconf("SC_CLK_TCK")


def _children_cpu_secs() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def app_tree(rev: str, work: Path) -> Path:
    """This repository's tree at ``rev``, exported once into ``work`` (the app of that
    revision runs from there, with this checkout's venv and caches)."""
    root = Path(__file__).resolve().parent.parent
    commit = subprocess.run(["git", "rev-parse", "--verify", f"{rev}^{{commit}}"], cwd=root,
                            capture_output=True, text=True, check=False)
    if commit.returncode != 0:
        raise ConfigError("--profiles", f"{rev!r} is not a git revision of {root}")
    tree = work / f"app-{commit.stdout.strip()[:12]}"
    if not (tree / "pipecatapp").is_dir():
        tree.mkdir(parents=True, exist_ok=True)
        archive = subprocess.run(["git", "archive", commit.stdout.strip()], cwd=root,
                                 capture_output=True, check=True)
        subprocess.run(["tar", "-x", "-C", str(tree)], input=archive.stdout, check=True)
    return tree


_BATCH_THREADS = """
import sys
from pipecatapp.config import load_config
from pipecatapp.embedded import server
sets = dict(s.split("=", 1) for s in sys.argv[2:])
llm = load_config(environ={}, overrides={"profile": sys.argv[1], **sets}).llm
setting = getattr(llm, "embedded_batch_threads", None)
print("" if setting is None else server.batch_threads(setting))
"""


def batch_threads_of(profile: str, work: Path, settings: list[str]) -> int | None:
    """The prompt threads (``-tb``) that the profile's app would give its embedded
    llama-server, asked from that app itself (``tuned@REV``: the app of REV); ``None`` for an
    app from before the setting, whose server evaluated prompts on its generation threads."""
    name, rev = split_profile(profile)
    env = {**os.environ}
    cwd = None
    if rev:
        cwd = app_tree(rev, work)
        env["PYTHONPATH"] = str(cwd)
    answer = subprocess.run([sys.executable, "-c", _BATCH_THREADS, name, *settings,
                             *profile_settings(profile)],
                            capture_output=True, text=True, check=True, env=env, cwd=cwd)
    value = answer.stdout.strip()
    return int(value) if value else None


def run_app(profile: str, script: Script, llm_url: str, work: Path,
            extra: list[str], llm_pid: int | None = None) -> ProfileResult:
    """One file-transport session of the app, as a user would run it (``tuned@REV``: the
    app of git revision REV, for a before/after comparison in one run); the CPU time of the
    app and of the LLM server (``llm_pid``) over the session is recorded."""
    name, rev = split_profile(profile)
    extra = [*extra, *(arg for kv in profile_settings(profile) for arg in ("--set", kv))]
    out = work / re.sub(r"[^\w.-]+", "-", profile.replace("@", "-at-"))
    out.mkdir(parents=True, exist_ok=True)
    timeline = out / "timeline.jsonl"
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    cwd = None
    if rev:
        cwd = app_tree(rev, work.parent)
        env["PYTHONPATH"] = str(cwd)
    cmd = [sys.executable, "-m", "pipecatapp", "--transport", "file", "--profile", name,
           "--input", str(script.wav), "--output", str(out / "bot.wav"),
           "--timeline", str(timeline), "--llm-url", llm_url, "--log-level", "INFO", *extra]
    started = time.monotonic()
    cpu0, llm0 = _children_cpu_secs(), _cpu_secs(llm_pid)
    with open(out / "app.log", "wb") as log:
        proc = subprocess.run(cmd, stdout=log, stderr=subprocess.STDOUT, check=False,
                              timeout=script.seconds + 300, env=env, cwd=cwd)
    result = ProfileResult(profile, wall=time.monotonic() - started, exit_code=proc.returncode)
    result.app_cpu = _children_cpu_secs() - cpu0
    result.llm_cpu = _cpu_secs(llm_pid) - llm0
    count_outcomes(result, (out / "app.log").read_text(errors="replace"))
    if proc.returncode != 0 or not timeline.is_file():
        tail = (out / "app.log").read_text(errors="replace").splitlines()[-15:]
        result.error = f"exit {proc.returncode}: " + " | ".join(tail)
        return result
    result.events = read_timeline(timeline)
    result.turns = [e for e in result.events if e["event"] == "turn"]
    analyse(result, script)
    return result


def count_outcomes(result: ProfileResult, log: str) -> None:
    """Early transcripts used and discarded, speculative answers kept and withdrawn, from
    the lines the app logs for each (pipecatapp/services/early_transcript.py,
    pipecatapp/speculation.py)."""
    result.early_used = len(re.findall(r"early transcript used", log))
    result.early_discarded = len(re.findall(r"early transcript discarded", log))
    result.kept = len(re.findall(r"speculative answer kept", log))
    result.withdrawn = len(re.findall(r"speculative answer withdrawn", log))


def analyse(result: ProfileResult, script: Script) -> None:
    events = result.events
    onsets = sorted(e["t"] for e in events if e["event"] == "input_speech")
    # Bot playing intervals on the output clock.
    playing: list[tuple[float, float]] = []
    start: float | None = None
    for e in sorted(events, key=lambda e: e["t"]):
        if e["event"] == "bot_audio_start" and start is None:
            start = e["t"]
        elif e["event"] == "bot_audio_stop" and start is not None:
            playing.append((start, e["t"]))
            start = None
    vad_stops = sorted(e["t"] for e in events if e["event"] == "vad_stop")
    result.playing_secs = sum(b - a for a, b in playing)
    result.false_holds = sum(1 for e in events if e["event"] == "output_resume"
                             and any(a <= e["t"] <= b for a, b in playing))
    stage_names = ("VAD end of speech", "STT (Whisper)", "turn end wait", "LLM first token",
                   "TTS first audio", "to output")
    result.stages = {name: [] for name in stage_names}
    questions = [s for s in script.segments if s.kind == "question"]
    result.questions = len(questions)
    # The script's time 0 is the input_start event on the app clock.
    offset = next((e["t"] for e in events if e["event"] == "input_start"), None)
    if offset is None:
        offset = onsets[0] - script.segments[0].start if onsets else 0.0
    for turn in result.turns:
        if not turn.get("audio"):
            result.no_audio += 1
        stop = turn.get("user_speech_stop")
        if stop is None:
            continue
        seg = min(script.segments, key=lambda s: abs(s.end + offset - stop))
        if seg.kind != "question" or abs(seg.end + offset - stop) > 0.6:
            continue
        if words(turn.get("text", "")) == words(seg.text):
            result.heard_right += 1
        if turn.get("voice_to_voice") is None:
            continue
        result.v2v.append(turn["voice_to_voice"])
        a = stop
        stt = turn.get("stt_final")
        turn_end = max(x for x in (stt, turn.get("user_turn_stop")) if x is not None) \
            if (stt or turn.get("user_turn_stop")) else None
        vad = next((v for v in vad_stops if a - 0.05 <= v <= (stt or a + 10)), None)
        points = [a, vad, stt, turn_end, turn.get("llm_first_token"),
                  turn.get("tts_first_audio"), turn.get("bot_audio_start")]
        if any(p is None for p in points):
            continue
        for name, (x, y) in zip(stage_names, itertools.pairwise(points), strict=True):
            result.stages[name].append(y - x)  # type: ignore[operator]
    # Every utterance that began while the bot was playing is a barge-in, detected or not.
    for seg in script.segments:
        onset = seg.start + offset
        onset = min(onsets, key=lambda o: abs(o - onset)) if onsets else onset
        span = next(((s, e) for s, e in playing if s < onset < e), None)
        if span is None:
            continue  # the bot was not speaking when this utterance began
        result.barge.append(span[1] - onset)
        if any(e["event"] == "interruption" and onset <= e["t"] <= span[1] + 0.05
               for e in events):
            result.barge_detected += 1


def run(model: Path, *, smoke: bool, turns: int, work: Path,
        progress: Callable[[str], None], interruptions: int | None = None,
        threads: int = 1, profiles: list[str] | None = None,
        settings: list[str] | None = None, voices: int | None = None) -> VoiceRun:
    """``voices`` first voices of the panel (default: all; smoke: one), each with its own
    script of ``turns`` questions and ``interruptions`` interrupted long answers, every
    profile on every voice, on a llama-server shared by the profiles with the same prompt
    threads."""
    profiles = profiles or list(PROFILES)
    for profile in profiles:
        split_profile(profile)
    panel = PANEL[:voices or (1 if smoke else len(PANEL))]
    if interruptions is None:
        interruptions = 1 if smoke else (14 if len(panel) == 1 else 4)
    notes = ["user voices (espeak-ng; sox effects): "
             + "; ".join(f"{v.name} = {v.espeak} {v.rate} wpm"
                         + (f" {' '.join(v.effects)}" if v.effects else "")
                         + (f" room noise {v.noise_db:.0f} dBFS" if v.noise_db else "")
                         for v in panel)
             + "; bot voice Piper joe-medium"]
    extra: list[str] = []
    if smoke:
        extra = ["--max-tokens", "24"]
    for setting in settings or []:
        extra += ["--set", setting]
        notes.append(f"every profile ran with --set {setting}")
    results = []
    script = None
    work.mkdir(parents=True, exist_ok=True)
    # One server per prompt-thread count among the profiles (a profile's server is the one
    # its app would start). Each server's log stays beside the results: its per-request
    # timings show which turns evaluated their prompt in full.
    batch = {p: batch_threads_of(p, work, settings or []) or threads for p in profiles}
    with contextlib.ExitStack() as stack:
        servers: dict[int, LlamaServer] = {}
        for n in sorted(set(batch.values())):
            log = work / ("llama-server.log" if n == threads else f"llama-server-tb{n}.log")
            servers[n] = stack.enter_context(LlamaServer(
                model, threads=threads, batch_threads=n, ctx=4096, log_path=log))
        llm = (f"llama-server on {model.name}, {threads} thread, prompt threads (-tb) "
               + ", ".join(f"{p} {n}" for p, n in batch.items()))
        for voice in panel:
            progress(f"building the script for voice {voice.name}: {turns} questions, "
                     f"{interruptions} interruptions")
            script = build_script(work / voice.name, turns, interruptions,
                                  answer_gap=6.0 if smoke else 9.0,
                                  interrupt_after=(2.5,) if smoke else (1.8, 3.0, 4.5),
                                  voice=voice)
            for profile in profiles:
                progress(f"voice {voice.name}: profile {profile} ({script.seconds:.0f} s of "
                         "speech, real time)")
                server = servers[batch[profile]]
                result = run_app(profile, script, server.base_url, work / voice.name, extra,
                                 llm_pid=server.pid)
                result.voice = voice.name
                results.append(result)
                if result.error:
                    progress(f"voice {voice.name}: profile {profile} failed: "
                             f"{result.error[:300]}")
    assert script is not None
    notes.insert(0, f"script per voice: {script.seconds:.0f} s of audio fed in real time")
    return VoiceRun(results, script, llm, notes)


def pooled(results: list[ProfileResult], profile: str) -> ProfileResult:
    """All voices of one profile as one result (turns, stages and barge-ins together)."""
    mine = [r for r in results if r.profile == profile and not r.error]
    out = ProfileResult(profile, voice="all voices", wall=sum(r.wall for r in mine))
    out.stages = {name: [] for name in (mine[0].stages if mine else [])}
    for r in mine:
        out.v2v += r.v2v
        out.barge += r.barge
        out.barge_detected += r.barge_detected
        out.false_holds += r.false_holds
        out.playing_secs += r.playing_secs
        out.heard_right += r.heard_right
        out.questions += r.questions
        out.no_audio += r.no_audio
        out.app_cpu += r.app_cpu
        out.llm_cpu += r.llm_cpu
        out.early_used += r.early_used
        out.early_discarded += r.early_discarded
        out.kept += r.kept
        out.withdrawn += r.withdrawn
        out.turns += r.turns
        for name, values in r.stages.items():
            out.stages[name] += values
    return out


def _p(values: list[float], q: float) -> float | None:
    return percentile(values, q) if values else None


def tables(run_: VoiceRun) -> list[Table]:
    summary = Table("Voice: scripted conversation through the file transport",
                    ["profile", "voice", "voice-to-voice p50 s", "p95 s", "turns",
                     "heard right", "turns without audio", "barge-in p50 s", "p95 s",
                     "interruptions", "detected", "session s"])
    profiles = list(dict.fromkeys(r.profile for r in run_.results))
    several = len({r.voice for r in run_.results}) > 1
    rows = [r for p in profiles for r in run_.results if r.profile == p]
    if several:
        rows = [x for p in profiles
                for x in [*(r for r in run_.results if r.profile == p),
                          pooled(run_.results, p)]]
    for r in rows:
        if r.error:
            summary.add(r.profile, r.voice, "failed", "-", "-", "-", "-", "-", "-", "-", "-",
                        fmt(r.wall, 0))
            summary.notes.append(f"{r.profile}, {r.voice}: {r.error}")
            continue
        summary.add(r.profile, r.voice, fmt(_p(r.v2v, 50), 2), fmt(_p(r.v2v, 95), 2),
                    len(r.v2v), f"{r.heard_right}/{r.questions}", r.no_audio,
                    fmt(_p(r.barge, 50), 3), fmt(_p(r.barge, 95), 3), len(r.barge),
                    r.barge_detected, fmt(r.wall, 0))
    ok = [pooled(run_.results, p) for p in profiles] if several else [
        r for r in run_.results if not r.error]
    by = {r.profile: r for r in ok}
    if len(by) >= 2:  # the first profile against the last: stock / tuned, before / after
        first, last = next(iter(by)), list(by)[-1]
        s, t = by[first], by[last]
        cells = []
        for a, b in ((_p(s.v2v, 50), _p(t.v2v, 50)), (_p(s.v2v, 95), _p(t.v2v, 95)),
                     (_p(s.barge, 50), _p(t.barge, 50)), (_p(s.barge, 95), _p(t.barge, 95))):
            cells.append(f"{a / b:.2f}x" if a and b else "-")
        summary.add(f"{first} / {last}", "all voices" if several else "", cells[0], cells[1], "",
                    "", "", cells[2], cells[3], "", "", "")
    holding = {r.profile for r in run_.results
               if any(e["event"] == "output_hold" for e in r.events)}
    summary.notes += [f"{r.profile}: the bot's voice held for speech that did not follow "
                      f"{r.false_holds} times in {r.playing_secs / 60:.1f} min of bot speech"
                      for r in ok if r.profile in holding]
    summary.notes += [*run_.notes, f"LLM: {run_.llm}",
                                   "voice-to-voice: end of user speech (input file) to the "
                                   "bot's first output sample; barge-in: onset of user "
                                   "speech while the bot plays to the bot's last sample"]
    stages = Table("Voice: where the time goes (median seconds per answered question)",
                   ["stage", *[r.profile for r in ok]])
    if ok:
        for name in ok[0].stages:
            stages.add(name, *[fmt(median(r.stages[name]), 3) if r.stages[name] else "-"
                               for r in ok])
        stages.add("sum of medians",
                   *[fmt(sum(median(v) for v in r.stages.values() if v), 3) for r in ok])
        stages.add("voice-to-voice p50", *[fmt(_p(r.v2v, 50), 3) for r in ok])
    stages.notes.append("VAD end of speech: speech end -> VAD stop; STT: VAD stop -> final "
                        "transcript; turn end wait: transcript -> user turn end (smart-turn "
                        "or speech timeout); then LLM first token, first TTS audio, output")
    cost = Table("Voice: work per session (all voices; CPU seconds over the whole "
                 "conversation)",
                 ["profile", "early transcripts used", "discarded", "speculative answers",
                  "withdrawn", "cancel rate", "app CPU s", "LLM server CPU s", "total CPU s",
                  "session s"])
    for r in ok:
        spec = r.kept + r.withdrawn
        cost.add(r.profile, r.early_used, r.early_discarded, spec, r.withdrawn,
                 f"{r.withdrawn / spec:.0%}" if spec else "-", fmt(r.app_cpu, 1),
                 fmt(r.llm_cpu, 1), fmt(r.app_cpu + r.llm_cpu, 1), fmt(r.wall, 0))
    cost.notes.append("the same script for every profile, so CPU seconds compare directly; "
                      "a speculative answer is the LLM started on the pause's transcript "
                      "(turn.speculate), withdrawn when the turn did not end with those words")
    tables_ = [summary, stages, cost]
    if several:
        per_voice = Table("Voice: stages per voice (median seconds per answered question)",
                          ["profile", "voice", *(ok[0].stages if ok else []),
                           "voice-to-voice p50"])
        for r in run_.results:
            if not r.error:
                per_voice.add(r.profile, r.voice,
                              *[fmt(median(v), 3) if v else "-" for v in r.stages.values()],
                              fmt(_p(r.v2v, 50), 3))
        tables_.append(per_voice)
    return tables_


def plots(run_: VoiceRun, out: Path) -> list[Path]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    ok = [r for r in run_.results if not r.error]
    if not ok:
        return []
    written = []
    profiles = list(dict.fromkeys(r.profile for r in ok))
    voices = list(dict.fromkeys(r.voice for r in ok))
    if len(voices) > 1:
        fig, ax = plt.subplots(figsize=(8, 4.5))
        width = 0.8 / len(profiles)
        for i, profile in enumerate(profiles):
            p50 = [next((_p(r.v2v, 50) or 0.0 for r in ok
                         if r.profile == profile and r.voice == v), 0.0) for v in voices]
            ax.bar(np.arange(len(voices)) + i * width, p50, width, label=profile)
        ax.set_xticks(np.arange(len(voices)) + width * (len(profiles) - 1) / 2, voices,
                      fontsize=8)
        ax.set_ylabel("voice-to-voice p50 (s)")
        ax.set_title("Voice-to-voice per user voice")
        ax.legend(fontsize=8)
        ax.grid(True, axis="y", alpha=0.3)
        fig.tight_layout()
        path = out / "voice_panel.png"
        fig.savefig(path, dpi=100)
        plt.close(fig)
        written.append(path)
        ok = [pooled(run_.results, p) for p in profiles]
    fig, ax = plt.subplots(figsize=(7, 4.5))
    names = list(ok[0].stages)
    bottom = np.zeros(len(ok))
    for name in names:
        values = np.array([median(r.stages[name]) if r.stages[name] else 0.0 for r in ok])
        ax.bar([r.profile for r in ok], values, bottom=bottom, label=name)
        bottom += values
    ax.set_ylabel("seconds (median per stage)")
    ax.set_title("Voice-to-voice: where the time goes")
    ax.legend(fontsize=7)
    fig.tight_layout()
    path = out / "voice_stages.png"
    fig.savefig(path, dpi=100)
    plt.close(fig)
    written.append(path)

    fig, axes = plt.subplots(1, 2, figsize=(9, 4))
    for ax, attr, title in ((axes[0], "v2v", "voice-to-voice (s)"),
                            (axes[1], "barge", "barge-in: speech onset to bot silence (s)")):
        data = [getattr(r, attr) or [0.0] for r in ok]
        ax.boxplot(data, tick_labels=[r.profile for r in ok])
        ax.set_title(title, fontsize=9)
        ax.grid(True, alpha=0.3)
    fig.tight_layout()
    path = out / "voice_latency.png"
    fig.savefig(path, dpi=100)
    plt.close(fig)
    written.append(path)
    return written
