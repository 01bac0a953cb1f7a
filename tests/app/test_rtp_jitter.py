"""The microphone jitter buffer (pipecatapp/transports/rtp_jitter.py) and what it needs of aiortc.

The upgrade checks fail when aiortc changes what ``install`` replaces or what the receiver
does with it; the behaviour checks feed real aiortc RTP packets through both buffers.
"""

from __future__ import annotations

import inspect
from importlib.metadata import version

import pytest
from aiortc import RTCPeerConnection
from aiortc.jitterbuffer import JitterBuffer
from aiortc.rtcrtpreceiver import RTCRtpReceiver
from aiortc.rtp import RtpPacket

from pipecatapp.transports import rtp_jitter
from pipecatapp.transports.rtp_jitter import AudioJitterBuffer

FRAME = 960  # RTP timestamp units of one 20 ms Opus frame at 48 kHz


def packet(seq: int) -> RtpPacket:
    """An Opus packet as the receiver hands it to the jitter buffer (payload depacketized)."""
    p = RtpPacket(payload_type=111, sequence_number=seq % 65536, timestamp=seq * FRAME % 2**32,
                  payload=b"opus")
    p._data = b"opus%d" % seq  # what RTCRtpReceiver sets from depayload()
    return p


def play(buffer: JitterBuffer | AudioJitterBuffer, seqs: list[int]) -> list[tuple[int, int]]:
    """Feed ``seqs`` in order; for each frame handed on: (packets fed so far, its sequence)."""
    out = []
    for n, seq in enumerate(seqs, 1):
        _, frame = buffer.add(packet(seq))
        if frame is not None:
            out.append((n, frame.timestamp // FRAME))
    return out


def delay(handed_on: tuple[int, int], seqs: list[int]) -> int:
    """How many later packets had come when this frame was handed on: its delay, in frames."""
    fed, seq = handed_on
    return fed - 1 - seqs.index(seq)


def test_aiortc_was_verified_at_the_installed_version() -> None:
    assert version("aiortc") == rtp_jitter.VERIFIED_VERSIONS["aiortc"], (
        "aiortc changed: rerun tests/app/test_rtp_jitter.py and the browser test, then update "
        "rtp_jitter.VERIFIED_VERSIONS")


async def test_an_audio_receiver_still_has_the_buffer_install_replaces() -> None:
    pc = RTCPeerConnection()
    try:
        receiver = pc.addTransceiver("audio").receiver
        buffer = getattr(receiver, rtp_jitter.RECEIVER_BUFFER)
        assert isinstance(buffer, JitterBuffer)
        assert (buffer.capacity, buffer._prefetch) == (16, 4)  # the 80 ms the docstring names
    finally:
        await pc.close()


def test_the_receiver_hands_every_packet_to_the_buffer_and_decodes_what_it_returns() -> None:
    source = inspect.getsource(RTCRtpReceiver._handle_rtp_packet)
    assert "packet._data = depayload(" in source
    assert "pli_flag, encoded_frame = self.__jitter_buffer.add(packet)" in source
    assert "self.__decoder_queue.put((codec, encoded_frame))" in source


def test_one_lost_packet_keeps_aiortcs_buffer_late_and_ours_not() -> None:
    seqs = [s for s in range(65400, 65400 + 300) if s != 65450]  # one lost, and a wrap-around
    theirs = play(JitterBuffer(capacity=16, prefetch=4), seqs)
    ours_buffer = AudioJitterBuffer(frames=2)
    ours = play(ours_buffer, seqs)
    # Before the loss: aiortc holds 4 frames (80 ms), ours 2 (40 ms).
    assert delay(theirs[40], seqs) == 4
    assert delay(ours[40], seqs) == 2
    # After it: aiortc stays 14 frames (280 ms) late for good, ours goes back to 2.
    assert delay(theirs[-1], seqs) == 14, (
        "aiortc's audio jitter buffer no longer stays late after a loss: "
        "pipecatapp/transports/rtp_jitter.py may not be needed any more")
    assert delay(ours[-1], seqs) == 2
    assert ours_buffer.skipped == 1
    handed_on = [seq for _, seq in ours]
    assert handed_on == seqs[:len(handed_on)]  # in order, none twice


def test_reordered_packets_come_out_in_order() -> None:
    seqs = list(range(100))
    seqs[10], seqs[11] = seqs[11], seqs[10]  # 11 arrives before 10
    seqs[50], seqs[52] = seqs[52], seqs[50]  # 52 two places early
    buffer = AudioJitterBuffer(frames=2)
    handed_on = [seq for _, seq in play(buffer, seqs)]
    assert handed_on == list(range(len(handed_on))) and len(handed_on) == 98
    assert buffer.skipped == 0


def test_a_packet_later_than_the_buffer_is_dropped_and_a_new_stream_starts_over() -> None:
    buffer = AudioJitterBuffer(frames=1)
    # 1 comes after it was skipped; then the sender jumps ahead (4, still waiting, goes)
    seqs = [0, 2, 3, 1, 4, 5000, 5001, 5002]
    handed_on = [seq for _, seq in play(buffer, seqs)]
    assert handed_on == [0, 2, 3, 5000, 5001]
    assert buffer.delay_frames == 1


def test_frames_must_be_at_least_one() -> None:
    with pytest.raises(ValueError, match="at least 1"):
        AudioJitterBuffer(frames=0)


async def test_install_gives_each_audio_receiver_ours_once() -> None:
    pc = RTCPeerConnection()
    try:
        audio = pc.addTransceiver("audio").receiver
        video = pc.addTransceiver("video").receiver
        assert rtp_jitter.install(pc, 3) == 1
        ours = getattr(audio, rtp_jitter.RECEIVER_BUFFER)
        assert isinstance(ours, AudioJitterBuffer) and ours.frames == 3
        assert isinstance(getattr(video, rtp_jitter.RECEIVER_BUFFER), JitterBuffer)
        assert rtp_jitter.install(pc, 3) == 1
        assert getattr(audio, rtp_jitter.RECEIVER_BUFFER) is ours
    finally:
        await pc.close()
