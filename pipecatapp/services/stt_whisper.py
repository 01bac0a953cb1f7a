"""Whisper (faster-whisper) speech-to-text on pipecat's SegmentedSTTService.

pipecat's own WhisperSTTService transcribes each VAD segment once, with faster-whisper's
default beam of 5 and its default thread count, and offers no hook for either. This service
is built on the same public base class (``SegmentedSTTService``: one ``run_stt`` call per
VAD segment, raw 16-bit PCM) with the same settings (``WhisperSTTService.Settings``), and
adds ``beam_size`` (1 = greedy, measurably faster on a small CPU) and ``cpu_threads``,
transcribes a short utterance on a short encoder window (``window_secs``, see
whisper_window: 3x faster on a question), loads the model once, and warms it up at
construction so the first user turn does not pay for the first inference.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import AsyncGenerator, Callable
from pathlib import Path
from typing import Any, cast

import numpy as np
from faster_whisper import WhisperModel
from loguru import logger
from pipecat.frames.frames import (
    EagerEndOfTurnCancelFrame,
    EagerTranscriptionFrame,
    Frame,
    InputAudioRawFrame,
    TranscriptionFrame,
    UserAudioRawFrame,
    VADUserStartedSpeakingFrame,
    VADUserStoppedSpeakingFrame,
)
from pipecat.processors.frame_processor import FrameDirection
from pipecat.services.stt_service import SegmentedSTTService
from pipecat.services.whisper.stt import WhisperSTTSettings, language_to_whisper_language
from pipecat.transcriptions.language import Language
from pipecat.utils.time import time_now_iso8601
from pipecat.utils.tracing.service_decorators import traced_stt

from pipecatapp.errors import ConfigError, EngineUnavailable, redact
from pipecatapp.not_understood import STT_FAILED, SpeechNotUnderstoodFrame
from pipecatapp.services.bounded_whisper import MIN_AVG_LOGPROB, judge, transcribe_readings
from pipecatapp.services.conditioning import readings
from pipecatapp.services.early_transcript import EarlyTranscript
from pipecatapp.services.whisper_window import FULL_WINDOW_SECS, transcribe_utterance

# Speech end -> final transcript, p99, for Whisper base int8 on a busy 2-core CPU
# (see the README (Speech engines)). The turn stop strategy uses it as its safety net.
DEFAULT_TTFS_P99_SECS = 2.5
# Below this a short window repeats short answers ("Why? Why?", "No. No."): on 30 espeak
# utterances of 1-3 words, 3-4 word errors at 7-10 s, 7 at 6 s and 18-21 at 3-4 s.
MIN_WINDOW_SECS = 8.0


def check_whisper_settings(
    *, model: str, beam_size: int, cpu_threads: int, compute_type: str,
    window_secs: float = FULL_WINDOW_SECS,
) -> None:
    """Reject settings faster-whisper would fail on later, naming the setting."""
    if not model:
        raise ConfigError("stt.model", "empty: give a CTranslate2 model directory or a name")
    looks_like_path = model.startswith(("/", ".", "~")) or ("/" in model and Path(model).exists())
    if looks_like_path and not (Path(model).expanduser() / "model.bin").is_file():
        raise EngineUnavailable(
            f"stt.model: {model} is not a CTranslate2 Whisper model directory (no model.bin in it)"
        )
    if beam_size < 1:
        raise ConfigError("stt.beam_size", f"must be 1 (greedy) or more, got {beam_size}")
    if cpu_threads < 0:
        raise ConfigError(
            "stt.cpu_threads", f"must be 0 (library default) or more, got {cpu_threads}"
        )
    if not compute_type:
        raise ConfigError("stt.compute_type", "empty: use int8 on a CPU")
    if not MIN_WINDOW_SECS <= window_secs <= FULL_WINDOW_SECS:
        raise ConfigError(
            "stt.window_secs",
            f"must be between {MIN_WINDOW_SECS:g} and {FULL_WINDOW_SECS:g} seconds "
            f"({FULL_WINDOW_SECS:g} = Whisper's full window), got {window_secs:g}",
        )


def whisper_language(language: str) -> Language:
    """pipecat's Language for a code such as ``en``; ConfigError naming stt.language if unknown."""
    try:
        return Language(language)
    except ValueError:
        raise ConfigError(
            "stt.language", f"{language!r} is not a language code Whisper knows (e.g. en, de, fr)"
        ) from None


def audio_user_id(frame: Frame) -> str | None:
    """The user an audio frame is from ("" when the transport does not say); None for any
    frame that is not input audio. STT services stamp their transcripts with it."""
    if isinstance(frame, UserAudioRawFrame):
        return frame.user_id
    return "" if isinstance(frame, InputAudioRawFrame) else None


