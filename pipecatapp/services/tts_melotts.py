"""MeloTTS text-to-speech from a local checkpoint and config, sentence by sentence.

pipecat has no MeloTTS service; this is a plain ``TTSService``. MeloTTS's API synthesizes a
whole text at once (``TTS.tts_to_file(text, speaker_id, output_path=None)`` returns float32
audio at the model's rate, 44.1 kHz), so each sentence pipecat's aggregator hands over is
split into MeloTTS's own pieces and every piece is sent out as soon as it is synthesized.

MeloTTS is not on this project's default install: it comes from its maintained source
(``requirements-melotts.txt``), and at import and first synthesis it reads BERT tokenizers
and models from the Hugging Face cache. Where the package or the files are absent the
service refuses with :class:`~pipecatapp.errors.EngineUnavailable`, saying what is missing
and how to get it.
"""

from __future__ import annotations

import asyncio
import importlib.util
import time
from collections.abc import AsyncGenerator, AsyncIterator
from pathlib import Path
from typing import Any

import numpy as np
from loguru import logger
from pipecat.audio.utils import create_stream_resampler
from pipecat.frames.frames import Frame
from pipecat.services.settings import TTSSettings
from pipecat.services.tts_service import TTSService
from pipecat.utils.errors import ErrorCategory
from pipecat.utils.tracing.service_decorators import traced_tts

from pipecatapp.errors import ConfigError, EngineUnavailable
from pipecatapp.services.tts_common import audio_frames, float_to_pcm16, trim_lead_in

INSTALL_HINT = (
    "install it with `pip install -r requirements-melotts.txt` (MeloTTS from "
    "github.com/myshell-ai/MeloTTS at a pinned commit; Debian needs libmecab-dev)"
)
FILES_HINT = (
    "a MeloTTS voice is a config.json and a checkpoint.pth, e.g. from the Hugging Face "
    "repository myshell-ai/MeloTTS-English (the pipecatapp Ansible role fetches them)"
)
LANGUAGES = ("EN", "EN_V2", "EN_NEWEST", "ES", "FR", "ZH", "JP", "KR")


def missing_melotts_parts(config_path: str, ckpt_path: str) -> list[str]:
    """What stops MeloTTS from running here, one line each; empty when nothing does."""
    missing = []
    if importlib.util.find_spec("melo") is None:
        missing.append(f"the MeloTTS package (module 'melo') is not installed: {INSTALL_HINT}")
    files_missing = False
    for setting, value in (("tts.melo_config", config_path), ("tts.melo_ckpt", ckpt_path)):
        if not value:
            missing.append(f"{setting} is not set")
        elif not Path(value).expanduser().is_file():
            missing.append(f"{setting}: {value} does not exist")
        else:
            continue
        files_missing = True
    if files_missing:
        missing.append(FILES_HINT)
    return missing


def load_melotts(*, language: str, device: str, config_path: str, ckpt_path: str) -> Any:
    """MeloTTS's ``TTS`` model loaded from local files; EngineUnavailable if it cannot load."""
    try:
        from melo.api import TTS
    except Exception as e:  # import reads tokenizers/NLTK data; offline that is an OSError
        raise EngineUnavailable(
            f"tts.engine=melotts: importing MeloTTS failed ({type(e).__name__}: {e}). It reads "
            "BERT tokenizers (bert-base-uncased for English) from the Hugging Face cache and "
            f"NLTK data at import; fetch them once where the hub is reachable, or {INSTALL_HINT}"
        ) from e
    try:
        return TTS(
            language=language,
            device=device,
            use_hf=False,
            config_path=str(Path(config_path).expanduser()),
            ckpt_path=str(Path(ckpt_path).expanduser()),
        )
    except Exception as e:
        raise EngineUnavailable(
            f"tts.engine=melotts: loading {ckpt_path} with {config_path} failed "
            f"({type(e).__name__}: {e})"
        ) from e


