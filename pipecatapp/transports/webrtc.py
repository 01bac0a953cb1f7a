"""WebRTC transport: the app's own browser client, served with the signalling routes.

GET / redirects to /client/, a page of static files from ``pipecatapp/web`` (plain browser
WebRTC, no third-party code). The page POSTs its SDP offer to /api/offer; each connection
runs one session of the app through SmallWebRTCTransport, and the session ends when the
browser disconnects. Transcripts and the bot's state reach the page as RTVI messages on the
WebRTC data channel. Every response carries a Content-Security-Policy that allows only this
origin, so the page cannot load anything from elsewhere. The browser brings echo
cancellation, so full duplex with barge-in works with open speakers.

With ``webrtc.playground`` pipecat's prebuilt client is also served at /playground/ (it
POSTs /start, then /sessions/<id>/api/offer); it loads code from the internet.
"""


import asyncio
import uuid
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from loguru import logger

from pipecatapp.config import WebRTCConfig
from pipecatapp.errors import EngineUnavailable

if TYPE_CHECKING:
    from pipecatapp.transports import RunSession

WEB_DIR = Path(__file__).resolve().parent.parent / "web"
PLAYGROUND_PATH = "/playground"
# Seconds a session may take to end by itself after its browser left, before it is cancelled.
END_GRACE_SECS = 5.0
CONTENT_SECURITY_POLICY = "; ".join([
    "default-src 'self'",
    "script-src 'self'",
    "style-src 'self'",
    "img-src 'self'",
    "media-src 'self' blob: mediastream:",
    "connect-src 'self'",
    "object-src 'none'",
    "base-uri 'none'",
    "form-action 'none'",
    "frame-ancestors 'none'",
    "report-uri /csp-report",
])
SECURITY_HEADERS = [
    (b"content-security-policy", CONTENT_SECURITY_POLICY.encode()),
    (b"x-content-type-options", b"nosniff"),
    (b"referrer-policy", b"no-referrer"),
    (b"permissions-policy", b"microphone=(self), camera=()"),
]

SessionStarter = Callable[[Any], Awaitable[None]]


def make_transport(connection: Any) -> Any:
    from pipecat.transports.base_transport import TransportParams
    from pipecat.transports.smallwebrtc.transport import SmallWebRTCTransport

    return SmallWebRTCTransport(
        webrtc_connection=connection,
        params=TransportParams(audio_in_enabled=True, audio_out_enabled=True),
    )


class SecurityHeaders:
    """ASGI middleware: the security headers (CSP first) on every HTTP response, except
    under ``exempt`` (the playground, which needs third-party code)."""

    def __init__(self, app: Any, exempt: str | None = None) -> None:
        self.app = app
        self.exempt = exempt

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        path = scope.get("path", "")
        if scope["type"] != "http" or (
            self.exempt and (path == self.exempt or path.startswith(self.exempt + "/"))
        ):
            await self.app(scope, receive, send)
            return

        async def send_with_headers(message: Any) -> None:
            if message["type"] == "http.response.start":
                message["headers"] = [*message.get("headers", []), *SECURITY_HEADERS]
            await send(message)

        await self.app(scope, receive, send_with_headers)


