"""The browser side of the webrtc transport: the app's own client page is served with a
Content-Security-Policy that allows only its own origin, the prebuilt playground only behind
its flag, and the signalling routes answer. (The whole session in a real browser is
tests/app/test_browser.py.)"""

from __future__ import annotations

import re

from fastapi.testclient import TestClient

from pipecatapp.transports.webrtc import CONTENT_SECURITY_POLICY, WEB_DIR, build_app


async def _never(connection: object) -> None:
    raise AssertionError("no session may start without an SDP offer")


def test_own_client_and_signalling_routes():
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
        assert 'id="connect"' in page.text and 'id="mute"' in page.text
        assert page.headers["content-security-policy"] == CONTENT_SECURITY_POLICY
        for asset in ("client.js", "client.css", "icon.svg"):
            got = client.get(f"/client/{asset}")
            assert got.status_code == 200, asset
            assert "default-src 'self'" in got.headers["content-security-policy"]
        session = client.post("/start", json={"transport": "webrtc"})
        assert session.status_code == 200
        assert session.json()["sessionId"]
        assert "content-security-policy" in session.headers
        bad = client.post("/api/offer", json={"type": "offer"})
        assert bad.status_code == 422  # names the missing field, starts nothing
        assert "sdp" in bad.text
        assert client.get("/playground/").status_code == 404
    assert started == []  # no session before a browser offers its media


def test_page_references_only_its_own_origin():
    """Every URL in the page's files is relative (same origin): no CDN, font or analytics."""
    for path in WEB_DIR.iterdir():
        text = path.read_text()
        urls = re.findall(r"""(?:src|href)=["']([^"']+)["']|fetch\(["'`]([^"'`]+)""", text)
        for groups in urls:
            url = next(u for u in groups if u)
            assert "//" not in url, f"{path.name} refers to another origin: {url}"
        # The SVG's xmlns is a name, not a request.
        assert not re.search(r"https?://(?!www\.w3\.org/2000/svg)", text), path.name


def test_csp_allows_only_own_origin():
    directives = dict(d.strip().split(" ", 1) for d in CONTENT_SECURITY_POLICY.split(";"))
    assert directives["default-src"] == "'self'"
    for name in ("script-src", "style-src", "img-src", "connect-src"):
        assert directives[name] == "'self'", name
    assert directives["object-src"] == "'none'"


def test_playground_behind_its_flag_without_csp():
    with TestClient(build_app(_never, playground=True)) as client:
        page = client.get("/playground/")
        assert page.status_code == 200
        assert "<html" in page.text.lower()
        assert "content-security-policy" not in page.headers  # it needs third-party code
        assert "content-security-policy" in client.get("/client/").headers


def test_csp_report_is_accepted():
    with TestClient(build_app(_never)) as client:
        got = client.post("/csp-report", content=b'{"csp-report": {"blocked-uri": "x"}}',
                          headers={"content-type": "application/csp-report"})
        assert got.status_code == 204
