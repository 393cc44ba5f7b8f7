"""Progress of long commands: a tqdm bar on a terminal, periodic plain lines (rate, ETA) otherwise."""

from __future__ import annotations

import io
import logging
import threading

import pytest
from spr.shared.progress import Progress, format_duration


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def _lines(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.name == "spr.shared.progress"]


def test_format_duration() -> None:
    assert [format_duration(s) for s in (0, 12.4, 185, 3720, 7199)] == [
        "0s",
        "12s",
        "3m05s",
        "1h02m",
        "1h59m",
    ]


def test_plain_lines_every_interval_with_rate_and_eta(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="spr.shared.progress")
    clock = FakeClock()
    progress = Progress("generator", total=40, unit="task", interval_s=10, stream=io.StringIO(), clock=clock)
    assert not progress.tty
    assert _lines(caplog) == ["generator: 0/40 tasks (0%), elapsed 0s, working on the first task"]
    clock.now += 4
    progress.update(2)  # 4 s after the last line: no new line yet
    assert len(_lines(caplog)) == 1
    clock.now += 6
    progress.update(3)  # 10 s: 5 tasks at 0.5 tasks/s, 35 left -> 70 s
    assert _lines(caplog)[-1] == "generator: 5/40 tasks (12%), 0.50 tasks/s, elapsed 10s, ETA 1m10s"
    clock.now += 30
    progress.close()
    assert _lines(caplog)[-1] == "generator: 5/40 tasks (12%), 0.12 tasks/s, elapsed 40s, ETA 4m40s"
    progress.close()  # closing twice logs nothing more
    assert len(_lines(caplog)) == 3


def test_slow_items_show_seconds_per_item_and_a_heartbeat_while_nothing_finishes(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, logger="spr.shared.progress")
    clock = FakeClock()
    progress = Progress("scorer", total=3, unit="group", interval_s=5, stream=io.StringIO(), clock=clock)
    clock.now += 5
    progress.beat()  # what the heartbeat thread does: the first group is still running
    assert _lines(caplog)[-1] == "scorer: 0/3 groups (0%), elapsed 5s, working on the first group"
    clock.now += 20
    progress.update()
    assert _lines(caplog)[-1] == "scorer: 1/3 groups (33%), 25.0 s/group, elapsed 25s, ETA 50s"


def test_queue_mode_total_follows_the_backlog_and_an_idle_worker_stays_quiet(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, logger="spr.shared.progress")
    clock = FakeClock()
    backlog = [6]
    progress = Progress(
        "generator",
        unit="task",
        interval_s=10,
        remaining=lambda: backlog[0],
        stream=io.StringIO(),
        clock=clock,
    )
    assert progress.total == 6
    clock.now += 10
    backlog[0] = 5  # one more task was published meanwhile
    progress.update(2)  # read by the heartbeat, not here: a finished item is still pending
    assert progress.total == 6 and _lines(caplog)[-1].startswith("generator: 2/6 tasks (33%), 0.20 tasks/s")
    clock.now += 10
    progress.beat()
    assert _lines(caplog)[-1].startswith("generator: 2/7 tasks (29%)")
    clock.now += 10
    backlog[0] = 0
    progress.update(5)
    assert progress.total == 7
    clock.now += 10
    progress.beat()
    assert _lines(caplog)[-1].endswith("waiting for work")
    count = len(_lines(caplog))
    for _ in range(3):
        clock.now += 10
        progress.beat()
    assert len(_lines(caplog)) == count  # idle and unchanged: no line every interval forever
    backlog[0] = 5
    clock.now += 10
    progress.beat()  # new work arrived: reported again
    assert _lines(caplog)[-1].startswith("generator: 7/12 tasks")
    backlog[0] = 0
    progress.update(5)
    progress.close()  # the backlog is read once more at the end
    assert _lines(caplog)[-1].startswith("generator: 12/12 tasks (100%)")


def test_a_failing_backlog_read_does_not_stop_the_work(caplog: pytest.LogCaptureFixture) -> None:
    def broken() -> int:
        raise ConnectionError("redis went away")

    progress = Progress("scorer", unit="group", remaining=broken, stream=io.StringIO(), clock=FakeClock())
    progress.update()
    assert progress.done == 1 and progress.total is None
    assert progress.line().startswith("scorer: 1 groups")
    progress.close()


def test_terminal_gets_a_tqdm_bar_with_rate(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="spr.shared.progress")
    terminal = Terminal()
    with Progress("generator", total=4, unit="task", stream=terminal) as progress:
        assert progress.tty
        progress.update(4)
    drawn = terminal.getvalue()
    assert "generator" in drawn and "4/4" in drawn and "task/s" in drawn
    assert _lines(caplog) == []  # the bar replaces the plain lines


def test_heartbeat_thread_reports_while_the_caller_is_busy(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="spr.shared.progress")
    seen = threading.Event()

    class Spy(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            if "working on the first" in record.getMessage():
                seen.set()

    spy = Spy()
    logging.getLogger("spr.shared.progress").addHandler(spy)
    try:
        with Progress(
            "generator", total=2, unit="task", interval_s=0.05, stream=io.StringIO()
        ).start_heartbeat():
            # the opening line says it too; wait for a second one from the heartbeat thread
            seen.clear()
            assert seen.wait(timeout=10), "the heartbeat logged nothing while no task finished"
    finally:
        logging.getLogger("spr.shared.progress").removeHandler(spy)


def test_interval_must_be_positive() -> None:
    with pytest.raises(ValueError, match="interval_s must be > 0"):
        Progress("x", interval_s=0, stream=io.StringIO())
