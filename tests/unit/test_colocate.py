"""``CpuFollower`` moves a real thread to the CPU of its caller, and gives up cleanly."""
from __future__ import annotations

import os
import threading

import pytest

from proxy.store import colocate
from proxy.store.colocate import CpuFollower

pytestmark = pytest.mark.skipif(colocate._current_cpu is None, reason="no sched_getcpu/sched_setaffinity here")


def _idle_thread() -> tuple[threading.Thread, threading.Event]:
    release = threading.Event()
    thread = threading.Thread(target=release.wait, args=(30,), daemon=True)
    thread.start()
    return thread, release


def test_the_thread_is_moved_to_the_callers_cpu():
    thread, release = _idle_thread()
    try:
        follower = CpuFollower(thread.native_id)
        assert follower.cpu == -1
        follower.follow()
        here = colocate._current_cpu()  # type: ignore[misc]
        # The caller may have moved between the two reads; then follow() once more catches up.
        if follower.cpu != here:
            follower.follow()
            here = colocate._current_cpu()  # type: ignore[misc]
        assert os.sched_getaffinity(thread.native_id) == {follower.cpu}
        assert follower.cpu in os.sched_getaffinity(0)
    finally:
        release.set()
        thread.join()


def test_a_refused_move_stops_following_without_raising():
    thread, release = _idle_thread()
    native_id = thread.native_id
    release.set()
    thread.join()  # gone: the kernel refuses to move it (ESRCH)
    follower = CpuFollower(native_id)
    follower.follow()
    assert follower.cpu == -1
    follower.follow()  # and stays off
    assert follower.cpu == -1


def test_without_a_thread_id_nothing_is_followed():
    follower = CpuFollower(None)
    follower.follow()
    assert follower.cpu == -1
