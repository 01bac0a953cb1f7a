"""The transports behind one interface, so the CLI has one path for all of them.

``runner_for(cfg)`` does the chosen transport's checks that must fail before anything loads
(the input file is read, the sound card is looked for) and returns a runner; its
``serve(run_session)`` runs sessions of the bot: one for ``file`` and ``local``, one per
browser connection for ``webrtc``. ``run_session`` is :func:`pipecatapp.bot.run_session`
with the settings bound.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    from pipecat.transports.base_transport import BaseTransport

    from pipecatapp.config import AppConfig
    from pipecatapp.timeline import AppClock, Timeline

MakeTransport = Callable[["AppClock", "Timeline"], "BaseTransport"]


class RunSession(Protocol):
    def __call__(
        self, make_transport: MakeTransport, *, rtvi: bool = False, handle_sigint: bool = True
    ) -> Awaitable[Timeline]: ...


class TransportRunner(Protocol):
    async def serve(self, run_session: RunSession) -> None: ...


def runner_for(cfg: AppConfig) -> TransportRunner:
    if cfg.transport == "file":
        from pipecatapp.transports.file import FileRunner

        return FileRunner(cfg)
    if cfg.transport == "local":
        from pipecatapp.transports.local import LocalRunner

        return LocalRunner()
    from pipecatapp.transports.webrtc import WebRTCRunner

    return WebRTCRunner(cfg.webrtc)
