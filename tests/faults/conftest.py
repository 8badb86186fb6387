"""A proxy of our own for the fault tests that need no special settings.

Not the session ``proxy``: these tests inject backend failures on purpose and
must not open the circuit breaker other test packages rely on. Its breaker has
a high threshold so that the few failures injected here never open it either.

The faults injected here are streaming faults (chunks dropped, cut, oversized,
silent…), so its JSON clients are served from a streamed upstream as well
(``JSON_UPSTREAM=stream``); a JSON upstream's faults are in
``tests/integration/test_json_upstream.py``.
"""
from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from proxy.devtools import Service, start_proxy

FORWARDED = ("x-custom-trace", "x-tenant")


@pytest.fixture(scope="package")
def fproxy(mock_backend: Service, logs_dir: Path) -> Iterator[Service]:
    service = start_proxy(
        mock_backend.url + "/v1",
        logs_dir / "faults-proxy.log",
        SSE_KEEPALIVE_SECS="0.5",
        BACKEND_IDLE_TIMEOUT_SECS="3",
        CIRCUIT_BREAKER_THRESHOLD="100000",
        FORWARD_HEADERS=",".join(FORWARDED),
        JSON_UPSTREAM="stream",
    )
    yield service
    service.stop()
