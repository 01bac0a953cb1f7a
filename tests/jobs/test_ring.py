"""The ring job on three namespaced hosts: the launcher, with exactly what the job renders,
starts a real SmolLM2 ring (llama.cpp RPC here; prima.cpp where PRIMACPP_DIR is set), the
app's LLM client streams an answer from rank 0, and the watchdog heals a killed rank."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import subprocess
import time
import urllib.error
from pathlib import Path

import pytest
from pipecat.frames.frames import LLMContextFrame, LLMTextFrame, MetricsFrame
from pipecat.metrics.metrics import LLMUsageMetricsData
from pipecat.pipeline.worker import PipelineParams
from pipecat.processors.aggregators.llm_context import LLMContext
from pipecat.tests.utils import run_test

from pipecatapp.services.llm_openai import LocalOpenAILLMService

from .netns import inside
from .ring_harness import WORLD, RingRun, ring

pytestmark = pytest.mark.slow
RECOVERY_LIMIT_S = 90.0


def _settings(run: RingRun, rank: int) -> dict[str, str]:
    text = (run.client.by_group(f"rank-{rank}").task_dir / "local" / "ring.env").read_text()
    return dict(line.split("=", 1) for line in text.splitlines() if "=" in line)


async def _stream_with_app_client(base_url: str, api_key: str) -> tuple[list[str], int]:
    llm = LocalOpenAILLMService(base_url=base_url, api_key=api_key, max_tokens=40,
                                temperature=0.0, system_prompt="Answer in one sentence.",
                                first_token_timeout=60.0)
    ctx = LLMContextFrame(LLMContext(messages=[
        {"role": "user", "content": "What is the capital of France?"}]))
    down, _ = await run_test(
        llm, frames_to_send=[ctx],
        pipeline_params=PipelineParams(enable_metrics=True, enable_usage_metrics=True))
    pieces = [f.text for f in down if isinstance(f, LLMTextFrame)]
    usage = [d.value.completion_tokens for f in down if isinstance(f, MetricsFrame)
             for d in f.data if isinstance(d, LLMUsageMetricsData)]
    return pieces, (usage[-1] if usage else 0)


async def _decode_rate(base_url: str, api_key: str) -> tuple[float, float, int]:
    """(time to first token, tokens/s after it, tokens) of one streamed chat completion."""
    from openai import AsyncOpenAI

    client = AsyncOpenAI(base_url=base_url, api_key=api_key, max_retries=0, timeout=60)
    start = time.monotonic()
    first = last = 0.0
    chunks = 0
    stream = await client.chat.completions.create(
        model="ring", stream=True, max_tokens=64, temperature=0.0,
        messages=[{"role": "user", "content": "Tell me about the sea."}])
    async for chunk in stream:
        if chunk.choices and chunk.choices[0].delta.content:
            chunks += 1
            last = time.monotonic()
            first = first or last
    await client.close()
    rate = (chunks - 1) / (last - first) if chunks > 1 and last > first else 0.0
    return first - start, rate, chunks


def _listening(run: RingRun, rank: int) -> str:
    return subprocess.run(["ip", "netns", "exec", run.net.nodes[rank], "ss", "-ltnH"],
                          capture_output=True, text=True, timeout=10, check=True).stdout



def _answering_and_watched(run) -> Path:
    """Wait until the ring answers and the watchdog has seen it healthy (and restarted
    nothing); return the watchdog's log."""
    try:
        run.wait_answering(240)
    except TimeoutError:
        pytest.fail(f"ring never answered\n{run.logs()}")
    watchdog_log = run.client.by_group("watchdog").log_path
    deadline = time.monotonic() + 60
    while "ring answers" not in watchdog_log.read_text(errors="replace"):
        assert time.monotonic() < deadline, f"watchdog never saw the ring\n{run.logs()}"
        time.sleep(0.5)
    assert run.fake.restarts == [], "the watchdog restarted a healthy ring"
    return watchdog_log


