"""The bot on one page: the settings and a transport in, the whole voice pipeline out.

Read :func:`build_bot` top to bottom: speech in and out, the canned phrases, the LLM at
``cfg.llm.url``, turn taking, the pipeline in processor order, the observers. The LLM's URL is
already resolved when it gets here (``pipecatapp.cli.resolve_llm``: the flag, Nomad's registry
or the embedded llama-server). :func:`run_session` runs one conversation on that bot.
"""

from __future__ import annotations

import asyncio
import contextlib

from loguru import logger
from pipecat.audio.vad.vad_analyzer import VADParams
from pipecat.observers.user_bot_latency_observer import UserBotLatencyObserver
from pipecat.pipeline.pipeline import Pipeline
from pipecat.pipeline.worker import PipelineParams, PipelineWorker
from pipecat.processors.aggregators.llm_context import LLMContext
from pipecat.processors.aggregators.llm_response_universal import (
    LLMContextAggregatorPair,
    LLMUserAggregatorParams,
)
from pipecat.services.openai.llm import OpenAILLMService
from pipecat.transports.base_transport import BaseTransport
from pipecat.turns.user_mute import AlwaysUserMuteStrategy
from pipecat.turns.user_start import (
    TranscriptionUserTurnStartStrategy,
    VADUserTurnStartStrategy,
)
from pipecat.turns.user_stop import (
    BaseUserTurnStopStrategy,
    SpeechTimeoutUserTurnStopStrategy,
    TurnAnalyzerUserTurnStopStrategy,
)
from pipecat.turns.user_turn_strategies import UserTurnStrategies
from pipecat.workers.runner import WorkerRunner

from pipecatapp import memory
from pipecatapp.config import AppConfig
from pipecatapp.errors import redact
from pipecatapp.fault_guard import TurnFaultGuard
from pipecatapp.halfduplex import HalfDuplexGate
from pipecatapp.not_understood import NotUnderstoodUserTurnStopStrategy, SayNotUnderstoodFrame
from pipecatapp.output_hold import HoldDropper, HoldingVAD, OutputHold, hold_output
from pipecatapp.resilience import ApologyPlayer, CannedSpeechPlayer, TurnFailedFrame
from pipecatapp.services import factory
from pipecatapp.services.early_transcript import PauseListener
from pipecatapp.services.llm_openai import LocalOpenAILLMService
from pipecatapp.spoken_text import SpokenTextTap
from pipecatapp.timeline import AppClock, Timeline, TimelineObserver
from pipecatapp.transports import MakeTransport
from pipecatapp.turnstop import sentence_end_stop_strategies

IN_RATE = 16000
OUT_RATE = 24000
WARMUP_TIMEOUT_SECS = 30.0


