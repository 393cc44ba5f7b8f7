"""The scorer's CPU pool: jobs off the event loop, one hand-off per loop turn, errors to their own caller."""

from __future__ import annotations

import asyncio
import threading

import pytest
from spr.scorer.cpu_pool import CpuPool


async def _until(event: threading.Event) -> None:
    """Polls ``event`` without blocking the loop; fails after 10 s."""
    deadline = asyncio.get_running_loop().time() + 10
    while not event.is_set():
        assert asyncio.get_running_loop().time() < deadline, "the job did not start"
        await asyncio.sleep(0.001)


class Blocker:
    """A job that says when it started and runs until released."""

    def __init__(self) -> None:
        self.started, self.release = threading.Event(), threading.Event()

    def __call__(self) -> str:
        self.started.set()
        self.release.wait(timeout=10)
        return "finished"


def _thread() -> tuple[str, int]:
    current = threading.current_thread()
    return current.name, threading.get_ident()


def test_jobs_of_one_turn_share_a_hand_off_and_run_off_the_loop() -> None:
    async def main() -> None:
        pool = CpuPool(2, max_jobs_per_handoff=4)
        try:
            seen = await asyncio.gather(*(pool.run(_thread) for _ in range(8)))
            loop_thread = threading.get_ident()
            assert all(name.startswith("spr-cpu") and ident != loop_thread for name, ident in seen)
            # Two hand-offs of four: each hand-off's jobs ran on one thread, in order.
            assert len({ident for _, ident in seen[:4]}) == 1 and len({ident for _, ident in seen[4:]}) == 1
            assert await pool.run(sum, [1, 2, 3]) == 6  # a later turn: a hand-off of its own
        finally:
            pool.shutdown()

    asyncio.run(main())


def test_a_failing_job_fails_only_its_own_caller() -> None:
    def job(i: int) -> int:
        if i == 3:
            raise ValueError("job 3 is bad")
        if i == 5:
            raise StopIteration  # a future refuses this one as it is
        return i * i

    async def main() -> None:
        pool = CpuPool(1)
        try:
            results = await asyncio.gather(*(pool.run(job, i) for i in range(8)), return_exceptions=True)
        finally:
            pool.shutdown()
        assert [r for i, r in enumerate(results) if i not in (3, 5)] == [0, 1, 4, 16, 36, 49]
        assert isinstance(results[3], ValueError) and str(results[3]) == "job 3 is bad"
        assert isinstance(results[5], RuntimeError) and "StopIteration" in str(results[5])

    asyncio.run(main())


def test_the_loop_keeps_running_while_jobs_run() -> None:
    async def main() -> None:
        pool = CpuPool(1)
        blocking = Blocker()
        try:
            job = asyncio.ensure_future(pool.run(blocking))
            await _until(blocking.started)  # the job runs on its thread while this loop goes on
            blocking.release.set()
            assert await asyncio.wait_for(job, timeout=10) == "finished"
        finally:
            pool.shutdown()

    asyncio.run(main())


def test_a_cancelled_caller_leaves_the_others_their_results() -> None:
    async def main() -> None:
        pool = CpuPool(1)
        release = threading.Event()
        try:
            blocker = asyncio.ensure_future(pool.run(release.wait, 10))
            await asyncio.sleep(0)  # the blocker's turn ends: it is handed off alone
            gone = asyncio.ensure_future(pool.run(lambda: "gone"))
            kept = asyncio.ensure_future(pool.run(lambda: "kept"))
            await asyncio.sleep(0)
            gone.cancel()
            release.set()
            assert await asyncio.wait_for(kept, timeout=10) == "kept"
            assert await blocker is True
            assert gone.cancelled()
        finally:
            pool.shutdown()

    asyncio.run(main())


def test_shutdown_fails_the_jobs_not_started_and_refuses_new_ones() -> None:
    async def main() -> None:
        pool = CpuPool(1)
        blocking = Blocker()
        running = asyncio.ensure_future(pool.run(blocking))
        await _until(blocking.started)
        queued = [asyncio.ensure_future(pool.run(lambda: "never")) for _ in range(3)]
        await asyncio.sleep(0)  # handed off behind the running job
        await asyncio.sleep(0)
        pool.shutdown()
        for job in queued:
            with pytest.raises(RuntimeError, match="closed"):
                await asyncio.wait_for(job, timeout=10)
        blocking.release.set()
        assert await asyncio.wait_for(running, timeout=10) == "finished"  # running jobs finish
        with pytest.raises(RuntimeError, match="closed"):
            await pool.run(lambda: None)

    asyncio.run(main())