def test_ring_streams_an_answer(engine: tuple[str, Path], smollm2: Path, tmp_path: Path):
    name, bin_dir = engine
    with ring(name, smollm2, bin_dir, tmp_path) as run:
        try:
            ready_s = run.wait_answering(240)
        except TimeoutError:
            pytest.fail(f"ring never answered\n{run.logs()}")
        start_s = time.monotonic() - run.started

        # Discovery wired master and next from the ranks' service registrations.
        for rank in range(WORLD):
            got = _settings(run, rank)
            assert got["PRIMACPP_RANK"] == str(rank)
            assert got["PRIMACPP_MASTER_IP"] == run.net.node_ip(0)
            assert got["PRIMACPP_NEXT_IP"] == run.net.node_ip((rank + 1) % WORLD)
            assert got["PRIMACPP_BIND_IP"] == run.net.node_ip(rank)
            assert got["PRIMACPP_LAYER_WINDOW"] == "10,10,10"

        base = f"{run.api_base}/v1"
        with inside(run.net.hub):  # the app's client on the "client node" (main thread)
            pieces, tokens = asyncio.run(
                asyncio.wait_for(_stream_with_app_client(base, run.api_key), 180))
        answer = "".join(pieces)
        assert len(pieces) >= 2, f"not streamed: {pieces!r}"
        assert answer.strip(), "empty answer"
        assert 0 < tokens <= 40
        ttft, rate, chunks = run.in_hub(
            lambda: asyncio.run(_decode_rate(base, run.api_key)), timeout=180)
        assert chunks > 1

        # The API needs the key from Nomad Variables.
        run.api_key, real_key = "wrong-key", run.api_key
        with pytest.raises(urllib.error.HTTPError) as refused:
            run.complete()
        assert refused.value.code == 401
        run.api_key = real_key

        listening = [_listening(run, r) for r in range(WORLD)]
        assert f"{run.net.node_ip(0)}:8080" in listening[0]
        if name == "rpc":  # no authentication upstream: bound to the cluster address only
            for rank in (1, 2):
                assert f"{run.net.node_ip(rank)}:50052" in listening[rank]
                assert "0.0.0.0:50052" not in listening[rank]
                assert "*:50052" not in listening[rank]

        print(f"\n[{name}] ring start {start_s:.1f}s (first answer {ready_s:.1f}s after "
              f"polling began); app client streamed {len(pieces)} pieces / {tokens} tokens: "
              f"{answer!r}; decode {rate:.1f} tokens/s over {chunks} tokens, "
              f"first token {ttft:.2f}s")