async def build_bot(
    cfg: AppConfig,
    transport: BaseTransport,
    *,
    clock: AppClock,
    timeline: Timeline,
    context: LLMContext,
    rtvi: bool = False,
) -> PipelineWorker:
    """The whole bot for one session on ``transport``; ``timeline`` records what happens."""
    # Speech in and out; the models load here, once per session (engine choice: factory.py).
    stt = factory.build_stt(cfg)
    tts = factory.build_tts(cfg)

    # Canned speech, synthesized now so that it plays even when everything else fails: the
    # apology for a turn the LLM or TTS could not finish, and "didn't catch that" for speech
    # the STT did not understand (such a turn never reaches the LLM).
    apology_pcm, apology_rate = factory.render_apology(cfg, tts)

    def on_failure(frame: TurnFailedFrame) -> None:
        timeline.turn_failed(frame.stage, frame.reason)
        timeline.apology()

    apology = ApologyPlayer(apology_pcm, apology_rate, text=cfg.tts.apology, on_failure=on_failure)
    sorry_pcm, sorry_rate = factory.render_not_understood(cfg, tts)
    not_understood = CannedSpeechPlayer(
        SayNotUnderstoodFrame, sorry_pcm, sorry_rate, text=factory.not_understood_text(cfg),
        on_play=lambda f: timeline.not_understood_reply(f.reason, bool(sorry_pcm)),
    )

    # The LLM: any OpenAI-compatible server (llama-server, prima.cpp) at the resolved URL.
    llm = LocalOpenAILLMService(
        base_url=cfg.llm.url,
        api_key=cfg.llm.api_key.get_secret_value(),
        model=cfg.llm.model,
        max_tokens=cfg.llm.max_tokens,
        temperature=cfg.llm.temperature,
        system_prompt=cfg.llm.system_prompt,
        first_token_timeout=cfg.llm.first_token_timeout,
        max_history=cfg.llm.max_history,
        repeat_penalty=cfg.llm.repeat_penalty,
    )
    if cfg.turn.warmup:
        await warm_up(llm, cfg.llm.api_key.get_secret_value())

    # Turn taking: Silero VAD (which also tells Whisper of a pause: stt.early_secs, and holds
    # the bot's voice on a first window of user speech: vad.hold_output); a turn starts on
    # voice or a transcript (either may interrupt the bot), ends by the chosen stop strategy,
    # or at once when speech was not understood.
    hold = None
    if cfg.vad.hold_output and cfg.turn.interruptions and not cfg.turn.half_duplex:
        hold = OutputHold(on_event=timeline.write)
        hold_output(transport.output(), hold)
    vad = vad_analyzer(cfg, stt, hold)
    turns = UserTurnStrategies(
        start=[
            VADUserTurnStartStrategy(enable_interruptions=cfg.turn.interruptions),
            TranscriptionUserTurnStartStrategy(enable_interruptions=cfg.turn.interruptions),
        ],
        stop=[*stop_strategies(cfg), NotUnderstoodUserTurnStopStrategy()],
    )
    aggregators = LLMContextAggregatorPair(
        context,
        user_params=LLMUserAggregatorParams(
            vad_analyzer=vad,
            user_turn_strategies=turns,
            user_mute_strategies=[AlwaysUserMuteStrategy()] if cfg.turn.half_duplex else [],
            empty_user_turn=None,  # a turn without a transcript never runs the LLM
        ),
    )

    # The pipeline, in processor order. Half duplex (open speakers, no echo cancellation)
    # drops the microphone while the bot speaks; each reply's first piece is spoken on its
    # own (tts.first_clause_words and tts.first_piece_*; 0: the TTS cuts sentences itself).
    first_clause = factory.build_first_clause(cfg, tts)
    pipeline = Pipeline(
        [
            transport.input(),
            *([HalfDuplexGate()] if cfg.turn.half_duplex else []),
            stt,
            aggregators.user(),
            llm,
            TurnFaultGuard(tts),  # a mid-turn TTS/LLM fault -> interruption + apology
            *([first_clause] if first_clause is not None else []),
            tts,
            apology,
            not_understood,
            *([HoldDropper(hold)] if hold is not None else []),
            transport.output(),
            SpokenTextTap(timeline),  # what the output really played
            aggregators.assistant(),
        ]
    )

    # Observers: the timeline (every figure the tests and the benchmark read), and pipecat's
    # own user-to-bot latency beside it.
    latency = UserBotLatencyObserver()

    @latency.event_handler("on_latency_measured")
    async def _on_latency(_observer: UserBotLatencyObserver, secs: float) -> None:
        timeline.pipecat_latency(secs)

    return PipelineWorker(
        pipeline,
        params=PipelineParams(
            audio_in_sample_rate=IN_RATE,
            audio_out_sample_rate=OUT_RATE,
            enable_metrics=True,
            enable_usage_metrics=True,
        ),
        observers=[TimelineObserver(timeline), latency],
        clock=clock,
        idle_timeout_secs=None,
        enable_rtvi=rtvi,
    )


