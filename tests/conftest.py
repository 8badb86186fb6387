"""Shared fixtures: the real process tree on loopback.

One mock backend and one proxy (gunicorn, 2 Uvicorn workers, conf/gunicorn.conf.py)
serve the whole session; tests that need other settings start their own proxy
with ``proxy_factory``.
"""
from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from proxy.devtools import Service, start_mock, start_proxy
from tests.mock_client import MockControl
from tests.redis_server import RedisServer
from tests.store_kit import StoreFactory

API_KEY = "sk-test-0123456789abcdef-SECRET"


@pytest.fixture(scope="session")
def logs_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("logs")


@pytest.fixture(scope="session")
def mock_backend(logs_dir: Path) -> Iterator[Service]:
    service = start_mock(logs_dir / "mock.log")
    yield service
    service.stop()


@pytest.fixture(scope="session")
def proxy(mock_backend: Service, logs_dir: Path) -> Iterator[Service]:
    service = start_proxy(mock_backend.url + "/v1", logs_dir / "proxy.log", SSE_KEEPALIVE_SECS="1")
    yield service
    service.stop()


@pytest.fixture
def proxy_factory(mock_backend: Service, logs_dir: Path) -> Iterator[Callable[..., Service]]:
    """Start a proxy with extra environment settings; stopped after the test."""
    started: list[Service] = []

    def start(backend_url: str | None = None, **env: str) -> Service:
        name = f"proxy-{len(started)}-{os.urandom(3).hex()}.log"
        service = start_proxy(backend_url or mock_backend.url + "/v1", logs_dir / name, **env)
        started.append(service)
        return service

    yield start
    for service in started:
        service.stop()


@pytest.fixture
def mock(mock_backend: Service) -> Iterator[MockControl]:
    """The session's mock backend, reset for this test."""
    control = MockControl(mock_backend.url)
    control.reset()
    yield control
    control.close()


@pytest.fixture
def openai_client(proxy: Service):
    """The official openai SDK pointed at the proxy, through a recording tap: after
    the test, every response and every streamed event it received is validated
    (``tests/conformance.py``) and every error body must be OpenAI-shaped."""
    import openai

    from tests.tap import RecordingTap, check_exchanges

    with RecordingTap(proxy.url) as tap:
        with openai.OpenAI(base_url=tap.url + "/v1", api_key=API_KEY, max_retries=0, timeout=30) as client:
            yield client
        check_exchanges(tap)


@pytest.fixture(scope="session")
def redis_url() -> Iterator[str]:
    """A real Redis for the session: CI's (``TEST_REDIS_URL``), else a ``redis-server`` started
    here. Tests keep apart by key prefix (``store_factory``) or by db number."""
    url = os.environ.get("TEST_REDIS_URL")
    if url:
        yield url
        return
    with RedisServer() as server:
        yield server.url


@pytest.fixture
def store_factory(tmp_path: Path, request: pytest.FixtureRequest) -> StoreFactory:
    """``store_factory("sqlite" | "redis", **options)``: a store on this test's SQLite file or
    under this test's Redis key prefix (Redis is started only when a test asks for it)."""
    return StoreFactory(tmp_path, lambda: request.getfixturevalue("redis_url"))
