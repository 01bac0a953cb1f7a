"""The browser side of the webrtc transport: the prebuilt client is served offline and the
signalling routes answer. (A full WebRTC media session needs a non-loopback ICE candidate,
which tests here may not use; the README tells the manual check with a browser.)"""

from __future__ import annotations

from fastapi.testclient import TestClient

from pipecatapp.transports.webrtc import build_app


def test_prebuilt_client_and_signalling_routes():
    started: list[object] = []

    async def start_session(connection: object) -> None:
        started.append(connection)

    with TestClient(build_app(start_session)) as client:
        root = client.get("/", follow_redirects=False)
        assert root.status_code in (302, 307)
        assert root.headers["location"] == "/client/"
        page = client.get("/client/")
        assert page.status_code == 200
        assert "<html" in page.text.lower()
        session = client.post("/start", json={"transport": "webrtc"})
        assert session.status_code == 200
        assert session.json()["sessionId"]
    assert started == []  # no session before a browser offers its media
