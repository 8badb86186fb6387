"""Per-process mock state: queued scripts per model and the log of chat requests.

State lives in the worker process, so scripting and recordings need ``--workers 1``
(the default); several workers are for load tests that only use built-in models.
"""
from __future__ import annotations

import os
from collections import deque
from typing import Any

WILDCARD = "*"


class MockState:
    """Script queues (one per model name) and a bounded request log."""

    def __init__(self, max_records: int | None = None) -> None:
        if max_records is None:
            max_records = int(os.environ.get("MOCK_MAX_RECORDS", "10000"))
        self.records: deque[dict[str, Any]] = deque(maxlen=max_records)
        self._queues: dict[str, list[dict[str, Any]]] = {}
        # A queue whose single remaining script has been served at least once:
        # new scripts replace it instead of queueing behind it.
        self._reused: set[str] = set()

    def add_scripts(self, model: str, scripts: list[dict[str, Any]], replace: bool = False) -> int:
        """Queue ``scripts`` for ``model``; returns the queue length."""
        queue = self._queues.setdefault(model, [])
        if replace or model in self._reused:
            queue.clear()
            self._reused.discard(model)
        queue.extend(scripts)
        return len(queue)

    def next_script(self, model: str, wildcard: bool = True) -> dict[str, Any] | None:
        """Pop the next script for ``model`` (or the ``*`` queue); the last one stays and is reused."""
        for name in (model, WILDCARD) if wildcard else (model,):
            queue = self._queues.get(name)
            if queue:
                if len(queue) > 1:
                    return queue.pop(0)
                self._reused.add(name)
                return queue[0]
        return None

    def reset(self) -> None:
        self.records.clear()
        self._queues.clear()
        self._reused.clear()

    def list_records(self, model: str | None = None) -> list[dict[str, Any]]:
        if model is None:
            return list(self.records)
        return [r for r in self.records if r["model"] == model]
