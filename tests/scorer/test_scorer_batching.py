"""The micro-batcher: concurrent submissions share one call; a bad item fails only its own request."""

from __future__ import annotations

import asyncio
import threading
from concurrent.futures import ThreadPoolExecutor

import pytest
from spr.scorer.batching import MicroBatcher


def test_concurrent_items_share_one_batch_on_the_model_thread() -> None:
    calls: list[list[int]] = []
    threads: set[str] = set()

    def double(items: list[int]) -> list[int]:
        calls.append(items)
        threads.add(threading.current_thread().name)
        return [2 * i for i in items]

    async def go() -> list[list[int]]:
        executor = ThreadPoolExecutor(1, thread_name_prefix="model")
        batcher = MicroBatcher("double", double, executor=executor, max_size=64, max_wait_s=0.05)
        results = await asyncio.gather(*(batcher.submit([i, i + 100]) for i in range(10)))
        await batcher.aclose()
        executor.shutdown()
        return results

    results = asyncio.run(go())
    assert results == [[2 * i, 2 * (i + 100)] for i in range(10)]
    assert len(calls) == 1 and len(calls[0]) == 20
    assert threads and all(name.startswith("model") for name in threads)


def test_batches_never_exceed_max_size() -> None:
    sizes: list[int] = []

    def identity(items: list[int]) -> list[int]:
        sizes.append(len(items))
        return items

    async def go() -> None:
        executor = ThreadPoolExecutor(1)
        batcher = MicroBatcher("id", identity, executor=executor, max_size=4, max_wait_s=0.05)
        assert await asyncio.gather(*(batcher.submit([i]) for i in range(10))) == [[i] for i in range(10)]
        await batcher.aclose()
        executor.shutdown()

    asyncio.run(go())
    assert sum(sizes) == 10 and max(sizes) <= 4


def test_a_failing_item_fails_only_its_request() -> None:
    def picky(items: list[int]) -> list[int]:
        if -1 in items:
            raise ValueError("negative")
        return items

    async def go() -> list[list[int] | BaseException]:
        executor = ThreadPoolExecutor(1)
        batcher = MicroBatcher("picky", picky, executor=executor, max_size=8, max_wait_s=0.05)
        results = await asyncio.gather(*(batcher.submit([i]) for i in (1, -1, 2)), return_exceptions=True)
        await batcher.aclose()
        executor.shutdown()
        return results

    ok1, bad, ok2 = asyncio.run(go())
    assert ok1 == [1] and ok2 == [2]
    assert isinstance(bad, ValueError)


def test_closed_batcher_refuses_work() -> None:
    async def go() -> None:
        executor = ThreadPoolExecutor(1)
        batcher: MicroBatcher[int, int] = MicroBatcher(
            "x", list, executor=executor, max_size=2, max_wait_s=0.0
        )
        await batcher.aclose()
        with pytest.raises(RuntimeError, match="closed"):
            await batcher.submit([1])
        executor.shutdown()

    asyncio.run(go())
