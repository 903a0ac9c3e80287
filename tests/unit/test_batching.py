"""The micro-batcher: concurrent requests share forward passes, each caller gets its own rows."""

from __future__ import annotations

import asyncio
import threading

import numpy as np
import pytest

from serving.batching import MicroBatcher


def _double(sizes: list[int]) -> object:
    lock = threading.Lock()

    def run(x: np.ndarray) -> list[np.ndarray]:
        with lock:
            sizes.append(len(x))
        return [x * 2.0, x.sum(axis=tuple(range(1, x.ndim)))]

    return run


def test_concurrent_requests_are_batched_and_answered_with_their_own_rows() -> None:
    sizes: list[int] = []
    seen: list[int] = []
    batcher = MicroBatcher(
        _double(sizes),
        max_batch_size=8,
        max_wait_ms=20,
        on_batch=seen.append,  # type: ignore[arg-type]
    )

    async def main() -> list[list[np.ndarray]]:
        rng = np.random.default_rng(0)
        inputs = [rng.normal(size=(1, 3, 2)) for _ in range(40)]
        outs = await asyncio.gather(*(batcher.submit(x) for x in inputs))
        await batcher.close()
        for x, (doubled, summed) in zip(inputs, outs, strict=True):
            np.testing.assert_array_equal(doubled, x * 2.0)
            np.testing.assert_array_equal(summed, x.sum(axis=(1, 2)))
        return outs

    asyncio.run(main())
    assert sum(sizes) == 40
    assert max(sizes) <= 8 and len(sizes) < 40  # shared passes, never above the maximum
    assert seen == sizes


def test_a_lone_request_waits_at_most_max_wait_and_errors_reach_every_caller() -> None:
    sizes: list[int] = []
    batcher = MicroBatcher(_double(sizes), max_batch_size=64, max_wait_ms=0)  # type: ignore[arg-type]

    async def one() -> None:
        out = await batcher.submit(np.ones((2, 4)))
        assert out[0].shape == (2, 4)
        await batcher.close()

    asyncio.run(one())
    assert sizes == [2]

    def broken(x: np.ndarray) -> list[np.ndarray]:
        raise RuntimeError("network failed")

    failing = MicroBatcher(broken, max_batch_size=4, max_wait_ms=10)

    async def many() -> None:
        calls = (failing.submit(np.ones((1, 2))) for _ in range(3))
        results = await asyncio.gather(*calls, return_exceptions=True)
        assert all(isinstance(r, RuntimeError) and "network failed" in str(r) for r in results)
        await failing.close()

    asyncio.run(many())


def test_bad_settings_are_refused() -> None:
    with pytest.raises(ValueError, match="max_batch_size"):
        MicroBatcher(lambda x: [x], max_batch_size=0)
    with pytest.raises(ValueError, match="max_wait_ms"):
        MicroBatcher(lambda x: [x], max_wait_ms=-1)
