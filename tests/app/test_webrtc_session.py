"""A whole WebRTC session: a WebRTC peer (aiortc, standing in for the browser) sends the
question as real media to the app's signalling route and records what comes back.

ICE candidates are limited to 127.0.0.1 (aioice leaves loopback out of its host candidates
by default), so all traffic stays on loopback.
"""

from __future__ import annotations

import asyncio

import httpx
import pytest

from pipecatapp.bot import run_session
from pipecatapp.config import load_config
from pipecatapp.embedded.server import free_port
from pipecatapp.transports import rtp_jitter, webrtc
from tests.app.voice import USER_RATE, USER_VOICE, compose, duration, events

pytestmark = pytest.mark.slow


@pytest.fixture
def loopback_ice(monkeypatch):
    import aioice.ice

    monkeypatch.setattr(aioice.ice, "get_host_addresses", lambda use_ipv4, use_ipv6: ["127.0.0.1"])


async def test_browser_session_answers(tmp_path, loopback_ice, smollm2_server, espeak_wav,
                                       transcribe):
    import uvicorn
    from aiortc import RTCPeerConnection, RTCSessionDescription
    from aiortc.contrib.media import MediaPlayer, MediaRecorder

    question = espeak_wav("What is the capital of France?", tmp_path / "q.wav",
                          voice=USER_VOICE, rate=USER_RATE)
    # Silence first: the session loads its speech models when the peer connects.
    wav = compose(tmp_path / "in.wav", [(6.0, question)], total=6.0 + duration(question) + 12)
    timeline = tmp_path / "timeline.jsonl"
    cfg = load_config(environ={}, overrides={"timeline": str(timeline), "llm.temperature": 0,
                                             "llm.url": smollm2_server.base_url})

    connections = []

    async def session(connection: object) -> None:
        connections.append(connection)
        await run_session(
            cfg, lambda _c, _t: webrtc.make_transport(connection), rtvi=True, handle_sigint=False,
        )

    port = free_port()
    server = uvicorn.Server(uvicorn.Config(webrtc.build_app(session), host="127.0.0.1",
                                           port=port, log_level="warning"))
    serving = asyncio.create_task(server.serve())
    pc = RTCPeerConnection()
    player = None
    recorder = MediaRecorder(str(tmp_path / "heard.wav"))
    try:
        for _ in range(100):
            if server.started:
                break
            await asyncio.sleep(0.05)
        player = MediaPlayer(str(wav))
        pc.addTrack(player.audio)
        got_track = asyncio.Event()

        @pc.on("track")
        def on_track(track: object) -> None:
            recorder.addTrack(track)
            got_track.set()

        await pc.setLocalDescription(await pc.createOffer())
        async with httpx.AsyncClient() as client:
            answer = await client.post(
                f"http://127.0.0.1:{port}/api/offer",
                json={"sdp": pc.localDescription.sdp, "type": "offer"}, timeout=30,
            )
        answer.raise_for_status()
        await pc.setRemoteDescription(RTCSessionDescription(**{
            k: answer.json()[k] for k in ("sdp", "type")
        }))
        await asyncio.wait_for(got_track.wait(), 15)
        await recorder.start()
        deadline = asyncio.get_running_loop().time() + duration(wav) + 10
        while asyncio.get_running_loop().time() < deadline:
            if any(e["event"] == "bot_audio_stop" for e in events(timeline)):
                await asyncio.sleep(0.5)
                break
            await asyncio.sleep(0.2)
    finally:
        await recorder.stop()
        if player is not None and player.audio is not None:
            player.audio.stop()
        await pc.close()
        server.should_exit = True
        await asyncio.wait_for(serving, 15)
    said = [e["text"] for e in events(timeline) if e["event"] == "stt_final"]
    assert any("france" in s.lower() for s in said), said
    # The microphone went through the app's own jitter buffer (rtp_jitter), not aiortc's.
    receivers = [t.receiver for t in connections[0].pc.getTransceivers() if t.kind == "audio"]
    assert [type(getattr(r, rtp_jitter.RECEIVER_BUFFER)) for r in receivers] == [
        rtp_jitter.AudioJitterBuffer]
    heard = transcribe(tmp_path / "heard.wav").lower()
    assert "paris" in heard, heard
