"""The scorer's CPU pool: CPU work off the event loop, with one thread hand-off per loop turn.

Validation, parsing, IoU, refinement and image decoding must never run on the event loop (``/healthz``
answers while the scorer is saturated), so every request hands them to a worker thread and back. Each
hand-off costs CPU of its own (a concurrent future, a queue, a thread wake-up, a self-pipe write to wake
the loop, the GIL changing hands twice): about as much as validating a small body. Under load many
requests reach the pool in the same turn of the event loop; :class:`CpuPool` gives the jobs submitted
in one turn to a worker thread together (up to ``max_jobs_per_handoff`` per hand-off) and wakes the
loop once for all of their results, so the hand-off's cost is shared instead of paid per request.
"""

from __future__ import annotations

import asyncio
import functools
import logging
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any, TypeVar

logger = logging.getLogger(__name__)

T = TypeVar("T")

_Job = tuple[Callable[[], Any], "asyncio.Future[Any]"]
_Outcome = tuple[bool, Any]  # (raised, result or exception)


class CpuPool:
    """Runs synchronous CPU work on ``threads`` worker threads; use from one event loop.

    Jobs submitted in the same loop turn share one hand-off (at most ``max_jobs_per_handoff`` each, so
    that one hand-off never holds many requests' answers back; with more jobs, several hand-offs go out
    and the threads take them in parallel). A job's exception is raised to its own caller only.
    """

    def __init__(self, threads: int, *, max_jobs_per_handoff: int = 8, name: str = "spr-cpu") -> None:
        if threads < 1 or max_jobs_per_handoff < 1:
            raise ValueError("threads and max_jobs_per_handoff must be >= 1")
        self._executor = ThreadPoolExecutor(max_workers=threads, thread_name_prefix=name)
        self._max_jobs = max_jobs_per_handoff
        self._pending: list[_Job] = []
        self._handed_off: dict[Future[None], list[_Job]] = {}
        self._flush_scheduled = False
        self._closed = False

    async def run(self, fn: Callable[..., T], /, *args: Any, **kwargs: Any) -> T:
        """``fn(*args, **kwargs)`` on a worker thread; its result, or its exception raised here."""
        if self._closed:
            raise RuntimeError("the CPU pool is closed")
        loop = asyncio.get_running_loop()
        future: asyncio.Future[T] = loop.create_future()
        self._pending.append((functools.partial(fn, *args, **kwargs), future))
        if not self._flush_scheduled:
            # Runs after every callback already queued for this turn: the requests woken together
            # reach this pool before the jobs leave.
            self._flush_scheduled = True
            loop.call_soon(self._flush, loop)
        return await future

    def shutdown(self) -> None:
        """Stop taking jobs; jobs not started yet fail with RuntimeError, running ones finish.

        Call it on the event loop's thread.
        """
        self._closed = True
        pending, self._pending = self._pending, []
        handed_off = list(self._handed_off.items())  # cancelling drops them from the dict
        self._executor.shutdown(wait=False, cancel_futures=True)
        for handoff, jobs in handed_off:
            if handoff.cancelled():
                pending.extend(jobs)
        for _, future in pending:
            if not future.done():
                future.set_exception(RuntimeError("the CPU pool is closed"))

    def _flush(self, loop: asyncio.AbstractEventLoop) -> None:
        self._flush_scheduled = False
        if self._closed:
            return  # shutdown() failed the pending jobs
        pending, self._pending = self._pending, []
        for start in range(0, len(pending), self._max_jobs):
            jobs = pending[start : start + self._max_jobs]
            handoff = self._executor.submit(self._run_jobs, loop, jobs)
            self._handed_off[handoff] = jobs
            handoff.add_done_callback(self._handed_off.pop)

    def _run_jobs(self, loop: asyncio.AbstractEventLoop, jobs: list[_Job]) -> None:
        """On a worker thread: every job in order, then one wake-up of the loop with all outcomes."""
        outcomes: list[_Outcome] = []
        for call, _ in jobs:
            try:
                outcomes.append((False, call()))
            except BaseException as exc:  # delivered to the job's own caller
                outcomes.append((True, exc))
        try:
            loop.call_soon_threadsafe(_settle_all, jobs, outcomes)
        except RuntimeError:  # the loop is closed: nobody is waiting any more
            logger.debug("event loop closed before %d CPU job results were delivered", len(jobs))


def _settle_all(jobs: list[_Job], outcomes: list[_Outcome]) -> None:
    for (_, future), (raised, value) in zip(jobs, outcomes, strict=True):
        if future.done():  # the caller went away (cancelled)
            continue
        if not raised:
            future.set_result(value)
        elif isinstance(value, StopIteration):  # a future refuses it (it would end a coroutine)
            future.set_exception(RuntimeError(f"CPU job raised {value!r}"))
        else:
            future.set_exception(value)
