"""The one place that reaches past faster-whisper's public API, and why.

(aiortc's is ``transports/rtp_jitter.py``.)

faster-whisper (1.2.1) offers ``WhisperModel.transcribe``, which always pads the log-Mel
features to Whisper's full 30 s encoder window (its ``chunk_length`` option changes how
audio is split, not the padding). The short encoder window of ``services/whisper_window``
needs the steps ``transcribe`` runs inside: the model's feature extractor, its tokenizer,
its decoder prompt, its encoder and the CTranslate2 ``generate`` call, on the model
already loaded (a second CTranslate2 copy of the model would double memory and load time).
No public hook offers that, so :func:`decode_on_window` uses these undocumented (but not
underscore-private) members of ``WhisperModel``: ``feature_extractor``, ``hf_tokenizer``,
``model`` (the ``ctranslate2.models.Whisper``), ``encode`` and ``get_prompt``, plus
``faster_whisper.tokenizer.Tokenizer`` and ``faster_whisper.transcribe.get_suppressed_tokens``.

``tests/engines/test_upstream.py`` fails when an upgrade changes any of it: the members and
their signatures, and the result itself (a decode here on the full 30 s window must give
faster-whisper's own ``transcribe`` text and scores). ``VERIFIED_VERSIONS`` names the
versions it was checked against; a different installed version fails that test too, until
someone has run it and updated the pin.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from faster_whisper import WhisperModel
from faster_whisper.tokenizer import Tokenizer
from faster_whisper.transcribe import get_suppressed_tokens

VERIFIED_VERSIONS = {"faster-whisper": "1.2.1", "ctranslate2": "4.8.5"}
FULL_WINDOW_FRAMES = 3000  # log-Mel frames of Whisper's 30 s encoder window


@dataclass(frozen=True)
class WindowPass:
    """One decode on an encoder window: its tokens and text, and Whisper's own scores."""

    tokens: list[int]
    text: str
    avg_logprob: float  # faster-whisper's definition: cumulative log-prob / (tokens + 1)
    no_speech_prob: float


def _fit(features: np.ndarray, frames: int) -> np.ndarray:
    """Features cut or zero-padded to ``frames`` columns (the encoder's window)."""
    features = features[:, :frames]
    missing = frames - features.shape[1]
    return np.pad(features, ((0, 0), (0, missing))) if missing > 0 else features


def decode_on_window(
    model: WhisperModel,
    samples: np.ndarray,
    *,
    frames: int,
    beam_size: int,
    language: str | None,
    max_new_tokens: int,
    hotwords: str | None = None,
    initial_prompt: str | None = None,
) -> WindowPass:
    """Decode ``samples`` (float32 mono 16 kHz) once, greedy or beam, without timestamps,
    on an encoder window of ``frames`` log-Mel frames (100 a second; 3,000 is the full one)."""
    # The extractor pads the samples by one hop and so returns one frame more than the audio
    # fills; ``transcribe`` drops that frame (its ``content_frames``), and so does this.
    features = _fit(model.feature_extractor(samples)[:, :-1], frames)
    tokenizer = Tokenizer(
        model.hf_tokenizer, model.model.is_multilingual, task="transcribe",
        language=language or "en",
    )
    previous = tokenizer.encode(" " + initial_prompt.strip()) if initial_prompt else []
    prompt = model.get_prompt(tokenizer, previous, without_timestamps=True, hotwords=hotwords)
    result = model.model.generate(
        model.encode(features),
        [prompt],
        beam_size=beam_size,
        max_length=len(prompt) + max_new_tokens,
        return_scores=True,
        return_no_speech_prob=True,
        suppress_blank=True,
        suppress_tokens=get_suppressed_tokens(tokenizer, [-1]),
    )[0]
    tokens = list(result.sequences_ids[0])
    # CTranslate2's score is the cumulative log-prob over the tokens (length penalty 1).
    avg_logprob = result.scores[0] * len(tokens) / (len(tokens) + 1) if tokens else 0.0
    return WindowPass(
        tokens=tokens,
        text=tokenizer.decode(tokens).strip(),
        avg_logprob=float(avg_logprob),
        no_speech_prob=float(result.no_speech_prob),
    )
