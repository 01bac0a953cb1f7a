"""RealtimeSTT fed with the pipeline's audio: interim text while the user speaks, then a final.

Who decides what: pipecat's Silero VAD (the one that also drives barge-in) marks where an
utterance starts and stops, and pipecat's user-turn strategy decides when the turn is over.
RealtimeSTT supplies the text. Its ``AudioToTextRecorder`` is built once with no microphone
and is fed every 20 ms frame through ``feed_audio()``; its own voice-activity triggers are
left off so two VADs never disagree about one utterance:

- VAD start: the recorder starts a recording that begins with the pre-roll this service
  keeps (the audio before pipecat's VAD confirmed speech, as long as RealtimeSTT's own
  pre-recording buffer), and its realtime worker transcribes the growing recording, which
  this service pushes as ``InterimTranscriptionFrame``s.
- VAD stop: the recording stops at once and its final transcription runs off the audio
  path; the result is pushed as a *finalized* ``TranscriptionFrame``, which lets the turn
  strategy end the turn without waiting for its STT safety-net timeout. With greedy finals
  (``beam_size=1``), an interim pass that started after the speech ended already holds the
  final text; it is used instead of queueing a second pass behind it.

Both lanes run on one faster-whisper model loaded here (RealtimeSTT's own loader has no
thread setting and would load a second copy for the realtime lane): the final with
``beam_size``, the interim passes greedy. RealtimeSTT needs torch at import (CPU wheel,
pinned in requirements.txt) but not torchaudio; Silero comes from a local ONNX file, so
nothing is fetched from torch.hub. Only RealtimeSTT's public API is used: the recorder's
constructor options (executors, callbacks), its recording methods (``feed_audio``,
``flush_audio_input``, ``drain_audio_input``, ``start``, ``stop``, ``wait_audio``,
``perform_final_transcription``, ``shutdown``) and its exported result types.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from faster_whisper import WhisperModel
from loguru import logger
from pipecat.audio.resamplers.base_audio_resampler import BaseAudioResampler
from pipecat.audio.utils import create_stream_resampler
from pipecat.frames.frames import (
    CancelFrame,
    EndFrame,
    Frame,
    InterimTranscriptionFrame,
    StartFrame,
    TranscriptionFrame,
    VADUserStartedSpeakingFrame,
    VADUserStoppedSpeakingFrame,
)
from pipecat.processors.frame_processor import FrameDirection
from pipecat.services.settings import STTSettings
from pipecat.services.stt_service import STTService
from pipecat.utils.time import time_now_iso8601

from pipecatapp.errors import ConfigError, EngineUnavailable
from pipecatapp.services.stt_whisper import (
    audio_user_id,
    check_whisper_settings,
    load_whisper_model,
    warm_up_model,
    whisper_language,
)
from pipecatapp.services.whisper_window import FULL_WINDOW_SECS, transcribe_utterance

RECORDER_RATE = 16000
# The recorder's chunk (its ``buffer_size``, in samples): fed audio is cut into chunks of
# this size, and its pre-recording buffer holds whole chunks.
RECORDER_CHUNK = 512
CHUNK_BYTES = RECORDER_CHUNK * 2
# Speech end -> final transcript, p99, on a busy 2-core CPU (see the README (Speech engines)).
DEFAULT_TTFS_P99_SECS = 3.0
_DRAIN_TIMEOUT_SECS = 2.0


@dataclass
class LanePass:
    """One transcription pass: which lane, how much audio, how long it took."""

    lane: str
    audio_secs: float
    took_secs: float


@dataclass
class InterimPass:
    """The latest interim pass of an utterance: the audio it covers and, once done, its text."""

    utterance: int
    samples: int
    done: threading.Event = field(default_factory=threading.Event)
    text: str = ""


class WhisperLane:
    """A RealtimeSTT transcription executor running one faster-whisper model.

    RealtimeSTT calls ``transcribe(audio, language=..., use_prompt=...)`` with float32
    16 kHz audio and reads ``.text`` and ``.info`` from the result.
    """

    def __init__(
        self, model: WhisperModel, *, name: str, beam_size: int, language: str,
        window_secs: float = FULL_WINDOW_SECS,
    ) -> None:
        self.whisper = model
        self.name = name
        self.beam_size = beam_size
        self.window_secs = window_secs
        self.language = language
        self.passes: list[LanePass] = []
        # Set by the service when an utterance starts; passes are tagged with it.
        self.utterance = 0
        self.latest: InterimPass | None = None

    def transcribe(
        self, audio: np.ndarray, language: str | None = None, use_prompt: bool = True, **_: Any
    ) -> Any:
        from RealtimeSTT import TranscriptionInfo, TranscriptionResult

        started = time.perf_counter()
        record = InterimPass(self.utterance, len(audio))
        self.latest = record
        try:
            heard = transcribe_utterance(
                self.whisper,
                np.asarray(audio, dtype=np.float32),
                window_secs=self.window_secs,
                beam_size=self.beam_size,
                language=language or self.language,
            )
            text = record.text = heard.text
        finally:
            record.done.set()
        self.passes.append(
            LanePass(self.name, len(audio) / RECORDER_RATE, time.perf_counter() - started)
        )
        return TranscriptionResult(
            text=text,
            # The language is configured, never detected.
            info=TranscriptionInfo(language=language or self.language, language_probability=1.0),
        )


def format_text(text: str) -> str:
    """A reused interim formatted as the recorder formats a final with this service's
    options: whitespace runs made one space, the first letter upper case, no period added."""
    text = " ".join(text.split())
    return text[:1].upper() + text[1:]


class Preroll:
    """The last whole chunks of 16-bit audio fed to the recorder before an utterance: the
    same audio as the recorder's own pre-recording buffer, sized as it sizes that."""

    def __init__(self, secs: float) -> None:
        self.max_bytes = int((RECORDER_RATE // RECORDER_CHUNK) * secs) * CHUNK_BYTES
        self.audio = bytearray()

    def add(self, pcm: bytes) -> None:
        self.audio += pcm
        del self.audio[: -self.max_bytes]

    def take(self) -> bytes:
        """The buffered audio, emptying the buffer."""
        audio = bytes(self.audio)
        self.audio.clear()
        return audio


def start_recording(recorder: Any, preroll: bytes) -> None:
    """Start a recording that begins with ``preroll`` (blocking, at most a drain timeout).

    Only whole chunks have been fed (see ``RealtimeSTTService.run_stt``); once the
    recorder's worker has consumed them all, none can land in the recording a second time.
    """
    recorder.drain_audio_input(timeout=_DRAIN_TIMEOUT_SECS)
    recorder.start(frames=[preroll] if preroll else None)


def stop_recording(recorder: Any, tail: bytes) -> np.ndarray | None:
    """Feed ``tail`` (the last partial chunk), stop the recording and return its audio
    (float32, 16 kHz), all fed audio included; None when no recording was running."""
    if tail:
        recorder.feed_audio(tail, original_sample_rate=RECORDER_RATE)
    recorder.flush_audio_input()
    recorder.drain_audio_input(timeout=_DRAIN_TIMEOUT_SECS)
    if not recorder.is_recording:
        return None
    recorder.stop()
    recorder.wait_audio()  # takes the recording just queued; no transcription yet
    return np.array(recorder.audio, dtype=np.float32, copy=True)


def build_recorder(
    *,
    final_lane: WhisperLane,
    realtime_lane: WhisperLane,
    model: str,
    language: str,
    compute_type: str,
    silero_onnx_path: Path,
    realtime_pause_secs: float,
    preroll_secs: float,
    on_interim: Any,
) -> Any:
    """An AudioToTextRecorder with no microphone, its own VAD triggers off, our two lanes."""
    try:
        from RealtimeSTT import AudioToTextRecorder
    except ImportError as e:
        raise EngineUnavailable(
            f"stt.engine=realtimestt: RealtimeSTT cannot be imported ({e}); install it with "
            "`pip install -r requirements.txt` (RealtimeSTT==1.1.2 with the pinned CPU torch)"
        ) from e
    try:
        return AudioToTextRecorder(
            model=model,
            language=language,
            compute_type=compute_type,
            device="cpu",
            use_microphone=False,
            spinner=False,
            level=logging.WARNING,
            no_log_file=True,
            transcription_executor=final_lane,
            enable_realtime_transcription=True,
            realtime_transcription_executor=realtime_lane,
            realtime_processing_pause=realtime_pause_secs,
            on_realtime_transcription_update=on_interim,
            silero_backend="raw_onnx",
            silero_onnx_model_path=str(silero_onnx_path),
            silero_onnx_threads=1,
            buffer_size=RECORDER_CHUNK,
            pre_recording_buffer_duration=preroll_secs,
            min_length_of_recording=0.0,
            min_gap_between_recordings=0.0,
            ensure_sentence_ends_with_period=False,
        )
    except Exception as e:
        raise EngineUnavailable(f"stt.engine=realtimestt: the recorder failed to start: {e}") from e


@dataclass
class RecorderState:
    """What the service tracks between pipecat's event loop and the recorder's threads."""

    preroll: Preroll
    closed: bool = False
    close_lock: threading.Lock = field(default_factory=threading.Lock)
    resampler: BaseAudioResampler = field(default_factory=create_stream_resampler)
    unfed: bytearray = field(default_factory=bytearray)  # less than a chunk, not fed yet
    loop: asyncio.AbstractEventLoop | None = None
    utterance: int = 0  # utterances begun so far
    open_utterance: int | None = None  # the one interims belong to; None between utterances
    finals: asyncio.Queue[tuple[int, np.ndarray, InterimPass | None] | None] = field(
        default_factory=asyncio.Queue
    )
    final_task: asyncio.Task[None] | None = None


class RealtimeSTTService(STTService):
    """RealtimeSTT as a pipecat STT service, with pipecat's VAD marking utterances."""

    def __init__(
        self,
        *,
        model: str,
        beam_size: int,
        cpu_threads: int,
        language: str,
        silero_onnx_path: str,
        compute_type: str = "int8",
        window_secs: float = FULL_WINDOW_SECS,
        realtime_pause_secs: float = 0.2,
        preroll_secs: float = 1.0,
        ttfs_p99_latency: float = DEFAULT_TTFS_P99_SECS,
        **kwargs: Any,
    ) -> None:
        """Load the model, build the recorder (about 2 s) and warm the model up.

        Args:
            model: a local CTranslate2 Whisper directory, or a model name (downloads).
            beam_size: beam of the final transcription (1 = greedy); interims are greedy.
            cpu_threads: CTranslate2 threads of the shared model (0 = library default).
            language: the spoken language ("en").
            silero_onnx_path: Silero VAD ONNX file the recorder loads (no torch.hub).
            compute_type: CTranslate2 compute type; int8 on a CPU.
            window_secs: shortest Whisper encoder window of a pass (30 = the full window).
            realtime_pause_secs: pause between interim passes while the user speaks.
            preroll_secs: audio kept before pipecat's VAD confirms speech.
            ttfs_p99_latency: speech end -> transcript p99 the turn strategy may wait for.
            **kwargs: passed to pipecat's STTService.
        """
        check_whisper_settings(
            model=model, beam_size=beam_size, cpu_threads=cpu_threads, compute_type=compute_type,
            window_secs=window_secs,
        )
        silero = Path(silero_onnx_path).expanduser()
        if not silero.is_file():
            raise EngineUnavailable(
                f"stt.silero_onnx_path: {silero_onnx_path} is missing (pipecat ships one: "
                "pipecat/audio/vad/data/silero_vad.onnx)"
            )
        if realtime_pause_secs <= 0:
            raise ConfigError(
                "stt.realtime_pause_secs", f"must be above 0, got {realtime_pause_secs}"
            )
        if not 0.2 <= preroll_secs <= 5:
            raise ConfigError("stt.preroll_secs", f"must be 0.2 to 5 seconds, got {preroll_secs}")
        super().__init__(
            settings=STTSettings(model=model, language=whisper_language(language)),
            ttfs_p99_latency=ttfs_p99_latency,
            **kwargs,
        )
        self.language = language
        """The spoken language ("en")."""
        self.beam_size = beam_size
        """Beam width of the final transcription (1 = greedy)."""
        self.cpu_threads = cpu_threads
        """CTranslate2 threads of the shared Whisper model."""
        self.user_id = ""
        """The user of the latest audio frame (transports that know it set it)."""
        self.state = RecorderState(preroll=Preroll(preroll_secs))

        started = time.perf_counter()
        whisper = load_whisper_model(model, cpu_threads=cpu_threads, compute_type=compute_type)
        self.warm_up_secs = warm_up_model(whisper, language=language)
        self.final_lane = WhisperLane(
            whisper, name="final", beam_size=beam_size, language=language, window_secs=window_secs
        )
        self.realtime_lane = WhisperLane(
            whisper, name="interim", beam_size=1, language=language, window_secs=window_secs
        )
        self.recorder = build_recorder(
            final_lane=self.final_lane,
            realtime_lane=self.realtime_lane,
            model=model,
            language=language,
            compute_type=compute_type,
            silero_onnx_path=silero,
            realtime_pause_secs=realtime_pause_secs,
            preroll_secs=preroll_secs,
            on_interim=self.on_interim_from_recorder,
        )
        self.load_secs = time.perf_counter() - started
        logger.debug(f"{self}: RealtimeSTT ready in {self.load_secs:.2f}s")

        # Where each final came from: "final" (a final pass) or "interim" (reused, see below).
        self.final_sources: list[str] = []

    def can_generate_metrics(self) -> bool:
        """TTFB (speech end -> final transcript) is measured by STTService."""
        return True

    async def start(self, frame: StartFrame) -> None:
        """Start the service and the task that runs final transcriptions in order."""
        await super().start(frame)
        self.state.loop = asyncio.get_running_loop()
        self.state.final_task = self.create_task(self.run_finals(), name="realtimestt_final")

    async def stop(self, frame: EndFrame) -> None:
        """Finish an utterance still open, transcribe what is queued, then shut down."""
        await self.end_utterance(0.0)
        if self.state.final_task is not None:
            await self.state.finals.put(None)
            await self.state.final_task
            self.state.final_task = None
        await super().stop(frame)
        await self.close()

    async def cancel(self, frame: CancelFrame) -> None:
        """Drop queued work and shut the recorder down."""
        if self.state.final_task is not None:
            await self.cancel_task(self.state.final_task)
            self.state.final_task = None
        await super().cancel(frame)
        await self.close()

    async def cleanup(self) -> None:
        """Release the recorder's threads and model."""
        await super().cleanup()
        await self.close()

    async def close(self) -> None:
        """Shut the recorder down (idempotent; bounded by RealtimeSTT's own join timeouts)."""
        await asyncio.to_thread(self.shutdown_recorder)

    def shutdown_recorder(self) -> None:
        """Shut the recorder down once (blocking)."""
        with self.state.close_lock:
            if self.state.closed:
                return
            self.state.closed = True
        started = time.perf_counter()
        self.recorder.shutdown()
        logger.debug(f"{self}: RealtimeSTT shut down in {time.perf_counter() - started:.2f}s")

    async def run_stt(self, audio: bytes) -> Any:
        """Feed one frame of pipeline audio to the recorder (text arrives separately)."""
        if self.state.closed:
            return
        state = self.state
        if self.sample_rate != RECORDER_RATE:
            audio = await state.resampler.resample(audio, self.sample_rate, RECORDER_RATE)
        # Whole chunks only: then all audio fed has reached the recorder's worker once it
        # drains, and the pre-roll is exactly what it consumed.
        state.unfed += audio
        whole = len(state.unfed) - len(state.unfed) % CHUNK_BYTES
        if whole:
            chunks = bytes(state.unfed[:whole])
            del state.unfed[:whole]
            if state.open_utterance is None:
                state.preroll.add(chunks)
            self.recorder.feed_audio(chunks, original_sample_rate=RECORDER_RATE)
        yield None

    async def process_frame(self, frame: Frame, direction: FrameDirection) -> None:
        """Besides STTService's handling, open and close utterances on pipecat's VAD."""
        user_id = audio_user_id(frame)
        if user_id is not None:
            self.user_id = user_id
        await super().process_frame(frame, direction)
        if isinstance(frame, VADUserStartedSpeakingFrame):
            await self.begin_utterance()
        elif isinstance(frame, VADUserStoppedSpeakingFrame):
            await self.end_utterance(frame.stop_secs)

    async def begin_utterance(self) -> None:
        """Start a recording with the pre-roll (pipecat's VAD heard speech start)."""
        state = self.state
        if state.closed or state.open_utterance is not None:
            return
        state.utterance += 1
        state.open_utterance = state.utterance
        self.realtime_lane.utterance = state.utterance
        # Nothing is fed while this runs (frames reach this service one at a time).
        await asyncio.to_thread(start_recording, self.recorder, state.preroll.take())

    async def end_utterance(self, stop_secs: float) -> None:
        """Stop the recording and queue its final (pipecat's VAD heard speech stop
        ``stop_secs`` after the speech ended)."""
        state = self.state
        utterance = state.open_utterance
        if utterance is None or state.closed:
            return
        state.open_utterance = None
        tail = bytes(state.unfed)
        state.unfed.clear()
        audio = await asyncio.to_thread(stop_recording, self.recorder, tail)
        if audio is not None and audio.size:
            await state.finals.put(
                (utterance, audio, self.reusable_interim(utterance, audio, stop_secs))
            )

    def reusable_interim(
        self, utterance: int, audio: np.ndarray, stop_secs: float
    ) -> InterimPass | None:
        """The interim pass that already heard all of the utterance's speech, if any.

        The VAD declares the stop ``stop_secs`` after the speech ended, so an interim pass
        over at least ``len(audio) - stop_secs`` samples (running or done) has all the words.
        With greedy finals its text is what a final pass would give: use it instead of
        queueing a final pass behind it (one model, two cores). Beam finals always re-run.
        """
        latest = self.realtime_lane.latest
        if self.beam_size != 1 or latest is None or latest.utterance != utterance:
            return None
        speech_samples = len(audio) - int(stop_secs * RECORDER_RATE)
        return latest if stop_secs > 0 and latest.samples >= speech_samples else None

    async def run_finals(self) -> None:
        """Transcribe queued utterances in order and push each final (the service's task)."""
        while (item := await self.state.finals.get()) is not None:
            utterance, audio, interim = item
            text, source = "", "final"
            if interim is not None and await asyncio.to_thread(interim.done.wait, 30.0):
                text, source = format_text(interim.text), "interim"
            if not text:
                try:
                    text = await asyncio.to_thread(
                        self.recorder.perform_final_transcription, audio
                    )
                except Exception as e:
                    await self.push_error(f"{self}: final transcription failed: {e}", exception=e)
                    continue
                source = "final"
            text = (text or "").strip()
            self.final_sources.append(source)
            logger.debug(f"{self}: final #{utterance} from the {source} pass [{text}]")
            if text:
                frame = TranscriptionFrame(
                    text, self.user_id, time_now_iso8601(), self.settings.language
                )
                frame.finalized = True
                await self.push_frame(frame)

    def on_interim_from_recorder(self, text: str) -> None:
        """Called on RealtimeSTT's realtime thread with the whole utterance so far."""
        loop = self.state.loop
        utterance = self.state.open_utterance
        if loop is None or utterance is None or not text.strip():
            return
        try:
            asyncio.run_coroutine_threadsafe(self.push_interim(utterance, text.strip()), loop)
        except RuntimeError:  # the loop closed under us (pipeline ended): nobody to tell
            logger.debug(f"{self}: interim after the event loop closed dropped")

    async def push_interim(self, utterance: int, text: str) -> None:
        """Push an interim of ``utterance``, unless that utterance has ended."""
        if utterance != self.state.open_utterance:
            return  # the utterance ended (its final is on the way): a late interim is stale
        await self.push_frame(
            InterimTranscriptionFrame(
                text, self.user_id, time_now_iso8601(), self.settings.language
            )
        )