def unsupported_language(model: WhisperModel, language: str | None) -> str | None:
    """Why ``model`` cannot transcribe ``language`` (an English-only model and another
    language), or None when it can. Without this check an English-only model would answer
    in fluent English whatever the speaker's language."""
    if not language or language in model.supported_languages:
        return None
    return (
        f"the Whisper model cannot transcribe {language!r}: it knows only "
        f"{sorted(model.supported_languages)}; use a multilingual model"
    )


def load_whisper_model(model: str, *, cpu_threads: int, compute_type: str) -> WhisperModel:
    """Load a faster-whisper model on the CPU, turning load failures into EngineUnavailable."""
    path = Path(model).expanduser()
    source = str(path) if path.is_dir() else model
    try:
        return WhisperModel(
            source, device="cpu", compute_type=compute_type, cpu_threads=cpu_threads
        )
    except Exception as e:  # faster-whisper raises several types (OSError, RuntimeError, ...)
        raise EngineUnavailable(
            f"stt.model: cannot load Whisper model {model!r}: {e}. Give a local CTranslate2 "
            "directory, or a model name on a machine that can reach the Hugging Face hub."
        ) from e


def warm_up_model(model: WhisperModel, *, language: str | None) -> float:
    """Run the encoder and a few decoder steps once, so the first real turn runs at full speed.

    The input is a second of low noise; decoding is greedy, without temperature fallback and
    capped at a few tokens (silence makes a beam search wander through every fallback
    temperature: 5.9 s instead of 0.3 s here). Returns the seconds it took.
    """
    noise = np.random.default_rng(0).normal(0.0, 0.001, 16000).astype(np.float32)
    started = time.perf_counter()
    segments, _ = model.transcribe(
        noise,
        beam_size=1,
        temperature=0.0,
        language=language,
        max_new_tokens=4,
        condition_on_previous_text=False,
    )
    list(segments)
    return time.perf_counter() - started


