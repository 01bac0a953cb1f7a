"""Local transport: the machine's microphone and speaker through PyAudio.

There is no echo cancellation here: with open speakers use half-duplex
(``--half-duplex``), or headphones.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from pipecat.transports.base_transport import BaseTransport

from pipecatapp.errors import EngineUnavailable

if TYPE_CHECKING:
    from pipecatapp.transports import RunSession


def check_sound_card() -> None:
    """Raise EngineUnavailable when PyAudio is missing or there is no input/output device."""
    try:
        import pyaudio
    except ImportError as e:
        raise EngineUnavailable(
            "transport=local needs PyAudio (pip install 'pipecat-ai[local]', apt portaudio19-dev)"
        ) from e
    pa = pyaudio.PyAudio()
    try:
        for kind, probe in (
            ("microphone", pa.get_default_input_device_info),
            ("speaker", pa.get_default_output_device_info),
        ):
            try:
                probe()
            except (OSError, IOError) as e:  # noqa: UP024 - PyAudio raises IOError
                raise EngineUnavailable(
                    f"transport=local: no {kind} found ({e}). Use --transport webrtc (browser) "
                    "or --transport file."
                ) from None
    finally:
        pa.terminate()


def local_transport() -> BaseTransport:
    from pipecat.transports.local.audio import LocalAudioTransport, LocalAudioTransportParams

    return LocalAudioTransport(
        LocalAudioTransportParams(audio_in_enabled=True, audio_out_enabled=True)
    )


class LocalRunner:
    """transport=local: one session on the sound card, checked once, before anything loads."""

    def __init__(self) -> None:
        check_sound_card()

    async def serve(self, run_session: RunSession) -> None:
        await run_session(lambda _clock, _timeline: local_transport())
