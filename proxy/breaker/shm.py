"""Shared memory for the breakers: one unlinked ``MAP_SHARED`` file, seqlock frames, record locks.

This module knows nothing about breakers. It gives the slot table
(``proxy.breaker.table``) three things:

* ``Segment``: an anonymous file mapped ``MAP_SHARED``, created before gunicorn
  forks, so every worker (respawned ones too) maps the same bytes. The file is
  unlinked at once: nobody else can open it and nothing is left to clean up.
* ``Lock``: a cross-process writer lock on one byte of that file (``fcntl.lockf``
  record locks, one byte per lock so the host and the table lock independently),
  together with a ``threading.Lock`` because record locks are per process. The
  kernel drops a dead holder's record lock, so a SIGKILLed worker never leaves
  one held.
* ``Frame``: a record at a fixed offset, framed by two sequence numbers. A
  writer (holding the frame's ``Lock``) stores ``seq_b``, then the data, then
  ``seq_a``; a reader unpacks ``seq_a``, data, ``seq_b`` in one
  ``struct.unpack_from`` without locking and accepts the copy only if both
  numbers match, else it retries. If they keep differing, a writer died
  mid-store; the reader then takes the lock (granted once the kernel released
  the dead writer's) and repairs the frame. This relies on stores and loads not
  being reordered among themselves, which holds on x86 (TSO). On weakly ordered
  CPUs a reader could, in a very narrow window, act on a mixed copy; the cost
  is one wrongly admitted or refused request, never a stuck breaker, since
  every transition re-reads under the lock.

A fresh file is all zeros, which every frame must read as a valid state.
"""
from __future__ import annotations

import fcntl
import mmap
import os
import struct
import tempfile
import threading
import weakref
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any, ClassVar, Generic, TypeVar

__all__ = ["Frame", "Lock", "Record", "Segment"]

# Lock-free read attempts before concluding a writer died mid-store. A live
# writer finishes its three stores in well under a microsecond.
_READ_SPINS = 64
_SEQ = struct.Struct("=Q")


class Segment:
    """``size`` bytes of an unlinked file, mapped ``MAP_SHARED``; inherited across ``fork``."""

    def __init__(self, size: int, directory: str | None = None) -> None:
        fd = _open_unlinked(directory)
        try:
            os.ftruncate(fd, size)
            self.mm = mmap.mmap(fd, size, flags=mmap.MAP_SHARED, prot=mmap.PROT_READ | mmap.PROT_WRITE)
        except BaseException:
            os.close(fd)
            raise
        self.fd = fd
        self.size = size

    def lock(self, byte: int) -> Lock:
        return Lock(self.fd, byte)

    def close(self) -> None:
        """Unmap and close (tests; a server keeps its segment for its lifetime)."""
        self.mm.close()
        os.close(self.fd)


_locks: weakref.WeakSet[Lock] = weakref.WeakSet()


class Lock:
    """Exclusive across processes (a record lock on one byte) and across this process's threads."""

    __slots__ = ("_fd", "_byte", "_tlock", "__weakref__")

    def __init__(self, fd: int, byte: int) -> None:
        self._fd = fd
        self._byte = byte
        self._tlock = threading.Lock()
        _locks.add(self)

    def __enter__(self) -> Lock:
        self._tlock.acquire()
        try:
            fcntl.lockf(self._fd, fcntl.LOCK_EX, 1, self._byte, os.SEEK_SET)
        except BaseException:
            self._tlock.release()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        try:
            fcntl.lockf(self._fd, fcntl.LOCK_UN, 1, self._byte, os.SEEK_SET)
        finally:
            self._tlock.release()


def _reinit_thread_locks() -> None:
    # A thread of the parent may have held a threading.Lock at fork time; that
    # thread does not exist in the child, so the lock would never be released.
    # (Record locks are not inherited by fork, so no child starts holding one.)
    for lock in list(_locks):
        lock._tlock = threading.Lock()


os.register_at_fork(after_in_child=_reinit_thread_locks)


class Record:
    """A mutable copy of a frame's fields, used only under the frame's lock.

    Subclasses name their fields in ``__slots__`` and list them, in storage
    order, in ``FIELDS``.
    """

    __slots__ = ()
    FIELDS: ClassVar[tuple[str, ...]] = ()

    def __init__(self, values: Sequence[Any]) -> None:
        for name, value in zip(self.FIELDS, values):
            setattr(self, name, value)

    def values(self) -> tuple[Any, ...]:
        return tuple(getattr(self, name) for name in self.FIELDS)

    def repair(self) -> None:
        """Make fields a half-finished store may have left mixed valid again."""