class WhisperSTT(SegmentedSTTService):
    """faster-whisper on the CPU, one transcription per VAD segment, beam and threads set."""

    Settings = WhisperSTTSettings

    def __init__(
        self,
        *,
        model: str,
        beam_size: int,
        cpu_threads: int,
        language: str,
        compute_type: str = "int8",
        window_secs: float = FULL_WINDOW_SECS,
        warm_up: bool = True,
        ttfs_p99_latency: float = DEFAULT_TTFS_P99_SECS,
        max_secs: float | None = None,
        min_avg_logprob: float = MIN_AVG_LOGPROB,
        early: bool = False,
        eager: bool = False,
        trailing_silence_secs: float = 0.5,
        **kwargs: Any,
    ) -> None:
        """Load the model (once) and, unless ``warm_up`` is False, warm it up.

        Args:
            model: a local CTranslate2 Whisper directory, or a model name (downloads).
            beam_size: 1 for greedy decoding, 5 for pipecat's default beam search.
            cpu_threads: CTranslate2 intra-op threads (0 = library default).
            language: the spoken language ("en"), passed to Whisper to skip detection.
            compute_type: CTranslate2 compute type; int8 on a CPU.
            window_secs: shortest encoder window for an utterance (30 = always the full one).
            warm_up: transcribe a second of silence now, so the first turn is not slow.
            ttfs_p99_latency: speech end -> transcript p99 the turn strategy may wait for.
            max_secs: bound on one utterance's decoding (retries that would run past it are
                not started) and judge each utterance: what was not understood becomes a
                SpeechNotUnderstoodFrame instead of text. None: one transcription, as before.
            min_avg_logprob: below this mean token log-probability a transcript is unsure.
            early: transcribe at the user's pause when a PauseWatchingVAD says so (see
                services/early_transcript), so the transcript is ready at the VAD stop.
            eager: with ``early``, offer a transcript that is ready before the VAD stop as
                an EagerTranscriptionFrame (a speculative turn end, see pipecatapp.speculation)
                and withdraw it with an EagerEndOfTurnCancelFrame if the user goes on.
            trailing_silence_secs: silence pipecat appends to each segment (its default); an
                early transcription appends the same, or Whisper hears another utterance
                (a segment cut 40-130 ms after the speech made Whisper repeat a sentence in
                22 of 50 cuts, and none with the silence appended).
            **kwargs: passed to pipecat's SegmentedSTTService.
        """
        check_whisper_settings(
            model=model, beam_size=beam_size, cpu_threads=cpu_threads, compute_type=compute_type,
            window_secs=window_secs,
        )
        settings = WhisperSTTSettings(
            model=model,
            language=whisper_language(language),
            # pipecat's WhisperSTTService defaults
            no_speech_prob=0.4,
            hotwords=None,
            initial_prompt=None,
        )
        super().__init__(settings=settings, ttfs_p99_latency=ttfs_p99_latency,
                         trailing_silence_secs=trailing_silence_secs, **kwargs)
        self.trailing_silence_secs = trailing_silence_secs
        """Silence appended to each segment (and to an early transcription's audio)."""
        self.beam_size = beam_size
        """Beam width of every transcription (1 = greedy)."""
        self.window_secs = window_secs
        """Shortest encoder window of a transcription (30 = Whisper's full window)."""
        self.cpu_threads = cpu_threads
        """CTranslate2 threads the model was loaded with."""
        self.max_secs = max_secs
        self.min_avg_logprob = min_avg_logprob
        self.user_id = ""
        """The user of the latest audio frame (transports that know it set it)."""
        self.early = early
        """Transcribe at the user's pause (``user_paused``), before the VAD stop."""
        self.early_transcript: EarlyTranscript[str | SpeechNotUnderstoodFrame] | None = None
        self.eager = eager
        """Offer the pause's transcript before the VAD stop (``early`` only)."""
        self._offered: threading.Event | None = None  # the offered transcription's stop flag
        started = time.perf_counter()
        self.whisper = load_whisper_model(
            model, cpu_threads=cpu_threads, compute_type=compute_type
        )
        self.load_secs = time.perf_counter() - started
        logger.debug(f"{self}: Whisper model loaded in {self.load_secs:.2f}s")
        unsupported = unsupported_language(self.whisper, self.language_code)
        if unsupported:
            raise ConfigError("stt.language", unsupported)
        self.warm_up_secs = 0.0
        if warm_up:
            self.warm_up()

    @property
    def wants_wav_segments(self) -> bool:
        """Segments arrive as raw 16-bit PCM, which the model reads directly."""
        return False

    @property
    def whisper_settings(self) -> WhisperSTTSettings:
        """The service's current settings (language, no-speech threshold, hotwords, prompt)."""
        return cast(WhisperSTTSettings, self.settings)

    @property
    def language_code(self) -> str | None:
        """Whisper's code of the configured language ("en")."""
        language = self.whisper_settings.language
        return str(language) if language else None

    def can_generate_metrics(self) -> bool:
        """Processing time and TTFB are reported."""
        return True

    def language_to_service_language(self, language: Language) -> str | None:
        """Whisper's code for a pipecat Language."""
        return language_to_whisper_language(language)

    def warm_up(self) -> float:
        """Run one inference on silence (blocking); returns and records its duration."""
        self.warm_up_secs = warm_up_model(self.whisper, language=self.language_code)
        logger.debug(f"{self}: warm-up took {self.warm_up_secs:.2f}s")
        return self.warm_up_secs

    async def process_frame(self, frame: Frame, direction: FrameDirection) -> None:
        """Note the user each audio frame is from, then process it as pipecat does."""
        user_id = audio_user_id(frame)
        if user_id is not None:
            self.user_id = user_id
        await super().process_frame(frame, direction)
        if self.early_transcript is not None:
            if isinstance(frame, VADUserStartedSpeakingFrame):
                self.early_transcript.speech_started()
                self._offered = None
            elif isinstance(frame, VADUserStoppedSpeakingFrame):
                self.early_transcript.speech_stopped()
                self._offered = None

    async def process_audio_frame(self, frame: InputAudioRawFrame,
                                  direction: FrameDirection) -> None:
        """Buffer the audio as pipecat does, and keep the early transcript's copy of it."""
        await super().process_audio_frame(frame, direction)
        if self.early:
            if self.early_transcript is None:
                self.early_transcript = EarlyTranscript(keep_bytes=self.sample_rate * 2)
            self.early_transcript.add_audio(frame.audio)

    def user_paused(self) -> None:
        """The VAD heard a pause: transcribe what was said so far (PauseListener)."""
        if self.early_transcript is not None:
            self.early_transcript.start(self.transcribe_paused, self.create_task)

    def user_resumed(self) -> None:
        """The user spoke again after the pause: that transcription is void (PauseListener)."""
        if self.early_transcript is not None:
            offered = self._offered is not None and self._offered is self.early_transcript.stop
            self.early_transcript.resumed()
            if offered:  # the turn end it predicted is withdrawn
                self._offered = None
                self.create_task(self.push_frame(EagerEndOfTurnCancelFrame()),
                                 f"{self}::withdraw_eager")

    @traced_stt
    async def handle_transcription(
        self, transcript: str, is_final: bool, language: Language | str | None = None
    ) -> None:
        """A transcript is ready (pipecat's STT tracing records it here when enabled)."""

    async def run_stt(self, audio: bytes) -> AsyncGenerator[Frame, None]:
        """Transcribe one VAD segment (16-bit mono PCM) with the configured beam; with
        ``max_secs`` set, within that bound and judged (see services/bounded_whisper).
        A transcription started at the user's pause that stands for this segment is used
        instead."""
        await self.start_processing_metrics()
        outcome = None
        if self.early_transcript is not None:
            outcome = await self.early_transcript.take(audio)
        if outcome is None:
            outcome = await self.transcribe_pcm(audio)
        await self.stop_processing_metrics()
        if isinstance(outcome, SpeechNotUnderstoodFrame):
            yield outcome
            return
        text = outcome
        settings = self.whisper_settings
        if text:
            await self.handle_transcription(text, True, settings.language)
            logger.debug(f"{self}: transcription [{text}]")
            yield TranscriptionFrame(text, self.user_id, time_now_iso8601(), settings.language)

    async def transcribe_paused(self, audio: bytes) -> str | SpeechNotUnderstoodFrame:
        """:meth:`transcribe_pcm` of the audio up to the pause, with the silence pipecat
        will append to the segment, so that Whisper hears what it would at the VAD stop.
        With ``eager``, a transcript ready while the VAD still waits is offered at once."""
        silence = bytes(2 * int(self.sample_rate * self.trailing_silence_secs))
        early = self.early_transcript
        stop = early.stop if early is not None else None
        outcome = await self.transcribe_pcm(audio + silence,
                                            stopped=stop.is_set if stop is not None else None)
        if self.eager and early is not None and stop is not None and isinstance(outcome, str) \
                and outcome.strip() and early.standing(stop):
            self._offered = stop
            await self.push_frame(EagerTranscriptionFrame(
                outcome, self.user_id, time_now_iso8601(), self.whisper_settings.language))
        return outcome

    async def transcribe_pcm(
        self, audio: bytes, stopped: Callable[[], bool] | None = None
    ) -> str | SpeechNotUnderstoodFrame:
        """The text of 16-bit mono PCM, or (with ``max_secs``) the verdict when it was not
        understood; once ``stopped()`` is true, no further retry starts."""
        samples = np.frombuffer(audio, dtype=np.int16).astype(np.float32) / 32768.0
        settings = self.whisper_settings
        no_speech = settings.no_speech_prob
        options: dict[str, Any] = {
            "window_secs": self.window_secs,
            "beam_size": self.beam_size,
            "language": self.language_code,
            "hotwords": settings.hotwords or None,
            "initial_prompt": settings.initial_prompt or None,
        }
        if self.max_secs is not None:
            return await self.judged(samples, options, stopped)
        heard = await asyncio.to_thread(
            transcribe_utterance,
            self.whisper,
            samples,
            no_speech_threshold=no_speech if isinstance(no_speech, float) else None,
            **options,
        )
        return heard.text

    async def judged(
        self, samples: np.ndarray, options: dict[str, Any],
        stopped: Callable[[], bool] | None = None,
    ) -> str | SpeechNotUnderstoodFrame:
        """Condition the utterance (telephone band; clipped speech has two readings) and
        decode it within ``max_secs``: the text if understood, else the verdict as a frame
        (an engine error included)."""
        assert self.max_secs is not None
        try:
            decoded = await asyncio.to_thread(
                transcribe_readings,
                self.whisper,
                readings(samples),
                max_secs=self.max_secs,
                min_avg_logprob=self.min_avg_logprob,
                stopped=stopped or (lambda: False),
                **options,
            )
        except Exception as e:  # the engine failed on this utterance: the turn apologizes
            reason = redact(f"{type(e).__name__}: {e}")
            logger.error(f"{self}: transcription failed ({reason})")
            return SpeechNotUnderstoodFrame(reason=STT_FAILED, error=reason)
        verdict = judge(decoded, samples, min_avg_logprob=self.min_avg_logprob)
        logger.debug(
            f"{self}: {verdict.kind} [{decoded.text}] in {decoded.secs:.2f}s, "
            f"{decoded.attempts} decode(s), avg_logprob {decoded.avg_logprob:.2f}"
            f"{', retries cut by the bound' if decoded.cut else ''}"
        )
        if verdict.understood:
            return verdict.text
        return SpeechNotUnderstoodFrame(
            reason=verdict.kind, text=decoded.text, stt_secs=round(decoded.secs, 3),
            attempts=decoded.attempts, cut=decoded.cut,
        )