class MeloTTSService(TTSService):
    """A local MeloTTS voice, synthesized sentence by sentence (piece by piece within one)."""

    def __init__(
        self,
        *,
        config_path: str,
        ckpt_path: str,
        language: str = "EN",
        speaker: str = "EN-US",
        device: str = "cpu",
        speed: float = 1.0,
        **kwargs: Any,
    ) -> None:
        """Load the MeloTTS model once.

        Args:
            config_path: the voice's config.json.
            ckpt_path: the voice's checkpoint.pth.
            language: MeloTTS language code (EN, ES, FR, ZH, JP, KR, ...).
            speaker: a speaker of the voice (for EN: EN-US, EN-BR, EN_INDIA, EN-AU, EN-Default).
            device: torch device ("cpu", "cuda", "mps").
            speed: speaking rate (1.0 normal, above 1 faster).
            **kwargs: passed to pipecat's TTSService.
        """
        if language not in LANGUAGES:
            raise ConfigError("tts.melo_language", f"{language!r} is not one of {LANGUAGES}")
        if not speed > 0:
            raise ConfigError("tts.melo_speed", f"must be above 0, got {speed}")
        missing = missing_melotts_parts(config_path, ckpt_path)
        if missing:
            raise EngineUnavailable("tts.engine=melotts cannot run here: " + "; ".join(missing))

        super().__init__(
            push_start_frame=True,
            push_stop_frames=True,
            settings=TTSSettings(model=None, voice=speaker, language=None),
            **kwargs,
        )
        started = time.perf_counter()
        self.melo = load_melotts(
            language=language, device=device, config_path=config_path, ckpt_path=ckpt_path
        )
        """MeloTTS's loaded ``TTS`` model."""
        self.load_secs = time.perf_counter() - started
        speakers = dict(self.melo.hps.data.spk2id)
        if speaker not in speakers:
            raise ConfigError(
                "tts.melo_speaker",
                f"{speaker!r} is not a speaker of this voice: {sorted(speakers)}",
            )
        self.speaker_id = int(speakers[speaker])
        self.speed = speed
        self.resampler = create_stream_resampler()
        self.last_lead_in_trimmed_secs = 0.0

    def can_generate_metrics(self) -> bool:
        """TTFB and usage metrics are reported."""
        return True

    @property
    def native_sample_rate(self) -> int:
        """The voice's own sample rate (44.1 kHz for MeloTTS's published voices)."""
        return int(self.melo.hps.data.sampling_rate)

    def pieces(self, text: str) -> list[str]:
        """MeloTTS's own split of ``text`` into the pieces it synthesizes one at a time."""
        return list(self.melo.split_sentences_into_pieces(text, self.melo.language, quiet=True))

    def synthesize_piece(self, piece: str, first: bool) -> bytes:
        """One piece as 16-bit PCM at the voice's rate (the first one's lead-in trimmed)."""
        audio = self.melo.tts_to_file(
            piece, self.speaker_id, output_path=None, speed=self.speed, quiet=True
        )
        pcm = float_to_pcm16(np.asarray(audio, dtype=np.float32))
        if first:
            pcm, self.last_lead_in_trimmed_secs = trim_lead_in(pcm, self.native_sample_rate)
        return pcm

    def synthesize_pcm(self, text: str) -> tuple[bytes, int]:
        """All of ``text`` as 16-bit mono PCM at the voice's rate (for render_speech)."""
        pcm = b"".join(
            self.synthesize_piece(piece, index == 0)
            for index, piece in enumerate(self.pieces(text))
        )
        return pcm, self.native_sample_rate

    @traced_tts
    async def run_tts(self, text: str, context_id: str) -> AsyncGenerator[Frame, None]:
        """Synthesize ``text`` piece by piece and stream each piece out when it is ready."""

        async def pcm_pieces() -> AsyncIterator[bytes]:
            pieces = await asyncio.to_thread(self.pieces, text)
            for index, piece in enumerate(pieces):
                yield await asyncio.to_thread(self.synthesize_piece, piece, index == 0)

        produced = False
        try:
            await self.start_tts_usage_metrics(text)
            async for frame in audio_frames(
                pcm_pieces(), in_rate=self.native_sample_rate, out_rate=self.sample_rate,
                resampler=self.resampler, context_id=context_id,
            ):
                if not produced:
                    produced = True
                    await self.stop_ttfb_metrics()
                yield frame
        except Exception as e:
            logger.error(f"{self}: MeloTTS synthesis failed: {e}")
            # Upstream at once, so the fault guard stops the turn and apologizes.
            await self.push_error(
                error_msg=f"MeloTTS synthesis failed: {e}", exception=e,
                category=ErrorCategory.UNKNOWN,  # one sentence failed: the engine stays usable
            )
        finally:
            await self.stop_ttfb_metrics()
        if not produced and text.strip():
            logger.warning(f"{self}: MeloTTS produced no audio for [{text}]")
