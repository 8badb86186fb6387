"""The shared table: the host's breaker and a fixed number of per-model slots.

Layout of the segment (every offset 8-byte aligned)::

    header   magic, slot count, window          written once, before fork
    host     one frame (HostRecord)             lock: byte 0
    index    one 8-byte model hash per slot     0 = free; lock: byte 1
    slots    one frame (SlotRecord) per slot    lock: byte 1

**Finding a model's slot** never scans the table: a model may only live in
the ``WINDOW`` (16) consecutive slots starting at ``hash % (slots - WINDOW + 1)``,
so a lookup is one unpack of 16 index entries and a membership test, then one
read of the slot's frame, whose own ``hash`` field confirms the entry (a slot
being reassigned reads as "no slot"). The hash is Python's 64-bit SipHash of
the name: every process that maps the table is a fork of the one that made
it, so all share the hash key. Two names with one hash (odds ~2^-64 per pair)
would share a slot.

**Names** are kept for display (``/health``, metrics): the first
``NAME_BYTES`` bytes of the UTF-8 name and its full length; a longer name is
shown cut, with "…".

**Allocation and eviction** (``allocate``, under the table lock): a model gets
a slot on its first failure, never before — healthy models and names the
backend refuses with a 4xx never take one. Among the model's 16 candidate
slots it takes, in order:

1. a free slot (or one whose index entry and frame disagree: left behind by a
   writer killed between the two stores);
2. else the least recently written *closed* slot with no failures: it holds
   nothing but its transition counters, which are lost (the model's metrics
   series restarts from zero when it fails again);
3. else the least recently written *closed* slot with failures: that model
   restarts its count, the least recently failing model paying for the new one;
4. else none: every candidate is open or half-open, and those are never
   evicted (they are protecting the backend). The model is then *untracked*:
   its requests are admitted, its failures are counted in the host frame's
   ``untracked`` counter and still feed the host-level rule.

With ``slots <= 16`` the window is the whole table and the order above is
exactly least-recently-written over all slots.
"""
from __future__ import annotations

import struct
from collections.abc import Sequence
from typing import Any

from .machine import CLOSED, I_FAILURES, I_STATE, BreakerRecord
from .shm import Frame, Segment

__all__ = ["MAX_SLOTS", "NAME_BYTES", "WINDOW", "HostRecord", "SharedTable", "SlotRecord", "slot_name"]

NAME_BYTES = 256
WINDOW = 16
MAX_SLOTS = 4096
_MAGIC = 0x3131_4B52_4250_5052  # "RPPBRK11": layout version of this module
_HEADER = struct.Struct("=QQQ")
_HEADER_SIZE = 64
_ENTRY = struct.Struct("=q")


class HostRecord(BreakerRecord):
    """The host breaker. ``failures`` counts every failure since the last success on any model.

    ``unreachable``: host-level failures in a row, with no backend answer
    between them. ``run_model``/``run_multi``: the hash of the first model that
    failed since the last success, and whether another model failed since.
    ``untracked``/``evictions`` count slot-table events, for the metrics.
    ``model_failures`` counts every model failure ever: it changes whenever a
    slot may have been allocated or had a failure counted, which is what lets
    workers cache "this model has no slot" (``proxy.breaker.breakers``).
    """

    __slots__ = ("unreachable", "run_model", "run_multi", "untracked", "evictions", "model_failures")
    FIELDS = BreakerRecord.FIELDS + __slots__
    FORMAT = BreakerRecord.FORMAT + "qqqqqq"
    unreachable: int
    run_model: int
    run_multi: int
    untracked: int
    evictions: int
    model_failures: int


I_UNREACHABLE, I_RUN_MODEL, I_RUN_MULTI, I_UNTRACKED, I_EVICTIONS, I_MODEL_FAILURES = 10, 11, 12, 13, 14, 15


class SlotRecord(BreakerRecord):
    """One model's breaker: its hash (0: free), when it was last written, and its name."""

    __slots__ = ("hash", "last_write", "name_len", "name")
    FIELDS = BreakerRecord.FIELDS + __slots__
    FORMAT = BreakerRecord.FORMAT + f"qdq{NAME_BYTES}s"
    FAST_FORMAT = BreakerRecord.FORMAT + f"qdq{NAME_BYTES}x"
    hash: int
    last_write: float
    name_len: int
    name: bytes


I_HASH, I_LAST_WRITE, I_NAME_LEN, I_NAME = 10, 11, 12, 13


