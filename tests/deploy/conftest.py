"""The fleet the deployment tests drive: two proxy instances behind the shipped HAProxy config.

Each instance is ``gunicorn -c conf/gunicorn.conf.py`` with 2 workers
(``proxy.devtools.start_proxy``), both in front of the session's mock backend and
sharing one response store: a Redis database of the deployment tests' own
(``fleet_store``), so a chained turn finds its predecessor on either instance.
"""
from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from urllib.parse import urlsplit

import pytest
import redis

from proxy.devtools import Service, free_port, start_proxy
from tests.deploy.haproxy import SERVERS, HAProxy
from tests.deploy.kinds import script_mock
from tests.deploy.tools import kill_group
from tests.mock_client import MockControl


class Fleet:
    """``proxy1`` and ``proxy2`` on fixed ports (a restart reuses its port) behind HAProxy."""

    def __init__(
        self, backend_url: str, logs_dir: Path, env: dict[str, str], haproxy_env: dict[str, str] | None = None
    ) -> None:
        self.backend_url = backend_url
        self.env = {"SSE_KEEPALIVE_SECS": "1", "GRACEFUL_TIMEOUT_SECS": "30", **env}
        self._tag = os.urandom(3).hex()
        self._logs = logs_dir
        self.ports = {name: free_port() for name in SERVERS}
        self.instances: dict[str, Service] = {}
        self.haproxy: HAProxy | None = None
        try:
            for name in SERVERS:
                self.start(name)
            self.haproxy = HAProxy(self.ports, logs_dir / f"haproxy-{self._tag}.log", **(haproxy_env or {}))
            for name in SERVERS:
                self.haproxy.wait_status(name, "UP")
        except BaseException:
            self.stop()
            raise

    @property
    def url(self) -> str:
        assert self.haproxy is not None
        return self.haproxy.url

    def log_path(self, name: str) -> Path:
        return self._logs / f"{name}-{self._tag}.log"

    def start(self, name: str) -> Service:
        """Start (or restart) an instance on its own port."""
        service = start_proxy(self.backend_url, self.log_path(name), port=self.ports[name], **self.env)
        self.instances[name] = service
        return service

    def kill(self, name: str) -> tuple[float, float]:
        """SIGKILL the instance's whole process group (master and workers): (when sent, when all dead)."""
        service = self.instances[name]
        sent = time.time()
        done = kill_group(service.pid)
        service.proc.wait(5)
        service.stop()  # closes its log file; the process is gone
        return sent, done

    def stop(self) -> None:
        if self.haproxy is not None:
            self.haproxy.stop()
        for service in self.instances.values():
            service.stop()


# The session's Redis keeps other tests' keys in database 0; the fleets use this one, emptied
# before and after each test.
FLEET_DB = 9


@pytest.fixture
def fleet_store(redis_url: str) -> Iterator[str]:
    """``RESPONSE_STORE_URL`` for a fleet: database ``FLEET_DB`` of the session's Redis, empty."""
    parts = urlsplit(redis_url)
    url = parts._replace(path=f"/{FLEET_DB}").geturl()
    with redis.Redis.from_url(url) as client:
        client.flushdb()
        yield url
        client.flushdb()


@pytest.fixture
def fleet_factory(mock_backend: Service, logs_dir: Path, fleet_store: str) -> Iterator[Callable[..., Fleet]]:
    """Start fleets with extra instance settings (and HAProxy variables); every one is stopped after the test."""
    control = MockControl(mock_backend.url)
    control.reset()  # earlier tests' records and scripts: the kill test reads the records
    script_mock(control)
    control.close()
    fleets: list[Fleet] = []

    def make(haproxy_env: dict[str, str] | None = None, **env: str) -> Fleet:
        fleet = Fleet(mock_backend.url + "/v1", logs_dir, {"RESPONSE_STORE_URL": fleet_store, **env}, haproxy_env)
        fleets.append(fleet)
        return fleet

    yield make
    for fleet in fleets:
        fleet.stop()
