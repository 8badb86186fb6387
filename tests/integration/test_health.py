"""``/health`` and the breaker metrics on the real service, with the breaker tripped by the mock backend.

``/health`` and ``/metrics`` read the same shared table; both are checked
against each other here. The host breaker is tripped by two models failing
with no success between, which opens it whether or not the request edge
passes models to the breakers yet (per-model tests: tests/faults/test_breaker.py).
"""
from __future__ import annotations

import time

import httpx

from tests.http import error_of, health, post
from tests.integration.test_metrics import P, scrape


def breaker_sample(samples: dict, name: str, **labels: str) -> float:
    want = tuple(sorted({"scope": "host", "model": "", **labels}.items()))
    return samples[(P + name, want)]


def test_healthy_answer_has_the_reference_keys_and_the_open_models(proxy):
    status, doc = health(proxy.url)
    assert status == 200
    assert doc == {
        "status": "healthy",
        "circuit_breaker": {"enabled": True, "is_open": False, "consecutive_failures": 0},
        "open_models": [],
    }


def test_a_tripped_host_breaker_shows_in_health_and_metrics(proxy_factory, mock):
    svc = proxy_factory(CIRCUIT_BREAKER_THRESHOLD="2", CIRCUIT_BREAKER_RECOVERY_SECS="1")
    s = scrape(svc.url)
    assert s[(P + "breaker_enabled", ())] == 1
    assert breaker_sample(s, "breaker_state", state="closed") == 1
    # Two models failing with no success between: the backend is down for all models.
    for model in ("hl-fail-a", "hl-fail-b"):
        mock.script(model, {"status": 500, "error": {"message": "down"}})
        assert post(svc.url, {"model": model, "input": "x"}).status_code == 502
    status, doc = health(svc.url)
    assert status == 503 and doc["status"] == "unhealthy", doc
    assert doc["circuit_breaker"] == {"enabled": True, "is_open": True, "consecutive_failures": 2}
    r = post(svc.url, {"model": "hl-other", "input": "x"})
    assert r.status_code == 503 and error_of(r)["code"] == "circuit_open"
    s = scrape(svc.url)
    assert breaker_sample(s, "breaker_state", state="open") == 1
    assert breaker_sample(s, "breaker_state", state="closed") == 0
    assert breaker_sample(s, "breaker_opens_total") == 1
    assert breaker_sample(s, "breaker_consecutive_failures") == 2

    time.sleep(1.5)  # recovery over: the balancer must let the probe in
    status, doc = health(svc.url)
    assert status == 200 and doc["status"] == "recovering", doc
    assert post(svc.url, {"model": "hl-ok", "input": "x"}).status_code == 200  # the probe
    status, doc = health(svc.url)
    assert status == 200 and doc["status"] == "healthy", doc
    s = scrape(svc.url)
    assert breaker_sample(s, "breaker_state", state="closed") == 1
    assert (breaker_sample(s, "breaker_probes_total"), breaker_sample(s, "breaker_recoveries_total")) == (1, 1)


def test_disabled_breaker_in_health_and_metrics(proxy_factory):
    svc = proxy_factory(CIRCUIT_BREAKER_ENABLED="false", WEB_CONCURRENCY="1")
    status, doc = health(svc.url)
    assert status == 200 and doc["circuit_breaker"]["enabled"] is False and doc["open_models"] == []
    s = scrape(svc.url)
    assert s[(P + "breaker_enabled", ())] == 0
    assert breaker_sample(s, "breaker_state", state="closed") == 1
    assert httpx.head(svc.url + "/health").status_code == 200