def vad_analyzer(cfg: AppConfig, stt: object, hold: OutputHold | None) -> HoldingVAD:
    """Silero with the ``vad`` settings; it tells ``stt`` of a pause when the STT listens
    for one, and holds the bot's voice through ``hold`` when there is one."""
    return HoldingVAD(
        hold=hold,
        pause_secs=cfg.stt.early_secs,
        listener=stt if isinstance(stt, PauseListener) else None,
        params=VADParams(
            confidence=cfg.vad.confidence,
            start_secs=cfg.vad.start_secs,
            stop_secs=cfg.vad.stop_secs,
            min_volume=cfg.vad.min_volume,
        ),
    )


def stop_strategies(cfg: AppConfig) -> list[BaseUserTurnStopStrategy]:
    """``turn.stop_strategy``: what ends the user's turn."""
    if cfg.turn.stop_strategy == "smart_turn":
        from pipecat.audio.turn.smart_turn.local_smart_turn_v3 import LocalSmartTurnAnalyzerV3

        return [TurnAnalyzerUserTurnStopStrategy(turn_analyzer=LocalSmartTurnAnalyzerV3())]
    if cfg.turn.stop_strategy == "sentence_end":
        return sentence_end_stop_strategies(
            user_speech_timeout=cfg.turn.speech_timeout,
            min_words=cfg.turn.sentence_min_words,
            speculate=cfg.turn.speculate,
        )
    return [SpeechTimeoutUserTurnStopStrategy(user_speech_timeout=cfg.turn.speech_timeout)]


async def warm_up(llm: LocalOpenAILLMService, secret: str) -> None:
    """One request with the system prompt, through the service's own client and settings,
    read up to its first token and then closed, so the first turn finds the model loaded and
    the prompt cached. A failure is only logged: the session starts, and apologizes if the
    LLM stays unreachable."""
    hello = LLMContext(messages=[{"role": "user", "content": "Hello."}])
    try:
        async with asyncio.timeout(WARMUP_TIMEOUT_SECS):
            # pipecat's own request of the service (its client, its settings), without the
            # guard LocalOpenAILLMService adds for turns: here a failure is only logged.
            stream = await OpenAILLMService.get_chat_completions(llm, hello)
            try:
                async for chunk in stream:
                    if any(c.delta and c.delta.content for c in chunk.choices):
                        break  # the prompt is evaluated and cached; the rest is not needed
            finally:
                await stream.close()
    except Exception as e:  # any failure: the session goes on without the warm-up
        logger.warning(redact(f"LLM warm-up failed ({type(e).__name__}: {e}); continuing", secret))


def _messages(context: LLMContext) -> list[dict[str, str]]:
    out = []
    for m in context.get_messages():
        if isinstance(m, dict) and isinstance(m.get("content"), str):
            out.append({"role": str(m.get("role")), "content": m["content"]})
    return out


async def run_session(
    cfg: AppConfig,
    make_transport: MakeTransport,
    *,
    rtvi: bool = False,
    handle_sigint: bool = True,
) -> Timeline:
    """Run one conversation until the transport ends it; returns its timeline."""
    clock = AppClock()
    timeline = Timeline(clock, cfg.timeline_path or None)
    context = LLMContext()
    memory.limit_arenas()  # before the engines start their threads (see pipecatapp/memory.py)
    trimmer: asyncio.Task | None = None
    try:
        transport = make_transport(clock, timeline)
        worker = await build_bot(
            cfg, transport, clock=clock, timeline=timeline, context=context, rtvi=rtvi
        )
        runner = WorkerRunner(handle_sigint=handle_sigint)
        await runner.add_workers(worker)
        timeline.write("ready")
        trimmer = asyncio.create_task(memory.trim_when_idle(timeline.idle))
        await runner.run()
    finally:
        if trimmer is not None:
            trimmer.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await trimmer
        # What the conversation holds at the end: after a barge-in, only what was spoken.
        timeline.write("context", messages=_messages(context))
        timeline.close()
    return timeline
