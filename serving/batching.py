"""Adaptive micro-batching: concurrent requests share one forward pass.

A :class:`MicroBatcher` sits in front of a function that maps a stack of inputs (first axis: the
items) to a stack of outputs. Requests arriving within ``max_wait_ms`` of the first waiting one,
up to ``max_batch_size`` items, are stacked, run in one call on a worker thread, and each caller
gets its own rows back. With one request in flight the batcher adds at most ``max_wait_ms`` (and
nothing when the queue already holds a full batch). These are the settings MLServer
(``max_batch_size``, ``max_batch_time``) and BentoML (``max_batch_size``, ``max_latency_ms``)
users know.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

import numpy as np

BatchFunction = Callable[[np.ndarray], Sequence[np.ndarray]]
"""Maps inputs of shape ``(n, ...)`` to outputs each of shape ``(n, ...)``."""


@dataclass
class _Pending:
    items: np.ndarray
    future: asyncio.Future[list[np.ndarray]]


@dataclass
class BatchStats:
    """What the batcher did: calls and the size of each batch (for ``/metrics``)."""

    calls: int = 0
    items: int = 0
    sizes: list[int] = field(default_factory=list)


class MicroBatcher:
    """Stacks concurrent :meth:`submit` calls into batches for ``function``.

    Args:
        function: the batched computation (run on a worker thread, one batch at a time).
        max_batch_size: most items per call (>= 1).
        max_wait_ms: longest a request waits for others to join its batch (>= 0).
        on_batch: called with the size of every batch run (metrics hook).

    Raises:
        ValueError: a bad size or wait.
    """

    def __init__(
        self,
        function: BatchFunction,
        *,
        max_batch_size: int = 32,
        max_wait_ms: float = 2.0,
        on_batch: Callable[[int], None] | None = None,
    ) -> None:
        if max_batch_size < 1:
            raise ValueError(f"max_batch_size must be >= 1, got {max_batch_size}")
        if max_wait_ms < 0:
            raise ValueError(f"max_wait_ms must be >= 0, got {max_wait_ms}")
        self._function = function
        self._max_batch_size = int(max_batch_size)
        self._max_wait = float(max_wait_ms) / 1000.0
        self._on_batch = on_batch
        self._queue: asyncio.Queue[_Pending] | None = None
        self._worker: asyncio.Task[None] | None = None
        # its own thread: a forward pass never queues behind other work of the default pool
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="fks-batch")

    async def submit(self, items: np.ndarray) -> list[np.ndarray]:
        """Run ``function`` on ``items`` (first axis: items), batched with concurrent calls.

        Returns:
            The outputs for these items only, in order.

        Raises:
            Whatever ``function`` raised for the batch these items were in.
        """
        if self._queue is None or self._worker is None or self._worker.done():
            self._queue = asyncio.Queue()
            self._worker = asyncio.get_running_loop().create_task(self._run(self._queue))
        future: asyncio.Future[list[np.ndarray]] = asyncio.get_running_loop().create_future()
        await self._queue.put(_Pending(np.asarray(items), future))
        return await future

    async def close(self) -> None:
        """Stop the worker (pending requests fail with ``CancelledError``)."""
        if self._worker is not None:
            self._worker.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._worker
        self._worker = None
        self._queue = None
        self._executor.shutdown(wait=False)

    async def _collect(
        self, queue: asyncio.Queue[_Pending], held: _Pending | None
    ) -> tuple[list[_Pending], _Pending | None]:
        """One batch: ``held`` (left over from the last batch) or the next request, then whatever
        joins within ``max_wait_ms`` up to ``max_batch_size`` items; returns it and any request
        that did not fit (it starts the next batch)."""
        first = held if held is not None else await queue.get()
        batch = [first]
        size = len(first.items)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self._max_wait
        while size < self._max_batch_size:
            timeout = deadline - loop.time()
            try:
                if timeout > 0:
                    nxt = await asyncio.wait_for(queue.get(), timeout)
                else:
                    nxt = queue.get_nowait()
            except (TimeoutError, asyncio.QueueEmpty):
                break
            if size + len(nxt.items) > self._max_batch_size:
                return batch, nxt
            batch.append(nxt)
            size += len(nxt.items)
        return batch, None

    async def _run(self, queue: asyncio.Queue[_Pending]) -> None:
        held: _Pending | None = None
        while True:
            batch, held = await self._collect(queue, held)
            await self._run_batch(batch)

    async def _run_batch(self, batch: list[_Pending]) -> None:
        live = [p for p in batch if not p.future.done()]
        if not live:
            return
        stacked = np.concatenate([p.items for p in live], axis=0)
        try:
            loop = asyncio.get_running_loop()
            outputs = await loop.run_in_executor(self._executor, self._function, stacked)
        except Exception as exc:  # every caller of this batch gets the error
            for p in live:
                if not p.future.done():
                    p.future.set_exception(exc)
            return
        if self._on_batch is not None:
            self._on_batch(len(stacked))
        start = 0
        for p in live:
            stop = start + len(p.items)
            if not p.future.done():
                p.future.set_result([np.asarray(o)[start:stop] for o in outputs])
            start = stop