@pytest.mark.parametrize(("interval", "kill"), [
    pytest.param(2, (1, 2, 0), id="each-rank"),
    # Slower checks: Nomad's restart policy (5 s) brings the dead rank back first, so every
    # task runs again and only the lone restart tells the watchdog that the ring is broken.
    pytest.param(6, (1,), id="lone-restart"),
])
def test_watchdog_restarts_the_whole_ring_when_any_rank_dies(
    engine: tuple[str, Path], smollm2: Path, tmp_path: Path, interval: int,
    kill: tuple[int, ...]
):
    name, bin_dir = engine
    with ring(name, smollm2, bin_dir, tmp_path, watchdog=True, subnet="10.231.78",
              watchdog_interval=interval, probe_timeout=10, load_grace=60) as run:
        watchdog_log = _answering_and_watched(run)

        rank_allocs = {a.id for a in run.client.allocs.values() if a.name.startswith("rank-")}
        figures = []
        for rank in kill:
            before = len(run.fake.restarts)
            answers_before = watchdog_log.read_text().count("ring answers")
            pid = run.client.engine_pid(f"rank-{rank}")
            killed = time.monotonic()
            os.kill(pid, signal.SIGKILL)
            # A request sent into the broken ring ends (answer or error) within its timeout.
            sent = time.monotonic()
            with contextlib.suppress(urllib.error.URLError, TimeoutError, OSError, ValueError):
                run.complete(prompt="Hello", max_tokens=8, timeout=15)
            assert time.monotonic() - sent < 20, "a request hung past its timeout"
            try:
                run.wait_answering(RECOVERY_LIMIT_S - (time.monotonic() - killed))
            except TimeoutError:
                pytest.fail(f"rank {rank} killed: no answer within {RECOVERY_LIMIT_S}s\n"
                            f"{watchdog_log.read_text()}\n{run.logs()}")
            recovered = time.monotonic() - killed
            restarted = {alloc_id for alloc_id, _ in run.fake.restarts[before:]}
            assert restarted in (set(), rank_allocs), (
                f"rank {rank} killed: the watchdog restarted part of the ring: {restarted}")
            if name == "primacpp" or interval == 2:
                # A prima.cpp ring never takes a rank back; with quick checks the watchdog
                # acts before Nomad's restart policy, for either engine.
                assert restarted == rank_allocs, (
                    f"rank {rank} killed: the watchdog did not restart the whole ring")
            figures.append(f"rank {rank}: {recovered:.1f}s")
            assert recovered <= RECOVERY_LIMIT_S
            # Settle: the watchdog itself has seen the healed ring answer its probe.
            deadline = time.monotonic() + 30
            while watchdog_log.read_text().count("ring answers") <= answers_before:
                assert time.monotonic() < deadline, "the watchdog never saw the healed ring"
                time.sleep(0.5)

        # No flapping: a healthy ring is left alone.
        settled = len(run.fake.restarts)
        time.sleep(12)
        assert len(run.fake.restarts) == settled, "the watchdog restarted a healthy ring"
        # Least privilege: nothing outside read-job + alloc-lifecycle was needed.
        assert run.fake.refused == []
        print(f"\n[{name}, watchdog every {interval}s] recovery after kill -9 (kill to first "
              f"answer): {', '.join(figures)}")


# How long the node stays away; the scenario is a laptop asleep for 5 minutes.
AWAY_S = float(os.environ.get("PIPECATAPP_RING_AWAY_S", "300"))


@pytest.mark.timeout(AWAY_S + 900)
def test_watchdog_waits_for_a_node_that_went_away_and_heals_when_it_returns(
    engine: tuple[str, Path], smollm2: Path, tmp_path: Path
):
    """Rank 2's node goes away (the client double kills its task and marks the allocation
    lost, like Nomad when a node stops heartbeating) for AWAY_S seconds, then comes back (Nomad
    places the pinned group there again). While it is away the watchdog restarts nothing and
    its log shows no backoff; after the return the ring answers within 90 s."""
    name, bin_dir = engine
    with ring(name, smollm2, bin_dir, tmp_path, watchdog=True, subnet="10.231.79",
              watchdog_interval=5, probe_timeout=10, load_grace=60, return_grace=20) as run:
        watchdog_log = _answering_and_watched(run)

        seen = len(watchdog_log.read_text(errors="replace"))
        run.client.node_away("rank-2")
        time.sleep(AWAY_S)
        away_log = watchdog_log.read_text(errors="replace")[seen:]
        assert run.fake.restarts == [], f"restarts while the node was away\n{away_log}"
        assert "waiting for Nomad to place them again" in away_log, away_log
        assert "backoff" not in away_log, away_log
        assert "restarting all" not in away_log, away_log

        seen = len(watchdog_log.read_text(errors="replace"))
        run.client.node_back("rank-2")
        back = time.monotonic()
        try:
            run.wait_answering(RECOVERY_LIMIT_S)
        except TimeoutError:
            pytest.fail(f"no answer within {RECOVERY_LIMIT_S}s of the node's return\n"
                        f"{watchdog_log.read_text()[seen:]}\n{run.logs()}")
        healed = time.monotonic() - back
        assert healed <= RECOVERY_LIMIT_S
        assert run.fake.refused == []
        print(f"\n[{name}] node away {AWAY_S:.0f}s: no restart, no backoff; ring answers "
              f"{healed:.1f}s after the node's return (limit {RECOVERY_LIMIT_S:.0f}s); "
              f"restarts after the return: {len(run.fake.restarts)}")
