"""WebRTC transport: pipecat's prebuilt browser client, served locally (offline).

GET / redirects to /client/ (the prebuilt UI from ``pipecat-ai-prebuilt``); the client
POSTs /start, then its SDP offer to /sessions/<id>/api/offer (or /api/offer); each connection
runs one session of the app through SmallWebRTCTransport. The browser brings echo
cancellation, so full duplex with barge-in works with open speakers.
"""


import asyncio
import uuid
from collections.abc import Awaitable, Callable
from typing import Any

from loguru import logger

from pipecatapp.errors import EngineUnavailable

SessionStarter = Callable[[Any], Awaitable[None]]


def make_transport(connection: Any) -> Any:
    from pipecat.transports.base_transport import TransportParams
    from pipecat.transports.smallwebrtc.transport import SmallWebRTCTransport

    return SmallWebRTCTransport(
        webrtc_connection=connection,
        params=TransportParams(audio_in_enabled=True, audio_out_enabled=True),
    )


def build_app(start_session: SessionStarter) -> Any:
    """A FastAPI app serving the prebuilt client and the WebRTC signalling routes."""
    try:
        from fastapi import FastAPI, Request
        from fastapi.responses import RedirectResponse
        from pipecat.transports.smallwebrtc.connection import SmallWebRTCConnection
        from pipecat.transports.smallwebrtc.request_handler import (
            IceCandidate,
            SmallWebRTCPatchRequest,
            SmallWebRTCRequest,
            SmallWebRTCRequestHandler,
        )
        from pipecat_ai_prebuilt.frontend import PipecatPrebuiltUI
    except ImportError as e:
        raise EngineUnavailable(
            f"transport=webrtc needs pipecat-ai[webrtc,runner] ({e.name} is missing)"
        ) from None

    app = FastAPI(title="pipecatapp")
    handler = SmallWebRTCRequestHandler()
    sessions: set[asyncio.Task] = set()

    app.mount("/client", PipecatPrebuiltUI)

    @app.get("/", include_in_schema=False)
    async def root() -> RedirectResponse:
        return RedirectResponse(url="/client/")

    @app.post("/start")
    async def start(request: Request) -> dict[str, Any]:
        return {"sessionId": str(uuid.uuid4())}

    async def on_connection(connection: SmallWebRTCConnection) -> None:
        task = asyncio.create_task(start_session(connection))
        sessions.add(task)
        task.add_done_callback(sessions.discard)

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


async def serve(host: str, port: int, start_session: SessionStarter) -> None:
    import uvicorn

    app = build_app(start_session)
    logger.info(f"open http://{host}:{port} in a browser and allow the microphone")
    server = uvicorn.Server(uvicorn.Config(app, host=host, port=port, log_level="warning"))
    await server.serve()
