"""The batching engine with a stand-in model: batching, waits, timeouts, failures."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from app.artifact import LoadedModel
from app.inference import (
    INLINE_QUIET_S,
    BatchStats,
    InferenceEngine,
    InferenceTimeoutError,
    OverloadedError,
    Predictions,
)

LENGTH = 100
CLASSES = ("sine", "square", "sawtooth")


class StandInModule:
    """``classify`` whose output rows identify their input rows.

    Class 0's probability is the waveform's first sample, so each request can
    check that it got its own rows back. ``gate`` lets a test hold a forward
    pass until it has queued more requests.
    """

    def __init__(self) -> None:
        self.gate = threading.Event()
        self.gate.set()
        self.started = threading.Event()
        self.batch_sizes: list[int] = []
        self.threads: list[int] = []
        self.error: Exception | None = None

    def classify(self, waveforms: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        self.batch_sizes.append(len(waveforms))
        self.threads.append(threading.get_ident())
        self.started.set()
        if not self.gate.wait(10):
            raise RuntimeError("the test never opened the gate")
        if self.error is not None:
            raise self.error
        first = waveforms[:, 0].clamp(0.01, 0.98)
        rest = (1 - first) / 2
        probabilities = torch.stack([first, rest, rest], dim=1)
        return probabilities, -first


def _engine(
    module: StandInModule,
    max_batch: int = 64,
    max_wait_s: float = 0.0,
    max_queued: int = 1000,
    timeout_s: float = 10.0,
    inline_max: int = 0,
    threads: int = 1,
) -> InferenceEngine:
    # Inline runs stay off unless a test enables them, because a gated
    # pass would block the loop.
    model = LoadedModel(
        module=module,  # type: ignore[arg-type]
        metadata={},
        path=Path("stand-in.pt"),
        device=torch.device("cpu"),
        class_names=CLASSES,
        input_length=LENGTH,
        ood_threshold=0.0,
        version="stand-in",
        sha256="0" * 64,
    )
    return InferenceEngine(
        model, max_batch, max_wait_s, max_queued, timeout_s, inline_max, threads
    )


def _waveforms(*firsts: float) -> np.ndarray:
    waveforms = np.zeros((len(firsts), LENGTH), dtype=np.float32)
    waveforms[:, 0] = firsts
    return waveforms


def _run(engine: InferenceEngine, scenario: Callable[[], Awaitable[Any]]) -> Any:
    async def main() -> Any:
        await engine.start()
        try:
            return await scenario()
        finally:
            await engine.stop()

    return asyncio.run(main())


async def _until(condition: Callable[[], bool], timeout_s: float = 5.0) -> None:
    deadline = time.perf_counter() + timeout_s
    while not condition():
        if time.perf_counter() > deadline:
            raise AssertionError("condition not reached in time")
        await asyncio.sleep(0.001)


def test_engine_returns_each_request_its_rows() -> None:
    module = StandInModule()
    engine = _engine(module)

    async def scenario() -> list[Predictions]:
        module.gate.clear()
        first = asyncio.create_task(engine.classify(_waveforms(0.1)))
        await _until(module.started.is_set)
        rest = [
            asyncio.create_task(engine.classify(_waveforms(*values)))
            for values in ((0.2, 0.3), (0.4,), (0.5, 0.6, 0.7))
        ]
        await _until(lambda: engine.queued_waveforms == 6)
        module.gate.set()
        return [await first, *[await task for task in rest]]

    results = _run(engine, scenario)
    firsts = [result.probabilities[:, 0].round(4).tolist() for result in results]
    assert firsts == [[0.1], [0.2, 0.3], [0.4], [0.5, 0.6, 0.7]]
    # The three requests queued behind the first ran as one forward pass.
    assert module.batch_sizes == [1, 6], module.batch_sizes
    assert all(np.allclose(r.probabilities.sum(axis=1), 1.0) for r in results)


async def _feed(
    engine: InferenceEngine, start: Callable[[], bool], count: int
) -> list[asyncio.Task[Predictions]]:
    # Once start() holds, queue one request per event loop pass.
    while not start():
        await asyncio.sleep(0)
    tasks = []
    for _ in range(count):
        tasks.append(asyncio.create_task(engine.classify(_waveforms(0.3))))
        await asyncio.sleep(0)
    return tasks


async def _hold_first_and_queue(
    engine: InferenceEngine, module: StandInModule, queued: int
) -> list[asyncio.Task[Predictions]]:
    # One request runs behind the closed gate while ``queued`` more wait.
    module.gate.clear()
    tasks = [asyncio.create_task(engine.classify(_waveforms(0.1)))]
    await _until(module.started.is_set)
    tasks += [
        asyncio.create_task(engine.classify(_waveforms(0.2))) for _ in range(queued)
    ]
    await _until(lambda: engine.queued_waveforms == queued)
    return tasks


def _gathering(engine: InferenceEngine, module: StandInModule) -> Callable[[], bool]:
    # True once the worker has taken the queued jobs into its next batch.
    return lambda: len(module.batch_sizes) == 1 and not engine._queue


def test_engine_gathers_requests_arriving_meanwhile() -> None:
    module = StandInModule()
    engine = _engine(module, max_batch=64, max_wait_s=5.0)

    async def scenario() -> float:
        tasks = await _hold_first_and_queue(engine, module, 2)
        feeder = asyncio.create_task(_feed(engine, _gathering(engine, module), 5))
        module.gate.set()
        fed = await feeder
        started = time.perf_counter()
        await asyncio.gather(*tasks, *fed)
        return time.perf_counter() - started

    elapsed = _run(engine, scenario)
    assert module.batch_sizes == [1, 7], module.batch_sizes
    # Arrivals stopped, so the batch ran long before the 5 s wait ran out.
    assert elapsed < 2.0, f"the batch waited {elapsed:.2f} s after arrivals stopped"


def test_engine_gather_stops_when_batch_full() -> None:
    module = StandInModule()
    engine = _engine(module, max_batch=4, max_wait_s=5.0)

    async def scenario() -> None:
        tasks = await _hold_first_and_queue(engine, module, 2)
        feeder = asyncio.create_task(_feed(engine, _gathering(engine, module), 4))
        module.gate.set()
        await asyncio.wait_for(asyncio.gather(*tasks, *await feeder), 5.0)

    _run(engine, scenario)
    assert module.batch_sizes[:2] == [1, 4], module.batch_sizes
    assert sum(module.batch_sizes) == 7, module.batch_sizes


def test_engine_gather_ends_at_max_wait() -> None:
    module = StandInModule()
    engine = _engine(module, max_batch=10_000, max_wait_s=0.05, max_queued=10_000)

    async def scenario() -> None:
        tasks = await _hold_first_and_queue(engine, module, 2)
        # Requests keep arriving every pass for far longer than the wait.
        feeder = asyncio.create_task(_feed(engine, _gathering(engine, module), 5000))
        module.gate.set()
        await _until(lambda: len(module.batch_sizes) >= 2, timeout_s=5.0)
        assert not feeder.done(), "the batch waited until arrivals stopped"
        await asyncio.gather(*tasks, *await feeder)

    _run(engine, scenario)


def test_engine_lone_request_skips_wait() -> None:
    module = StandInModule()
    engine = _engine(module, max_wait_s=5.0)

    async def scenario() -> float:
        started = time.perf_counter()
        await engine.classify(_waveforms(0.5))
        return time.perf_counter() - started

    elapsed = _run(engine, scenario)
    assert elapsed < 2.0, f"a lone request waited {elapsed:.2f} s for company"


@pytest.mark.parametrize(
    ("inline_max", "waveforms", "on_loop"),
    [(1, 1, True), (1, 2, False), (0, 1, False), (4, 4, True)],
)
def test_engine_inline_only_small_lone_batches(
    inline_max: int, waveforms: int, on_loop: bool
) -> None:
    module = StandInModule()
    engine = _engine(module, inline_max=inline_max)

    async def scenario() -> int:
        await engine.classify(_waveforms(*[0.5] * waveforms))
        return threading.get_ident()

    loop_thread = _run(engine, scenario)
    assert (module.threads == [loop_thread]) is on_loop, module.threads


def test_engine_timeout_drops_queued_job() -> None:
    module = StandInModule()
    engine = _engine(module, timeout_s=0.2)

    async def scenario() -> Predictions:
        module.gate.clear()
        running = asyncio.create_task(engine.classify(_waveforms(0.1)))
        await _until(module.started.is_set)
        with pytest.raises(InferenceTimeoutError, match="did not finish within 0.2 s"):
            await engine.classify(_waveforms(0.2))
        with pytest.raises(InferenceTimeoutError):
            await running
        module.gate.set()
        return await engine.classify(_waveforms(0.3))

    after = _run(engine, scenario)
    assert after.probabilities[0, 0] == pytest.approx(0.3)
    # The running pass finished; the queued job that timed out never ran.
    assert module.batch_sizes == [1, 1], module.batch_sizes


def test_engine_rejects_beyond_queue_bound() -> None:
    module = StandInModule()
    engine = _engine(module, max_queued=3)

    async def scenario() -> None:
        module.gate.clear()
        running = asyncio.create_task(engine.classify(_waveforms(0.1)))
        await _until(module.started.is_set)
        queued = asyncio.create_task(engine.classify(_waveforms(0.2, 0.3, 0.4)))
        await _until(lambda: engine.queued_waveforms == 3)
        with pytest.raises(OverloadedError, match="3 waveforms are queued"):
            await engine.classify(_waveforms(0.5))
        module.gate.set()
        await asyncio.gather(running, queued)

    _run(engine, scenario)


def test_engine_failure_reaches_batch_then_recovers() -> None:
    module = StandInModule()
    engine = _engine(module)

    async def scenario() -> Predictions:
        module.error = RuntimeError("forward pass failed")
        module.gate.clear()
        tasks = [asyncio.create_task(engine.classify(_waveforms(0.1)))]
        await _until(module.started.is_set)
        tasks.append(asyncio.create_task(engine.classify(_waveforms(0.2))))
        await _until(lambda: engine.queued_waveforms == 1)
        module.gate.set()
        outcomes = await asyncio.gather(*tasks, return_exceptions=True)
        assert all(isinstance(o, RuntimeError) for o in outcomes), outcomes
        module.error = None
        return await engine.classify(_waveforms(0.3))

    after = _run(engine, scenario)
    assert after.probabilities[0, 0] == pytest.approx(0.3)


def test_engine_skips_cancelled_request() -> None:
    module = StandInModule()
    engine = _engine(module)
    batches: list[BatchStats] = []
    engine.on_batch.append(batches.append)

    async def scenario() -> Predictions:
        module.gate.clear()
        first = asyncio.create_task(engine.classify(_waveforms(0.1)))
        await _until(module.started.is_set)
        cancelled = asyncio.create_task(engine.classify(_waveforms(0.2)))
        kept = asyncio.create_task(engine.classify(_waveforms(0.3)))
        await _until(lambda: engine.queued_waveforms == 2)
        cancelled.cancel()
        module.gate.set()
        await first
        return await kept

    kept = _run(engine, scenario)
    assert kept.probabilities[0, 0] == pytest.approx(0.3)
    assert [stats.waveforms for stats in batches] == [1, 1]
    assert [stats.requests for stats in batches] == [1, 1]


def test_engine_stats_carry_batch_predictions() -> None:
    module = StandInModule()
    engine = _engine(module)
    batches: list[BatchStats] = []
    engine.on_batch.append(batches.append)

    async def scenario() -> None:
        await engine.classify(_waveforms(0.4, 0.6))

    _run(engine, scenario)
    assert len(batches) == 1
    stats = batches[0]
    assert stats.waveforms == 2
    assert stats.requests == 1
    assert len(stats.queue_wait_s) == 1
    assert stats.predictions is not None
    assert stats.predictions.probabilities[:, 0].round(4).tolist() == [0.4, 0.6]


def test_engine_inline_yields_to_arriving_request() -> None:
    module = StandInModule()
    engine = _engine(module, inline_max=1)

    async def scenario() -> tuple[int, list[Predictions]]:
        first = asyncio.create_task(engine.classify(_waveforms(0.1)))
        await asyncio.sleep(0)
        # Another request arrives while the first checks for company, so
        # neither runs on the event loop and they share one pass on a thread.
        second = asyncio.create_task(engine.classify(_waveforms(0.3)))
        results = await asyncio.gather(first, second)
        return threading.get_ident(), results

    loop_thread, (first, second) = _run(engine, scenario)
    assert module.batch_sizes == [2], module.batch_sizes
    assert module.threads[0] != loop_thread, module.threads
    assert first.probabilities[0, 0] == pytest.approx(0.1), first.probabilities
    assert second.probabilities[0, 0] == pytest.approx(0.3), second.probabilities


def test_engine_inline_waits_for_busy_thread() -> None:
    module = StandInModule()
    engine = _engine(module, inline_max=1)

    async def scenario() -> int:
        # Two waveforms are too many to run inline, so this pass takes the
        # thread. A lone request meanwhile must not take the loop.
        module.gate.clear()
        first = asyncio.create_task(engine.classify(_waveforms(0.1, 0.2)))
        await _until(module.started.is_set)
        waiting = asyncio.create_task(engine.classify(_waveforms(0.4)))
        await _until(lambda: engine.queued_waveforms == 1)
        module.gate.set()
        await asyncio.gather(first, waiting)
        return threading.get_ident()

    loop_thread = _run(engine, scenario)
    assert module.batch_sizes == [2, 1], module.batch_sizes
    assert loop_thread not in module.threads, module.threads


def test_engine_threads_run_passes_concurrently() -> None:
    module = StandInModule()
    engine = _engine(module, threads=2)

    async def scenario() -> list[Predictions]:
        # The first pass occupies one thread, and the next batch starts on the other.
        module.gate.clear()
        first = asyncio.create_task(engine.classify(_waveforms(0.1)))
        await _until(module.started.is_set)
        second = asyncio.create_task(engine.classify(_waveforms(0.2)))
        await _until(lambda: len(module.batch_sizes) == 2)
        module.gate.set()
        return await asyncio.gather(first, second)

    first, second = _run(engine, scenario)
    assert len(set(module.threads)) == 2, module.threads
    assert first.probabilities[0, 0] == pytest.approx(0.1), first.probabilities
    assert second.probabilities[0, 0] == pytest.approx(0.2), second.probabilities


def test_engine_one_thread_runs_passes_in_turn() -> None:
    module = StandInModule()
    engine = _engine(module, threads=1)

    async def scenario() -> int:
        # With one thread the second request waits in the queue meanwhile.
        tasks = await _hold_first_and_queue(engine, module, 1)
        await asyncio.sleep(0.05)
        started = len(module.batch_sizes)
        module.gate.set()
        await asyncio.gather(*tasks)
        return started

    assert _run(engine, scenario) == 1
    assert module.batch_sizes == [1, 1], module.batch_sizes


def test_engine_default_never_inline() -> None:
    module = StandInModule()
    base = _engine(module)
    engine = InferenceEngine(base.model, 64, 0.0, 1000, 10.0)

    async def scenario() -> int:
        await engine.classify(_waveforms(0.5))
        return threading.get_ident()

    loop_thread = _run(engine, scenario)
    assert module.threads and loop_thread not in module.threads, module.threads


def test_engine_inline_waits_for_quiet_period() -> None:
    module = StandInModule()
    engine = _engine(module, inline_max=1)

    async def scenario() -> list[int]:
        # Two requests together go to the queue. A lone one right after them
        # still goes to a thread, but one after the quiet period runs inline.
        await asyncio.gather(
            engine.classify(_waveforms(0.1)), engine.classify(_waveforms(0.2))
        )
        await engine.classify(_waveforms(0.3))
        await asyncio.sleep(INLINE_QUIET_S * 2)
        await engine.classify(_waveforms(0.4))
        return [threading.get_ident()]

    (loop_thread,) = _run(engine, scenario)
    assert module.batch_sizes == [2, 1, 1], module.batch_sizes
    assert loop_thread not in module.threads[:2], module.threads
    assert module.threads[2] == loop_thread, module.threads


def test_engine_no_threads_batches_on_loop() -> None:
    module = StandInModule()
    engine = _engine(module, threads=0)

    async def scenario() -> tuple[int, list[Predictions]]:
        tasks = [
            asyncio.create_task(engine.classify(_waveforms(value)))
            for value in (0.1, 0.2, 0.3)
        ]
        return threading.get_ident(), await asyncio.gather(*tasks)

    loop_thread, results = _run(engine, scenario)
    assert module.batch_sizes == [3], module.batch_sizes
    assert module.threads == [loop_thread], module.threads
    firsts = [result.probabilities[0, 0] for result in results]
    assert firsts == pytest.approx([0.1, 0.2, 0.3]), firsts


def test_engine_large_lone_request_keeps_inline() -> None:
    module = StandInModule()
    engine = _engine(module, inline_max=1)

    async def scenario() -> int:
        # A lone request too large to run inline goes to a thread, but it met
        # no other request, so the small one right after it still runs inline.
        await engine.classify(_waveforms(0.1, 0.2))
        await engine.classify(_waveforms(0.3))
        return threading.get_ident()

    loop_thread = _run(engine, scenario)
    assert module.batch_sizes == [2, 1], module.batch_sizes
    assert module.threads[0] != loop_thread, module.threads
    assert module.threads[1] == loop_thread, module.threads
