"""The multiprocess directory: prepared by the gunicorn master, written by each worker.

Each worker writes its values to its own memory-mapped files
(``<kind>_<pid>.db``) in one directory; ``GET /metrics`` merges all of them.
The directory belongs to one instance: the master prepares it before forking
(``METRICS_DIR``, or a fresh temporary directory per instance), so two
instances on one host never share one, and a SIGHUP reload keeps it.
"""
from __future__ import annotations

import glob
import os
import shutil
import tempfile
from collections.abc import Callable
from typing import Any

from prometheus_client import multiprocess as _mp
from prometheus_client import values

__all__ = [
    "DIR_ENV",
    "install_multiprocess_values",
    "instance_dir",
    "multiprocess_dir",
    "prepare_multiprocess_dir",
    "remove_instance_dir",
    "worker_exited",
]

DIR_ENV = "PROMETHEUS_MULTIPROC_DIR"

# prometheus_client leaves these unannotated: typed once here.
_mark_process_dead: Callable[[int, str], None] = _mp.mark_process_dead
_multi_process_value: Callable[..., Any] = values.MultiProcessValue

# -- the master's side --------------------------------------------------------

_prepared: str | None = None
_own_dir: str | None = None


def instance_dir() -> str:
    """A temporary directory of this instance's own: created on the first call, the same one after.

    In ``/dev/shm`` when there is one: the files are written on every request,
    and memory is where they belong.
    """
    global _own_dir
    if _own_dir is None:
        shm = "/dev/shm"
        _own_dir = tempfile.mkdtemp(prefix="responses-proxy-metrics-", dir=shm if os.path.isdir(shm) else None)
    return _own_dir


def prepare_multiprocess_dir(path: str) -> None:
    """In the gunicorn master, before forking: make ``path`` this instance's metrics directory.

    Creates it, removes the ``*.db`` files a previous run left (nothing else),
    and sets ``PROMETHEUS_MULTIPROC_DIR`` for the workers. Called again with
    the same path in the same process (a SIGHUP reload re-reads the
    configuration), it keeps the files: counts survive a reload.
    """
    global _prepared
    if _prepared != path:
        os.makedirs(path, exist_ok=True)
        for stale in glob.glob(os.path.join(path, "*.db")):
            os.remove(stale)
        _prepared = path
    os.environ[DIR_ENV] = path


def remove_instance_dir() -> None:
    """At master exit: remove the temporary directory ``instance_dir`` made (never ``METRICS_DIR``)."""
    global _own_dir, _prepared
    if _own_dir is not None:
        shutil.rmtree(_own_dir, ignore_errors=True)
        if _prepared == _own_dir:
            _prepared = None
        _own_dir = None


def multiprocess_dir() -> str | None:
    path = os.environ.get(DIR_ENV)
    return path if path and os.path.isdir(path) else None


def worker_exited(pid: int) -> None:
    """gunicorn's ``child_exit``: drop the dead worker's live gauges (its counters stay)."""
    path = multiprocess_dir()
    if path is not None:
        _mark_process_dead(pid, path)


_pid = [os.getpid()]
os.register_at_fork(after_in_child=lambda: _pid.__setitem__(0, os.getpid()))


def install_multiprocess_values() -> bool:
    """Make new metric values live in the multiprocess directory, if there is one.

    prometheus_client picks its value class once, at import, from the
    environment; the master imports it before it has prepared the directory,
    so the class is chosen here, in the worker. The pid is read from a cache
    updated at fork: the library checks it on every increment, and
    ``os.getpid()`` is a system call.
    """
    if multiprocess_dir() is None:
        return False
    if not getattr(values.ValueClass, "_multiprocess", False):
        values.ValueClass = _multi_process_value(process_identifier=lambda: _pid[0])
    return True
