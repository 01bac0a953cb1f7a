"""The voice pipeline, in processor order, and the worker that runs it.

transport in -> (half-duplex gate) -> STT -> user aggregator (VAD, turn strategies,
interruptions, half-duplex mute) -> LLM -> fault guard -> (first-clause text processor) ->
TTS -> apology player -> not-understood player -> transport out -> spoken-text tap ->
assistant aggregator
"""

from __future__ import annotations

from pipecat.audio.vad.silero import SileroVADAnalyzer
from pipecat.audio.vad.vad_analyzer import VADParams
from pipecat.observers.user_bot_latency_observer import UserBotLatencyObserver
from pipecat.pipeline.pipeline import Pipeline
from pipecat.pipeline.worker import PipelineParams, PipelineWorker
from pipecat.processors.aggregators.llm_context import LLMContext
from pipecat.processors.aggregators.llm_response_universal import (
    LLMContextAggregatorPair,
    LLMUserAggregatorParams,
)
from pipecat.processors.frame_processor import FrameProcessor
from pipecat.services.llm_service import LLMService
from pipecat.services.stt_service import STTService
from pipecat.services.tts_service import TTSService
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

from pipecatapp.config import AppConfig
from pipecatapp.fault_guard import TurnFaultGuard
from pipecatapp.halfduplex import HalfDuplexGate
from pipecatapp.not_understood import NotUnderstoodUserTurnStopStrategy
from pipecatapp.services.first_clause import first_clause_processor
from pipecatapp.spoken_text import SpokenTextTap
from pipecatapp.timeline import AppClock, Timeline, TimelineObserver
from pipecatapp.turnstop import sentence_end_stop_strategies

IN_RATE = 16000
OUT_RATE = 24000


def user_params(cfg: AppConfig) -> LLMUserAggregatorParams:
    """VAD, turn start/stop strategies and half-duplex mute, from the configuration."""
    vad = SileroVADAnalyzer(
        params=VADParams(
            confidence=cfg.vad.confidence,
            start_secs=cfg.vad.start_secs,
            stop_secs=cfg.vad.stop_secs,
            min_volume=cfg.vad.min_volume,
        )
    )
    stop: list[BaseUserTurnStopStrategy]
    if cfg.turn.stop_strategy == "smart_turn":
        from pipecat.audio.turn.smart_turn.local_smart_turn_v3 import LocalSmartTurnAnalyzerV3

        stop = [TurnAnalyzerUserTurnStopStrategy(turn_analyzer=LocalSmartTurnAnalyzerV3())]
    elif cfg.turn.stop_strategy == "sentence_end":
        stop = sentence_end_stop_strategies(
            user_speech_timeout=cfg.turn.speech_timeout,
            min_words=cfg.turn.sentence_min_words,
        )
    else:
        stop = [SpeechTimeoutUserTurnStopStrategy(user_speech_timeout=cfg.turn.speech_timeout)]
    # A turn the STT did not understand ends at its verdict (and never runs the LLM).
    stop.append(NotUnderstoodUserTurnStopStrategy())
    start = [
        VADUserTurnStartStrategy(enable_interruptions=cfg.turn.interruptions),
        TranscriptionUserTurnStartStrategy(enable_interruptions=cfg.turn.interruptions),
    ]
    return LLMUserAggregatorParams(
        vad_analyzer=vad,
        user_turn_strategies=UserTurnStrategies(start=start, stop=stop),
        user_mute_strategies=[AlwaysUserMuteStrategy()] if cfg.turn.half_duplex else [],
        # A turn without a transcript never runs the LLM (see pipecatapp/not_understood.py).
        empty_user_turn=None,
    )


def build_worker(
    cfg: AppConfig,
    *,
    transport: BaseTransport,
    stt: STTService,
    llm: LLMService,
    tts: TTSService,
    apology: FrameProcessor,
    clock: AppClock,
    timeline: Timeline,
    context: LLMContext | None = None,
    rtvi: bool = False,
    not_understood: FrameProcessor | None = None,
) -> PipelineWorker:
    context = context if context is not None else LLMContext()
    aggregators = LLMContextAggregatorPair(context, user_params=user_params(cfg))
    gate = [HalfDuplexGate()] if cfg.turn.half_duplex else []
    first_clause = first_clause_processor(tts, cfg.tts.first_clause_words)
    pipeline = Pipeline(
        [
            transport.input(),
            *gate,
            stt,
            aggregators.user(),
            llm,
            TurnFaultGuard(tts),
            *([first_clause] if first_clause is not None else []),
            tts,
            apology,
            *([not_understood] if not_understood is not None else []),
            transport.output(),
            SpokenTextTap(timeline),
            aggregators.assistant(),
        ]
    )
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