class SharedTable:
    """The host frame, the index and ``slots`` model frames, in one shared segment.

    Create it before forking (``proxy.breaker.shared_table`` does, from
    ``conf/gunicorn.conf.py``); every child maps the same memory.
    """

    def __init__(self, slots: int = 256, directory: str | None = None) -> None:
        if not 1 <= slots <= MAX_SLOTS:
            raise ValueError(f"slots must be between 1 and {MAX_SLOTS}")
        host_size = struct.calcsize("=Q" + HostRecord.FORMAT + "Q")
        slot_size = struct.calcsize("=Q" + SlotRecord.FORMAT + "Q")
        self._host_offset = _HEADER_SIZE
        self._index_offset = _align(self._host_offset + host_size)
        slots_offset = self._index_offset + 8 * slots
        self._segment = seg = Segment(slots_offset + slot_size * slots, directory)
        self.slots = slots
        self.window = min(WINDOW, slots)
        self._homes = slots - self.window + 1
        self._window_struct = struct.Struct(f"={self.window}q")
        self._index_struct = struct.Struct(f"={slots}q")
        _HEADER.pack_into(seg.mm, 0, _MAGIC, slots, self.window)
        self.host_lock = seg.lock(0)
        self.table_lock = seg.lock(1)
        self.host: Frame[HostRecord] = Frame(seg.mm, self._host_offset, HostRecord.FORMAT, HostRecord, self.host_lock)
        self.frames: list[Frame[SlotRecord]] = [
            Frame(
                seg.mm, slots_offset + i * slot_size, SlotRecord.FORMAT, SlotRecord, self.table_lock,
                fast_fmt=SlotRecord.FAST_FORMAT,
            )
            for i in range(slots)
        ]

    def find(self, h: int) -> int:
        """The slot holding hash ``h`` per the index, or -1; lock-free (verify with the frame)."""
        home = h % self._homes
        entries = self._window_struct.unpack_from(self._segment.mm, self._index_offset + 8 * home)
        if h in entries:
            return home + entries.index(h)
        return -1

    def index_entries(self) -> tuple[int, ...]:
        """Every slot's index entry (0: free), in one read."""
        return self._index_struct.unpack_from(self._segment.mm, self._index_offset)

    def find_locked(self, h: int) -> int:
        """``find``, confirmed by the slot's frame. Caller holds ``table_lock``."""
        slot = self.find(h)
        if slot >= 0 and self.frames[slot].load()[I_HASH] != h:
            return -1
        return slot

    def allocate(self, h: int, name: str, now: float) -> tuple[int, bool]:
        """A slot for a model that has none: (slot or -1, whether a model was evicted).

        Caller holds ``table_lock`` and has checked ``find_locked(h) < 0``. The
        policy is in the module docstring.
        """
        home = h % self._homes
        entries = self._window_struct.unpack_from(self._segment.mm, self._index_offset + 8 * home)
        chosen = -1
        evicting = False
        clean: tuple[float, int] | None = None
        failing: tuple[float, int] | None = None
        for offset, entry in enumerate(entries):
            slot = home + offset
            block = self.frames[slot].load()
            if entry == 0 or block[I_HASH] != entry:
                chosen = slot
                break
            if block[I_STATE] != CLOSED:
                continue
            key = (block[I_LAST_WRITE], slot)
            if block[I_FAILURES] == 0:
                clean = key if clean is None or key < clean else clean
            else:
                failing = key if failing is None or key < failing else failing
        if chosen < 0:
            victim = clean or failing
            if victim is None:
                return -1, False
            chosen, evicting = victim[1], True
        encoded = name.encode("utf-8")
        with self.frames[chosen].edit() as rec:
            for field in BreakerRecord.FIELDS:  # a fresh breaker: closed, no failures, no counts
                setattr(rec, field, 0)
            rec.hash = h
            rec.last_write = now
            rec.name_len = len(encoded)
            rec.name = encoded[:NAME_BYTES]
        # An aligned 8-byte memcpy: readers see the old entry or the new one.
        start = self._index_offset + 8 * chosen
        self._segment.mm[start : start + 8] = _ENTRY.pack(h)
        return chosen, evicting

    def close(self) -> None:
        """Unmap (tests; a server keeps its table for its lifetime)."""
        self._segment.close()


def slot_name(block: Sequence[Any]) -> str:
    """The display name of a slot frame read with ``read_full``."""
    length: int = block[I_NAME_LEN]
    raw: bytes = block[I_NAME][: min(length, NAME_BYTES)]
    if length > NAME_BYTES:
        return raw.decode("utf-8", "ignore") + "…"
    return raw.decode("utf-8", "replace")


def _align(n: int) -> int:
    return (n + 7) & ~7