R = TypeVar("R", bound=Record)


class Frame(Generic[R]):
    """One seqlock-framed record at ``offset``: ``seq_a``, the fields (``fmt``), ``seq_b``.

    ``fast_fmt`` is the same layout with bulky fields skipped (``"256x"`` for a
    ``"256s"``), for hot-path reads that need neither the bytes nor their copy.
    """

    __slots__ = ("_mm", "_offset", "_full", "_fast", "_data", "_seq_b_offset", "_make", "lock")

    def __init__(
        self, mm: mmap.mmap, offset: int, fmt: str, make: Callable[[Sequence[Any]], R], lock: Lock,
        fast_fmt: str | None = None,
    ) -> None:
        if offset % 8:
            raise ValueError("frames must be 8-byte aligned (atomic stores)")
        self._mm = mm
        self._offset = offset
        self._full = struct.Struct("=Q" + fmt + "Q")
        self._fast = struct.Struct("=Q" + (fast_fmt or fmt) + "Q")
        if self._fast.size != self._full.size:
            raise ValueError("fast_fmt must have the layout of fmt")
        self._data = struct.Struct("=" + fmt)
        self._seq_b_offset = offset + self._full.size - _SEQ.size
        self._make = make
        self.lock = lock

    @property
    def size(self) -> int:
        return self._full.size

    def read(self) -> tuple[Any, ...]:
        """A consistent copy (``seq_a``, fields…, ``seq_b``) without locking; bulky fields skipped."""
        block = self._fast.unpack_from(self._mm, self._offset)
        if block[0] == block[-1]:
            return block
        return self._read_contended(self._fast)

    def read_full(self) -> tuple[Any, ...]:
        """Like ``read``, with every field."""
        return self._read_contended(self._full)

    def _read_contended(self, layout: struct.Struct) -> tuple[Any, ...]:
        """Retry while a writer is mid-store; repair under the lock if it never finishes."""
        mm, offset = self._mm, self._offset
        for _ in range(_READ_SPINS):
            block = layout.unpack_from(mm, offset)
            if block[0] == block[-1]:
                return block
        with self.lock:
            self.load()
            return layout.unpack_from(mm, offset)

    def load(self) -> tuple[Any, ...]:
        """The whole frame, repaired if a dead writer left it torn. Caller holds ``lock``."""
        block = self._full.unpack_from(self._mm, self._offset)
        if block[0] != block[-1]:
            rec = self._make(block[1:-1])
            rec.repair()
            self._store(max(block[0], block[-1]) + 1, rec.values())
            block = self._full.unpack_from(self._mm, self._offset)
        return block

    @contextmanager
    def edit(self) -> Iterator[R]:
        """Yield the fields as a record and store them if changed. Caller holds ``lock``.

        Nothing is stored if the body raises.
        """
        block = self.load()
        rec = self._make(block[1:-1])
        before = rec.values()
        yield rec
        after = rec.values()
        if after != before:
            self._store(block[0] + 1, after)

    @contextmanager
    def locked(self) -> Iterator[R]:
        """``edit`` under the frame's lock."""
        with self.lock, self.edit() as rec:
            yield rec

    def _store(self, seq: int, values: tuple[Any, ...]) -> None:
        mm = self._mm
        _SEQ.pack_into(mm, self._seq_b_offset, seq)
        self._data.pack_into(mm, self._offset + _SEQ.size, *values)
        _SEQ.pack_into(mm, self._offset, seq)


def _open_unlinked(directory: str | None) -> int:
    """A descriptor to a fresh file nobody else can open or has to clean up."""
    candidates = [directory] if directory else ["/dev/shm", tempfile.gettempdir()]
    last: OSError | None = None
    for d in candidates:
        if not os.path.isdir(d):
            continue
        try:
            fd, path = tempfile.mkstemp(prefix="responses-proxy-breaker-", dir=d)
        except OSError as exc:
            last = exc
            continue
        os.unlink(path)
        return fd
    raise last or FileNotFoundError(f"no directory for breaker state in {candidates}")
