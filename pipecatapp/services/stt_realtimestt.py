"""RealtimeSTT fed with the pipeline's audio: interim text while the user speaks, then a final.

Who decides what: pipecat's Silero VAD (the one that also drives barge-in) marks where an
utterance starts and stops, and pipecat's user-turn strategy decides when the turn is over.
RealtimeSTT supplies the text. Its ``AudioToTextRecorder`` is built once with no microphone
and is fed every 20 ms frame through ``feed_audio()``; its own voice-activity triggers are
left off so two VADs never disagree about one utterance:

- VAD start: the recorder starts a recording that begins with its pre-roll buffer (the
  audio before pipecat's VAD confirmed speech), and its realtime worker transcribes the
  growing recording, which this service pushes as ``InterimTranscriptionFrame``s.
- VAD stop: the recording stops at once and its final transcription runs off the audio
  path; the result is pushed as a *finalized* ``TranscriptionFrame``, which lets the turn
  strategy end the turn without waiting for its STT safety-net timeout. With greedy finals
  (``beam_size=1``), an interim pass that started after the speech ended already holds the
  final text; it is used instead of queueing a second pass behind it.

Both lanes run on one faster-whisper model loaded here (RealtimeSTT's own loader has no
thread setting and would load a second copy for the realtime lane): the final with
``beam_size``, the interim passes greedy. RealtimeSTT needs torch at import (CPU wheel,
pinned in requirements.txt) but not torchaudio; Silero comes from a local ONNX file, so
nothing is fetched from torch.hub.
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
    check_whisper_settings,
    load_whisper_model,
    warm_up_model,
    whisper_language,
)
from pipecatapp.services.whisper_window import FULL_WINDOW_SECS, transcribe_utterance

RECORDER_RATE = 16000
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
        self._model = model
        self._name = name
        self._beam_size = beam_size
        self._window_secs = window_secs
        self._language = language
        self.passes: list[LanePass] = []
        # Set by the service when an utterance starts; passes are tagged with it.
        self.utterance = 0
        self.latest: InterimPass | None = None

    def transcribe(
        self, audio: np.ndarray, language: str | None = None, use_prompt: bool = True, **_: Any
    ) -> Any:
        from RealtimeSTT.transcription_engines.base import (
            TranscriptionInfo,
            TranscriptionResult,
        )

        started = time.perf_counter()
        record = InterimPass(self.utterance, len(audio))
        self.latest = record
        try:
            heard = transcribe_utterance(
                self._model,
                np.asarray(audio, dtype=np.float32),
                window_secs=self._window_secs,
                beam_size=self._beam_size,
                language=language or self._language,
            )
            text = record.text = heard.text
        finally:
            record.done.set()
        self.passes.append(
            LanePass(self._name, len(audio) / RECORDER_RATE, time.perf_counter() - started)
        )
        return TranscriptionResult(
            text=text,
            # The language is configured, never detected.
            info=TranscriptionInfo(language=language or self._language, language_probability=1.0),
        )


def format_text(text: str) -> str:
    """RealtimeSTT's formatting of a final (sentence case), applied to a reused interim."""
    from RealtimeSTT.core.text_formatting import preprocess_output

    return preprocess_output(
        text, ensure_sentence_starting_uppercase=True, ensure_sentence_ends_with_period=False
    )


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
            pre_recording_buffer_duration=preroll_secs,
            min_length_of_recording=0.0,
            min_gap_between_recordings=0.0,
            ensure_sentence_ends_with_period=False,
        )
    except Exception as e:
        raise EngineUnavailable(f"stt.engine=realtimestt: the recorder failed to start: {e}") from e


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
        self._language = language
        self._beam_size = beam_size
        self._cpu_threads = cpu_threads

        started = time.perf_counter()
        whisper = load_whisper_model(model, cpu_threads=cpu_threads, compute_type=compute_type)
        self.warm_up_secs = warm_up_model(whisper, language=language)
        self.final_lane = WhisperLane(
            whisper, name="final", beam_size=beam_size, language=language, window_secs=window_secs
        )
        self.realtime_lane = WhisperLane(
            whisper, name="interim", beam_size=1, language=language, window_secs=window_secs
        )
        self._recorder = build_recorder(
            final_lane=self.final_lane,
            realtime_lane=self.realtime_lane,
            model=model,
            language=language,
            compute_type=compute_type,
            silero_onnx_path=silero,
            realtime_pause_secs=realtime_pause_secs,
            preroll_secs=preroll_secs,
            on_interim=self._on_interim_from_recorder,
        )
        self.load_secs = time.perf_counter() - started
        logger.debug(f"{self}: RealtimeSTT ready in {self.load_secs:.2f}s")

        self._closed = False
        self._close_lock = threading.Lock()
        self._resampler = create_stream_resampler()
        self._loop: asyncio.AbstractEventLoop | None = None
        # The utterance interims belong to; None between utterances (late interims dropped).
        self._utterance = 0
        self._open_utterance: int | None = None
        self._finals: asyncio.Queue[tuple[int, np.ndarray, InterimPass | None] | None] = (
            asyncio.Queue()
        )
        # Where each final came from: "final" (a final pass) or "interim" (reused, see below).
        self.final_sources: list[str] = []
        self._final_task: asyncio.Task[None] | None = None

    @property
    def beam_size(self) -> int:
        """Beam width of the final transcription (1 = greedy)."""
        return self._beam_size

    @property
    def cpu_threads(self) -> int:
        """CTranslate2 threads of the shared Whisper model."""
        return self._cpu_threads

    @property
    def recorder(self) -> Any:
        """The RealtimeSTT AudioToTextRecorder this service drives."""
        return self._recorder

    def can_generate_metrics(self) -> bool:
        """TTFB (speech end -> final transcript) is measured by STTService."""
        return True

    async def start(self, frame: StartFrame) -> None:
        """Start the service and the task that runs final transcriptions in order."""
        await super().start(frame)
        self._loop = asyncio.get_running_loop()
        self._final_task = self.create_task(self._final_task_handler(), name="realtimestt_final")

    async def stop(self, frame: EndFrame) -> None:
        """Finish an utterance still open, transcribe what is queued, then shut down."""
        await self._end_utterance(0.0)
        if self._final_task is not None:
            await self._finals.put(None)
            await self._final_task
            self._final_task = None
        await super().stop(frame)
        await self.close()

    async def cancel(self, frame: CancelFrame) -> None:
        """Drop queued work and shut the recorder down."""
        if self._final_task is not None:
            await self.cancel_task(self._final_task)
            self._final_task = None
        await super().cancel(frame)
        await self.close()

    async def cleanup(self) -> None:
        """Release the recorder's threads and model."""
        await super().cleanup()
        await self.close()

    async def close(self) -> None:
        """Shut the recorder down (idempotent; bounded by RealtimeSTT's own join timeouts)."""
        await asyncio.to_thread(self._shutdown_recorder)

    def _shutdown_recorder(self) -> None:
        with self._close_lock:
            if self._closed:
                return
            self._closed = True
        started = time.perf_counter()
        self._recorder.shutdown()
        logger.debug(f"{self}: RealtimeSTT shut down in {time.perf_counter() - started:.2f}s")

    async def run_stt(self, audio: bytes) -> Any:
        """Feed one frame of pipeline audio to the recorder (text arrives separately)."""
        if self._closed:
            return
        if self.sample_rate != RECORDER_RATE:
            audio = await self._resampler.resample(audio, self.sample_rate, RECORDER_RATE)
        self._recorder.feed_audio(audio, original_sample_rate=RECORDER_RATE)
        yield None

    async def process_frame(self, frame: Frame, direction: FrameDirection) -> None:
        """Besides STTService's handling, open and close utterances on pipecat's VAD."""
        await super().process_frame(frame, direction)
        if isinstance(frame, VADUserStartedSpeakingFrame):
            await self._begin_utterance()
        elif isinstance(frame, VADUserStoppedSpeakingFrame):
            await self._end_utterance(frame.stop_secs)

    async def _begin_utterance(self) -> None:
        if self._closed or self._open_utterance is not None:
            return
        self._utterance += 1
        self._open_utterance = self._utterance
        self.realtime_lane.utterance = self._utterance
        await asyncio.to_thread(self._start_recording)

    def _start_recording(self) -> None:
        recorder = self._recorder
        # Everything fed so far has reached the pre-roll buffer, and nothing is fed while
        # this runs (frames reach this service one at a time): no chunk lost or doubled.
        recorder.drain_audio_input(timeout=_DRAIN_TIMEOUT_SECS)
        preroll = list(recorder.audio_buffer)
        recorder.audio_buffer.clear()
        recorder.start(frames=preroll)

    async def _end_utterance(self, stop_secs: float) -> None:
        utterance = self._open_utterance
        if utterance is None or self._closed:
            return
        self._open_utterance = None
        audio = await asyncio.to_thread(self._stop_recording)
        if audio is not None and audio.size:
            await self._finals.put(
                (utterance, audio, self._reusable_interim(utterance, audio, stop_secs))
            )

    def _reusable_interim(
        self, utterance: int, audio: np.ndarray, stop_secs: float
    ) -> InterimPass | None:
        """The interim pass that already heard all of the utterance's speech, if any.

        The VAD declares the stop ``stop_secs`` after the speech ended, so an interim pass
        over at least ``len(audio) - stop_secs`` samples (running or done) has all the words.
        With greedy finals its text is what a final pass would give: use it instead of
        queueing a final pass behind it (one model, two cores). Beam finals always re-run.
        """
        latest = self.realtime_lane.latest
        if self._beam_size != 1 or latest is None or latest.utterance != utterance:
            return None
        speech_samples = len(audio) - int(stop_secs * RECORDER_RATE)
        return latest if stop_secs > 0 and latest.samples >= speech_samples else None

    def _stop_recording(self) -> np.ndarray | None:
        recorder = self._recorder
        recorder.flush_audio_input()
        recorder.drain_audio_input(timeout=_DRAIN_TIMEOUT_SECS)
        if not recorder.is_recording:
            return None
        recorder.stop()
        recorder.wait_audio()  # takes the recording just queued; no transcription yet
        return np.array(recorder.audio, dtype=np.float32, copy=True)

    async def _final_task_handler(self) -> None:
        while (item := await self._finals.get()) is not None:
            utterance, audio, interim = item
            text, source = "", "final"
            if interim is not None and await asyncio.to_thread(interim.done.wait, 30.0):
                text, source = format_text(interim.text), "interim"
            if not text:
                try:
                    text = await asyncio.to_thread(
                        self._recorder.perform_final_transcription, audio
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
                    text, self._user_id, time_now_iso8601(), self._settings.language
                )
                frame.finalized = True
                await self.push_frame(frame)

    def _on_interim_from_recorder(self, text: str) -> None:
        """Called on RealtimeSTT's realtime thread with the whole utterance so far."""
        loop = self._loop
        utterance = self._open_utterance
        if loop is None or utterance is None or not text.strip():
            return
        try:
            asyncio.run_coroutine_threadsafe(self._push_interim(utterance, text.strip()), loop)
        except RuntimeError:  # the loop closed under us (pipeline ended): nobody to tell
            logger.debug(f"{self}: interim after the event loop closed dropped")

    async def _push_interim(self, utterance: int, text: str) -> None:
        if utterance != self._open_utterance:
            return  # the utterance ended (its final is on the way): a late interim is stale
        await self.push_frame(
            InterimTranscriptionFrame(
                text, self._user_id, time_now_iso8601(), self._settings.language
            )
        )
