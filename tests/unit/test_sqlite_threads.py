"""SQLiteThreads on a real SQLite file: what a job's caller gets back, whatever the job does.

A job queued behind a busy thread is picked up alone (the lone-job path) or in a batch; either
way a job whose caller gave up, or that waited past the store's timeout, never runs.
"""
from __future__ import annotations

import asyncio
import sqlite3
import threading

import pytest

from proxy.store.base import StoreUnavailable
from proxy.store.sqlite_schema import connect
from proxy.store.sqlite_threads import SQLiteThreads


def _threads(tmp_path, timeout: float = 3.0) -> SQLiteThreads:
    path = str(tmp_path / "s.sqlite3")
    return SQLiteThreads(lambda: connect(path, timeout), timeout)


def _blocker(started: threading.Event, release: threading.Event):
    def job(conn: sqlite3.Connection) -> str:
        started.set()
        assert release.wait(10)
        return "blocker"
    return job


async def _occupy(threads: SQLiteThreads, role: str) -> tuple[asyncio.Task, threading.Event]:
    """Keep ``role``'s thread busy until the returned event is set."""
    started, release = threading.Event(), threading.Event()
    task = asyncio.ensure_future(threads.run(role, _blocker(started, release)))
    assert await asyncio.to_thread(started.wait, 10)
    return task, release


def test_results_errors_and_sqlite_faults_reach_the_caller_and_the_thread_goes_on(tmp_path):
    async def main() -> None:
        threads = _threads(tmp_path)
        try:
            assert await threads.run("write", lambda c: c.execute("SELECT 40 + 2").fetchone()[0]) == 42

            def fails(conn: sqlite3.Connection) -> None:
                raise ValueError("the job's own error")
            with pytest.raises(ValueError, match="the job's own error"):
                await threads.run("write", fails)
            with pytest.raises(StoreUnavailable, match="unavailable"):
                await threads.run("read", lambda c: c.execute("SELECT * FROM no_such_table").fetchall())
            # Both threads still serve (the reader on a fresh connection after its SQLite error).
            assert await threads.run("read", lambda c: c.execute("SELECT 7").fetchone()[0]) == 7
            assert await threads.run("write", lambda c: c.execute("SELECT 8").fetchone()[0]) == 8
        finally:
            await threads.aclose()
    asyncio.run(main())


@pytest.mark.parametrize("queued", [1, 3])  # picked up alone, or as a batch
def test_a_job_whose_caller_gave_up_never_runs(tmp_path, queued):
    async def main() -> None:
        threads = _threads(tmp_path)
        ran: list[int] = []
        try:
            busy, release = await _occupy(threads, "write")
            waiting = [asyncio.ensure_future(threads.run("write", lambda c, i=i: ran.append(i))) for i in range(queued)]
            await asyncio.sleep(0.05)
            waiting[0].cancel()
            release.set()
            assert await busy == "blocker"
            await asyncio.gather(*waiting[1:])
            await threads.run("write", lambda c: None)  # everything queued before it has been seen
            assert ran == list(range(1, queued))
        finally:
            await threads.aclose()
    asyncio.run(main())


@pytest.mark.parametrize("queued", [1, 3])
def test_a_job_that_waited_past_the_timeout_fails_without_running(tmp_path, queued):
    async def main() -> None:
        threads = _threads(tmp_path, timeout=0.2)
        ran: list[int] = []
        try:
            busy, release = await _occupy(threads, "read")
            waiting = [asyncio.ensure_future(threads.run("read", lambda c, i=i: ran.append(i))) for i in range(queued)]
            await asyncio.sleep(0.5)  # past every queued job's deadline
            release.set()
            assert await busy == "blocker"
            for outcome in await asyncio.gather(*waiting, return_exceptions=True):
                assert isinstance(outcome, StoreUnavailable) and "waited too long" in str(outcome), outcome
            assert ran == []
            assert await threads.run("read", lambda c: c.execute("SELECT 1").fetchone()[0]) == 1
        finally:
            await threads.aclose()
    asyncio.run(main())


def test_each_thread_runs_on_the_cpu_of_the_loop_that_handed_it_work(tmp_path):
    """``colocate``: before each hand-off the thread is moved to the caller's CPU."""
    from proxy.store import colocate

    if colocate._current_cpu is None:
        pytest.skip("no sched_getcpu/sched_setaffinity here")
    import os

    async def main() -> None:
        threads = _threads(tmp_path)
        try:
            for role in ("read", "write"):
                tid = await threads.run(role, lambda c: threading.get_native_id())
                moved_to = threads.cpus()[role]
                assert moved_to in os.sched_getaffinity(0)
                assert os.sched_getaffinity(tid) == {moved_to}
        finally:
            await threads.aclose()
    asyncio.run(main())


def test_results_reach_every_loop_that_uses_the_threads_and_closed_loops_leave_no_sockets(tmp_path):
    """Each loop gets its inbox (a socket pair); one of a loop closed meanwhile is closed when the
    next loop opens its own, so a process running many loops (tests) holds one at a time."""
    import os

    threads = _threads(tmp_path)

    async def once(n: int) -> int:
        return await threads.run("read", lambda c: c.execute("SELECT ?", (n,)).fetchone()[0])

    assert asyncio.run(once(0)) == 0
    fds = len(os.listdir("/proc/self/fd"))
    assert [asyncio.run(once(n)) for n in range(1, 30)] == list(range(1, 30))
    assert len(os.listdir("/proc/self/fd")) <= fds + 2  # the last loop's inbox at most
    asyncio.run(threads.aclose())
