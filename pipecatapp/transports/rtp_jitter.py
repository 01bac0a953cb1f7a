"""A low-latency jitter buffer for the browser's microphone, and the one place that installs it.

aiortc (1.16) gives every audio receiver ``JitterBuffer(capacity=16, prefetch=4)``. That
buffer has no clock: it hands one frame to the decoder for each packet that arrives, once 4
more are behind it, so the user's voice reaches the VAD 80 ms late on any link. Worse, it
skips a missing packet only when 16 have piled up behind it, and from then on it still hands
out one frame per packet: one lost packet keeps the microphone about 280 ms late (14 frames)
for the rest of the session. Every barge-in and every answer of that session is then 200 ms
slower (seen in the browser test: the bot went silent 440 ms after the user spoke instead of
about 220 ms).

:class:`AudioJitterBuffer` holds ``frames`` packets (20 ms each with the browser's Opus) to
put reordered packets back in order, and skips a missing packet as soon as ``frames`` later
ones have arrived, so its delay stays ``frames`` packets whatever the network lost.

aiortc has no hook to choose a receiver's jitter buffer, so :func:`install` replaces the
receiver's private ``__jitter_buffer`` right after pipecat has answered the offer, before any
packet can arrive. ``tests/app/test_rtp_jitter.py`` fails when an aiortc upgrade changes what
this relies on: the version, the attribute, what the receiver does with it, and the packet
fields read here (``sequence_number``, ``timestamp``, and ``_data``, the depacketized
payload the receiver sets).
"""

from __future__ import annotations

from typing import Any

from aiortc.jitterbuffer import JitterFrame
from aiortc.rtcrtpreceiver import RTCRtpReceiver
from aiortc.rtp import RtpPacket
from loguru import logger

VERIFIED_VERSIONS = {"aiortc": "1.16.0"}
RECEIVER_BUFFER = "_RTCRtpReceiver__jitter_buffer"  # RTCRtpReceiver.__jitter_buffer
DEFAULT_FRAMES = 2
_SEQ_MOD = 1 << 16
_RESYNC = 100  # a jump of this many sequence numbers (either way) is a new stream


class AudioJitterBuffer:
    """Reorders audio packets and hands each on after at most ``frames`` later ones arrived.

    One RTP packet carries one audio frame (as with Opus in WebRTC). ``add`` has the
    signature of aiortc's ``JitterBuffer.add``: ``(picture loss, frame to decode or None)``.
    """

    def __init__(self, frames: int = DEFAULT_FRAMES) -> None:
        if frames < 1:
            raise ValueError(f"frames must be at least 1, not {frames}")
        self.frames = frames
        self._waiting: dict[int, RtpPacket] = {}
        self._next: int | None = None  # sequence number of the next frame to hand on
        self.skipped = 0  # packets lost, too late, or dropped when the stream restarted

    @property
    def delay_frames(self) -> int:
        """Frames waiting in the buffer (its delay, in frames)."""
        return len(self._waiting)

    def add(self, packet: RtpPacket) -> tuple[bool, JitterFrame | None]:
        seq = packet.sequence_number
        if self._next is None:
            self._next = seq
        ahead = (seq - self._next) % _SEQ_MOD
        if ahead >= _SEQ_MOD - _RESYNC:
            return False, None  # late: its place was already handed on or skipped
        if ahead >= _RESYNC:  # the sender restarted or a long gap: start over here
            self.skipped += len(self._waiting)
            self._waiting.clear()
            self._next = seq
        self._waiting[seq] = packet
        if len(self._waiting) <= self.frames:
            return False, None
        while self._next not in self._waiting:  # lost or late: go on without it
            self.skipped += 1
            self._next = (self._next + 1) % _SEQ_MOD
        out = self._waiting.pop(self._next)
        self._next = (self._next + 1) % _SEQ_MOD
        return False, JitterFrame(data=out._data, timestamp=out.timestamp)  # type: ignore[attr-defined]


def install(pc: Any, frames: int = DEFAULT_FRAMES) -> int:
    """Give every audio receiver of ``pc`` (an aiortc RTCPeerConnection) an AudioJitterBuffer.

    Call it once the offer is answered and before media flows. Returns how many receivers
    got one; if aiortc no longer has the attribute, logs a warning and keeps aiortc's own.
    """
    installed = 0
    for transceiver in pc.getTransceivers():
        receiver = transceiver.receiver
        if transceiver.kind != "audio" or not isinstance(receiver, RTCRtpReceiver):
            continue
        current = getattr(receiver, RECEIVER_BUFFER, None)
        if current is None:
            logger.warning("aiortc's receiver has no jitter buffer attribute any more; "
                           "the microphone keeps aiortc's buffer (80 ms or more of delay)")
            return installed
        if not isinstance(current, AudioJitterBuffer):
            setattr(receiver, RECEIVER_BUFFER, AudioJitterBuffer(frames))
        installed += 1
    return installed
