"""The ``service_tier`` of a background response ended from outside its generation, on SQLite and
on Redis, through real gunicorn workers and the openai SDK.

An ended Response shows the tier that served it (``auto`` → ``default``, ``fast`` → ``priority``:
``proxy.translate.params.TIER_SERVED``), a queued or running one the tier requested. A job that
ends by itself gets that from its translator; one ended by a cancel or by a reaper (its worker
SIGKILLed) is rewritten from its stored ``in_progress`` body (``proxy.background.bodies.ended``),
and kept the requested ``auto`` there — so the same response showed ``default`` when it completed
and ``auto`` when it was cancelled."""
from __future__ import annotations

import os
import signal
from collections.abc import Iterator
from contextlib import ExitStack
from typing import Any

import openai
import pytest

from proxy.background.bodies import LOST_MESSAGE
from proxy.devtools import Service
from tests.background_kit import get, poll, read_logged, read_some, slow_text, start, wait_upstream, worker_of
from tests.conformance import check_response
from tests.conftest import API_KEY
from tests.redis_server import RedisServer

LEASE_SECS = "3"


@pytest.fixture(params=["sqlite", "redis"])
def svc(request, proxy_factory) -> Iterator[Service]:
    """One instance (2 workers) on SQLite, or on a Redis of its own; a short lease for the reaper."""
    with ExitStack() as stack:
        env = {"BACKGROUND_LEASE_SECS": LEASE_SECS}
        if request.param == "redis":
            server = stack.enter_context(RedisServer())
            env["RESPONSE_STORE_URL"] = f"redis://127.0.0.1:{server.port}/0"
        yield start(proxy_factory, **env)


def _sdk(svc: Service) -> openai.OpenAI:
    return openai.OpenAI(base_url=svc.url + "/v1", api_key=API_KEY, max_retries=0, timeout=30)


@pytest.mark.parametrize(("requested", "served"), [(None, "default"), ("auto", "default"), ("fast", "priority"),
                                                   ("flex", "flex")])
def test_a_cancelled_background_response_shows_the_tier_that_served_it(svc, mock, requested, served):
    client = _sdk(svc)
    tier: dict[str, Any] = {} if requested is None else {"service_tier": requested}
    text = slow_text(30)
    job = client.responses.create(model="mock-slow-100", input=text, background=True, **tier)
    assert job.status == "queued" and job.service_tier == (requested or "auto")  # requested, while queued
    wait_upstream(mock, text, ended=False)
    assert client.responses.retrieve(job.id).service_tier == (requested or "auto")  # and in progress
    cancelled = client.responses.cancel(job.id)
    assert cancelled.status == "cancelled" and cancelled.service_tier == served
    stored = check_response(get(svc, job.id))
    assert stored["status"] == "cancelled" and stored["service_tier"] == served
    assert client.responses.cancel(job.id).service_tier == served  # idempotent: the same Response
    # The same request completing by itself shows the same tier.
    done = client.responses.create(model="mock-echo", input="quick", background=True, **tier)
    assert poll(svc, done.id)["service_tier"] == served


def test_a_reaped_background_response_shows_the_tier_that_served_it(svc, mock):
    text = slow_text(60)
    live = read_some(svc, {"model": "mock-slow-100", "input": text}, 5)
    rid = live[0]["response"]["id"]
    assert live[0]["response"]["service_tier"] == "auto"
    wait_upstream(mock, text, ended=False)
    assert read_logged(svc, rid, 5) == live
    os.kill(worker_of(svc, rid), signal.SIGKILL)
    final = check_response(poll(svc, rid, timeout=30))
    assert final["status"] == "failed" and final["error"]["message"] == LOST_MESSAGE
    assert final["service_tier"] == "default"
    assert _sdk(svc).responses.retrieve(rid).service_tier == "default"