def build_app(
    start_session: SessionStarter, *, playground: bool = False,
    jitter_frames: int | None = None,
) -> Any:
    """A FastAPI app serving the browser client and the WebRTC signalling routes.

    Each connection's microphone gets ``rtp_jitter.AudioJitterBuffer(jitter_frames)``
    (default ``rtp_jitter.DEFAULT_FRAMES``).
    """
    try:
        from fastapi import FastAPI, Request
        from fastapi.responses import RedirectResponse, Response
        from fastapi.staticfiles import StaticFiles
        from pipecat.transports.smallwebrtc.connection import SmallWebRTCConnection
        from pipecat.transports.smallwebrtc.request_handler import (
            IceCandidate,
            SmallWebRTCPatchRequest,
            SmallWebRTCRequest,
            SmallWebRTCRequestHandler,
        )

        from pipecatapp.transports import rtp_jitter
    except ImportError as e:
        raise EngineUnavailable(
            f"transport=webrtc needs pipecat-ai[webrtc,runner] ({e.name} is missing)"
        ) from None

    app = FastAPI(title="pipecatapp", docs_url=None, redoc_url=None, openapi_url=None)
    app.add_middleware(SecurityHeaders, exempt=PLAYGROUND_PATH if playground else None)
    handler = SmallWebRTCRequestHandler()
    sessions: set[asyncio.Task] = set()
    enders: set[asyncio.Task] = set()

    app.mount("/client", StaticFiles(directory=WEB_DIR, html=True), name="client")
    if playground:
        try:
            from pipecat_ai_prebuilt.frontend import PipecatPrebuiltUI
        except ImportError as e:
            raise EngineUnavailable(
                f"webrtc.playground needs pipecat-ai[runner] ({e.name} is missing)"
            ) from None
        app.mount(PLAYGROUND_PATH, PipecatPrebuiltUI, name="playground")

    @app.post("/csp-report", include_in_schema=False)
    async def csp_report(request: Request) -> Response:
        body = b""
        async for chunk in request.stream():  # the first 2 kB is enough to name the culprit
            body += chunk
            if len(body) >= 2000:
                break
        report = body[:2000].decode("utf-8", "replace")
        logger.warning(f"the browser blocked a request of the page (CSP report): {report}")
        return Response(status_code=204)

    @app.get("/", include_in_schema=False)
    async def root() -> RedirectResponse:
        return RedirectResponse(url="/client/")

    @app.post("/start")
    async def start(request: Request) -> dict[str, Any]:
        return {"sessionId": str(uuid.uuid4())}

    async def on_connection(connection: SmallWebRTCConnection) -> None:
        # pipecat calls this once the offer is answered, before any packet can arrive.
        rtp_jitter.install(connection.pc, jitter_frames or rtp_jitter.DEFAULT_FRAMES)
        task = asyncio.create_task(start_session(connection))
        sessions.add(task)
        task.add_done_callback(sessions.discard)

        @connection.event_handler("closed")
        async def on_closed(_connection: SmallWebRTCConnection) -> None:
            # The browser left (Disconnect ends the session itself; a closed tab may not).
            ender = asyncio.create_task(_end_after(task, END_GRACE_SECS))
            enders.add(ender)
            ender.add_done_callback(enders.discard)

    async def offer(request: SmallWebRTCRequest) -> Any:
        return await handler.handle_web_request(
            request=request, webrtc_connection_callback=on_connection
        )

    async def patch(request: SmallWebRTCPatchRequest) -> dict[str, str]:
        await handler.handle_patch_request(request)
        return {"status": "success"}

    @app.post("/api/offer")
    async def api_offer(request: SmallWebRTCRequest) -> Any:
        return await offer(request)

    @app.patch("/api/offer")
    async def api_patch(request: SmallWebRTCPatchRequest) -> dict[str, str]:
        return await patch(request)

    @app.api_route("/sessions/{session_id}/api/offer", methods=["POST", "PATCH"])
    async def session_offer(session_id: str, request: Request) -> Any:
        data = await request.json()
        if request.method == "POST":
            return await offer(
                SmallWebRTCRequest(
                    sdp=data["sdp"],
                    type=data["type"],
                    pc_id=data.get("pc_id"),
                    restart_pc=data.get("restart_pc"),
                )
            )
        return await patch(
            SmallWebRTCPatchRequest(
                pc_id=data["pc_id"],
                candidates=[IceCandidate(**c) for c in data.get("candidates", [])],
            )
        )

    @app.on_event("shutdown")
    async def shutdown() -> None:
        await handler.close()
        for task in list(sessions):
            task.cancel()
        if sessions:
            await asyncio.wait(list(sessions), timeout=10)

    return app


async def _end_after(task: asyncio.Task, grace: float) -> None:
    done, _ = await asyncio.wait([task], timeout=grace)
    if not done:
        logger.info("the browser left; ending its session")
        task.cancel()


def page_urls(cfg: WebRTCConfig, scheme: str) -> list[str]:
    """The URLs that reach the page: the listen address, or each address of this host
    when listening on all of them."""
    if cfg.host in ("0.0.0.0", "::", ""):
        from pipecatapp.transports.tlscert import host_addresses

        lan = sorted(
            (str(a) if a.version == 4 else f"[{a}]")
            for a in host_addresses()
            if not a.is_loopback and (cfg.host != "0.0.0.0" or a.version == 4)
        )
        hosts = ["localhost", *lan]
    else:
        hosts = [f"[{cfg.host}]" if ":" in cfg.host else cfg.host]
    return [f"{scheme}://{h}:{cfg.port}/" for h in hosts]


def tls_files(cfg: WebRTCConfig) -> tuple[str, str] | None:
    """(certificate, key) to serve HTTPS with, or None for plain HTTP."""
    from pipecatapp.transports import tlscert

    if cfg.cert or cfg.key:
        pair = tlscert.user_supplied(cfg.cert, cfg.key)
    elif cfg.https:
        from pipecatapp.embedded.models import cache_dir

        pair = tlscert.self_signed(cache_dir() / "tls", extra_names=[cfg.host],
                                   extra_addresses=[cfg.host])
        logger.info(f"self-signed HTTPS certificate: {pair.cert}")
    else:
        return None
    return str(pair.cert), str(pair.key)


async def serve(cfg: WebRTCConfig, start_session: SessionStarter) -> None:
    import uvicorn

    tls = tls_files(cfg)
    app = build_app(start_session, playground=cfg.playground,
                    jitter_frames=cfg.jitter_frames)
    scheme = "https" if tls else "http"
    urls = page_urls(cfg, scheme)
    logger.info(f"open {' or '.join(urls)} in a browser and allow the microphone")
    if cfg.playground:
        logger.info(f"pipecat's prebuilt client (needs internet): {urls[0]}playground/")
    config = uvicorn.Config(
        app, host=cfg.host, port=cfg.port, log_level="warning",
        ssl_certfile=tls[0] if tls else None, ssl_keyfile=tls[1] if tls else None,
    )
    await uvicorn.Server(config).serve()


class WebRTCRunner:
    """transport=webrtc: serves the page; each browser connection runs one session (RTVI on)."""

    def __init__(self, cfg: WebRTCConfig) -> None:
        self._cfg = cfg

    async def serve(self, run_session: "RunSession") -> None:
        async def session(connection: Any) -> None:
            await run_session(
                lambda _clock, _timeline: make_transport(connection),
                rtvi=True,
                handle_sigint=False,
            )

        await serve(self._cfg, session)
