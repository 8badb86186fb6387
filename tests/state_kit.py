"""What the stored-state tests (``tests/integration/test_state_*.py``) share.

* ``state_proxy``: a proxy of the module's own (gunicorn, 2 workers, its own SQLite store file), so
  a test may stop one of its workers (``only_worker``) without touching the session's proxy.
* ``sdk(url, key)``: the openai SDK through a ``RecordingTap`` that opens a new connection per
  request, so ``only_worker`` chooses the worker of every request; ``check_exchanges`` validates
  everything it saw, stateful objects included.
* ``served_by``: the pid of the worker that answered a request, from its ``request_completed``
  line (``[pid]`` and the ``X-Request-ID`` the test sent).
* ``redis_db``: an empty database of the session's Redis for one test (flushed before and after),
  so proxies that use the store's fixed key prefix keep apart from every other test.
* ``upstream``: what the mock backend received, per model, in order.
* ``stored_bytes``: every byte a SQLite store holds on disk (file and WAL), to prove what it does
  not keep; ``redis_mentions`` does the same for a Redis database.
"""
from __future__ import annotations

import contextlib
import itertools
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import httpx
import openai
import pytest
import redis

from proxy.devtools import Service, start_proxy
from tests.conftest import API_KEY
from tests.faults.helpers import completed_for
from tests.mock_client import MockControl
from tests.tap import RecordingTap, check_exchanges

KEY_A = API_KEY
KEY_B = "sk-other-fedcba9876543210-SECRET"


@pytest.fixture(scope="module")
def state_proxy(mock_backend: Service, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Service]:
    logs = tmp_path_factory.mktemp("state")
    service = start_proxy(mock_backend.url + "/v1", logs / "proxy.log")
    yield service
    service.stop()


@contextlib.contextmanager
def sdk(url: str, key: str = KEY_A, *, check: bool = True) -> Iterator[tuple[openai.OpenAI, RecordingTap]]:
    """The openai SDK against ``url`` through a recording tap (one new connection per request);
    every answer it got is validated when the block ends without an error."""
    with RecordingTap(url, fresh_connections=True) as tap:
        with openai.OpenAI(base_url=tap.url + "/v1", api_key=key, max_retries=0, timeout=60) as client:
            yield client, tap
        if check:
            check_exchanges(tap)


def request_id(tag: str) -> str:
    return f"{tag}-{uuid.uuid4().hex[:12]}"


def served_by(service: Service, rid: str) -> int:
    """The pid of the worker that answered the request sent with ``X-Request-ID: rid``."""
    lines = completed_for(service, rid, timeout=20, settle=0)
    return lines[0].pid


def upstream(mock: MockControl, model: str) -> list[list[dict[str, Any]]]:
    """The chat ``messages`` of every request the backend got for ``model``, in arrival order."""
    return [r["body"]["messages"] for r in mock.requests(model)]


def auth(key: str = KEY_A) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


# One client for the plain calls (a new httpx client per call costs ~40 ms: its TLS context), with
# a new connection per request, so that a worker stopped by ``only_worker`` never holds one.
HTTP = httpx.Client(timeout=60, limits=httpx.Limits(max_keepalive_connections=0))


def call(url: str, method: str, path: str, key: str = KEY_A, body: Any = None, **headers: str) -> httpx.Response:
    return HTTP.request(method, url + path, headers={**auth(key), **headers}, json=body)


def get(url: str, path: str, key: str = KEY_A, **params: Any) -> httpx.Response:
    return HTTP.get(url + path, headers=auth(key), params=params or None)


def delete(url: str, path: str, key: str = KEY_A) -> httpx.Response:
    return HTTP.delete(url + path, headers=auth(key))


def post(url: str, path: str, body: dict[str, Any], key: str = KEY_A, **headers: str) -> httpx.Response:
    return HTTP.post(url + path, json=body, headers={**auth(key), **headers})


def error(r: httpx.Response, status: int) -> dict[str, Any]:
    """The OpenAI-shaped error of ``r``, asserting its status and shape."""
    assert r.status_code == status, (r.status_code, r.text[:500])
    doc = r.json()
    assert set(doc) == {"error"} and set(doc["error"]) == {"message", "type", "param", "code"}, doc
    assert doc["error"]["message"], doc
    return doc["error"]


_dbs = itertools.cycle(range(1, 16))


@pytest.fixture
def redis_db(redis_url: str) -> Iterator[str]:
    """A database of the session's Redis of this test's own, empty before and flushed after."""
    parts = urlsplit(redis_url)
    url = urlunsplit(parts._replace(path=f"/{next(_dbs)}"))
    with redis.Redis.from_url(url) as client:
        client.flushdb()
        try:
            yield url
        finally:
            client.flushdb()


def redis_mentions(url: str, needle: str) -> list[str]:
    """Every key of the database at ``url`` whose name or value contains ``needle``."""
    found = []
    raw = needle.encode()
    with redis.Redis.from_url(url) as client:
        for key in client.scan_iter(count=1000):
            kind = client.type(key).decode()
            if kind == "string":
                values: list[bytes] = [client.get(key) or b""]
            elif kind == "hash":
                values = [b for pair in client.hgetall(key).items() for b in pair]
            elif kind == "list":
                values = client.lrange(key, 0, -1)
            elif kind in ("set",):
                values = list(client.smembers(key))
            elif kind == "zset":
                values = [m for m, _ in client.zrange(key, 0, -1, withscores=True)]
            else:
                values = [client.dump(key) or b""]
            if raw in key or any(raw in v for v in values):
                found.append(key.decode())
    return found


def store_file(service: Service) -> Path:
    """The SQLite file ``start_proxy`` gave ``service``."""
    return service.log_path.with_suffix(".store.sqlite3")


def stored_bytes(path: Path) -> bytes:
    """Everything a SQLite store holds on disk: the file, its WAL and shared memory."""
    out = b""
    for suffix in ("", "-wal", "-shm"):
        p = Path(str(path) + suffix)
        if p.exists():
            out += p.read_bytes()
    return out
