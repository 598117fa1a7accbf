"""Dynamic batching of concurrent requests into one forward pass.

Requests put their waveforms on a queue. One worker task takes the first job,
adds whatever else is already queued (up to ``max_batch_waveforms``), waits up to
``max_wait_s`` for more only when other requests were already queued, runs one
forward pass on a dedicated thread, and hands each request its rows back. A lone
request on an idle service therefore runs at once.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import numpy as np
import torch

from app.artifact import LoadedModel

logger = logging.getLogger(__name__)


class OverloadedError(RuntimeError):
    """The queue holds too many waveforms to accept more now."""


class InferenceTimeoutError(RuntimeError):
    """Inference did not finish within the per-request time limit."""


@dataclass(frozen=True)
class Predictions:
    """Outputs for N waveforms, in input order."""

    probabilities: np.ndarray  # (N, C) float64, rows sum to 1
    ood_scores: np.ndarray  # (N,) float64
    out_of_distribution: np.ndarray  # (N,) bool

    @property
    def labels(self) -> np.ndarray:
        """Class indices (N,) of the most probable class."""
        return self.probabilities.argmax(axis=1)


@dataclass
class _Job:
    waveforms: np.ndarray  # (n, T) float32
    future: asyncio.Future[Predictions]
    enqueued_at: float


@dataclass(frozen=True)
class BatchStats:
    """What one forward pass did, for metrics."""

    waveforms: int
    requests: int
    queue_wait_s: list[float]
    inference_s: float


class InferenceEngine:
    """Runs the model for concurrent requests, coalescing them into batches."""

    def __init__(
        self,
        model: LoadedModel,
        max_batch_waveforms: int,
        max_wait_s: float,
        max_queued_waveforms: int,
        timeout_s: float,
    ) -> None:
        self.model = model
        self.max_batch_waveforms = max_batch_waveforms
        self.max_wait_s = max_wait_s
        self.max_queued_waveforms = max_queued_waveforms
        self.timeout_s = timeout_s
        self.queued_waveforms = 0
        self.on_batch: list[Callable[[BatchStats], None]] = []
        self._queue: deque[_Job] = deque()
        self._wakeup = asyncio.Event()
        self._executor = ThreadPoolExecutor(
            max_workers=1, thread_name_prefix="inference"
        )
        self._worker: asyncio.Task[None] | None = None

    def run_sync(self, waveforms: np.ndarray) -> Predictions:
        """Classify (N, T) float32 waveforms on the calling thread."""
        inputs = torch.from_numpy(waveforms).to(self.model.device)
        with torch.inference_mode():
            probabilities, scores = self.model.module.classify(inputs)
        probabilities_64 = probabilities.cpu().numpy().astype(np.float64)
        probabilities_64 /= probabilities_64.sum(axis=1, keepdims=True)
        scores_64 = scores.cpu().numpy().astype(np.float64)
        return Predictions(
            probabilities_64, scores_64, scores_64 > self.model.ood_threshold
        )

    async def start(self) -> None:
        """Start the worker task."""
        self._worker = asyncio.create_task(self._run(), name="inference-batcher")

    async def stop(self) -> None:
        """Finish queued work, then stop the worker and its thread."""
        while self._queue:
            await asyncio.sleep(0.005)
        if self._worker is not None:
            self._worker.cancel()
            try:
                await self._worker
            except asyncio.CancelledError:
                pass
        self._executor.shutdown(wait=True)

    async def classify(self, waveforms: np.ndarray) -> Predictions:
        """Queue (N, T) float32 waveforms and wait for their predictions.

        Raises:
            OverloadedError: accepting them would exceed the queue bound.
            InferenceTimeoutError: they were not classified within the time limit.
        """
        count = len(waveforms)
        if self.queued_waveforms + count > self.max_queued_waveforms:
            raise OverloadedError(
                f"{self.queued_waveforms} waveforms are queued; the limit is "
                f"{self.max_queued_waveforms}"
            )
        future: asyncio.Future[Predictions] = asyncio.get_running_loop().create_future()
        self._queue.append(_Job(waveforms, future, time.perf_counter()))
        self.queued_waveforms += count
        self._wakeup.set()
        try:
            return await asyncio.wait_for(future, self.timeout_s)
        except TimeoutError as exc:
            raise InferenceTimeoutError(
                f"inference of {count} waveforms did not finish within "
                f"{self.timeout_s} s"
            ) from exc

    def _take_batch(self) -> list[_Job]:
        jobs = [self._queue.popleft()]
        total = len(jobs[0].waveforms)
        while (
            self._queue
            and total + len(self._queue[0].waveforms) <= self.max_batch_waveforms
        ):
            job = self._queue.popleft()
            jobs.append(job)
            total += len(job.waveforms)
        return jobs

    async def _wait_for_more(self, jobs: list[_Job]) -> None:
        # Only wait when others were queued behind the first job: that is
        # concurrent traffic, and a moment's wait fills the batch further.
        deadline = time.perf_counter() + self.max_wait_s
        total = sum(len(job.waveforms) for job in jobs)
        while total < self.max_batch_waveforms:
            remaining = deadline - time.perf_counter()
            if remaining <= 0:
                break
            if not self._queue:
                self._wakeup.clear()
                try:
                    await asyncio.wait_for(self._wakeup.wait(), remaining)
                except TimeoutError:
                    break
            if (
                self._queue
                and total + len(self._queue[0].waveforms) <= self.max_batch_waveforms
            ):
                job = self._queue.popleft()
                jobs.append(job)
                total += len(job.waveforms)
            elif self._queue:
                break

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            if not self._queue:
                self._wakeup.clear()
                await self._wakeup.wait()
                continue

            jobs = self._take_batch()
            if len(jobs) > 1 and self.max_wait_s > 0:
                await self._wait_for_more(jobs)
            self.queued_waveforms -= sum(len(job.waveforms) for job in jobs)
            # Requests that timed out while queued are dropped unrun.
            jobs = [job for job in jobs if not job.future.done()]
            count = sum(len(job.waveforms) for job in jobs)
            if not jobs:
                continue

            started = time.perf_counter()
            waits = [started - job.enqueued_at for job in jobs]
            try:
                inputs = np.concatenate([job.waveforms for job in jobs])
                predictions = await loop.run_in_executor(
                    self._executor, self.run_sync, inputs
                )
            except Exception as exc:  # noqa: BLE001 - handed to every waiting request
                logger.exception("inference failed waveforms=%d", count)
                for job in jobs:
                    if not job.future.done():
                        job.future.set_exception(exc)
                continue

            self._deliver(jobs, predictions)
            stats = BatchStats(count, len(jobs), waits, time.perf_counter() - started)
            for callback in self.on_batch:
                callback(stats)

    @staticmethod
    def _deliver(jobs: list[_Job], predictions: Predictions) -> None:
        start = 0
        for job in jobs:
            end = start + len(job.waveforms)
            if not job.future.done():
                job.future.set_result(
                    Predictions(
                        predictions.probabilities[start:end],
                        predictions.ood_scores[start:end],
                        predictions.out_of_distribution[start:end],
                    )
                )
            start = end
