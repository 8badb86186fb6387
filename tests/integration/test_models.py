"""``GET /v1/models`` and ``GET /v1/models/{id}`` through the real service, driven by the openai SDK.

Cache tests run one worker (the cache is per worker) and count what reached
the mock backend.
"""
from __future__ import annotations

import time

import httpx
import openai
import pytest

from proxy import settings as settings_mod
from proxy.devtools import free_port
from proxy.mock.models import BUILTIN_MODELS
from tests.conftest import API_KEY
from tests.http import auth, error_of

OTHER_KEY = "sk-other-key-9876543210-SECRET"


def sdk(url: str, key: str = API_KEY) -> openai.OpenAI:
    return openai.OpenAI(base_url=url + "/v1", api_key=key, max_retries=0, timeout=30)


def model_requests(mock) -> list[dict]:
    return [r for r in mock.requests() if "/models" in r["path"]]


def get(url: str, path: str, key: str | None = API_KEY) -> httpx.Response:
    return httpx.get(url + path, headers=auth(key), timeout=30)


@pytest.fixture
def one_worker(proxy_factory):
    """A proxy of one worker with the default cache (60 s)."""
    return proxy_factory(WEB_CONCURRENCY="1")


@pytest.fixture
def uncached(proxy_factory):
    return proxy_factory(WEB_CONCURRENCY="1", MODELS_CACHE_SECS="0", BACKEND_TIMEOUT_SECS="1")


def test_list_and_retrieve(proxy):
    with sdk(proxy.url) as client:
        models = client.models.list()
        assert [m.id for m in models.data] == list(BUILTIN_MODELS)
        assert all(m.object == "model" and m.owned_by == "mock" for m in models.data)
        one = client.models.retrieve("mock-echo")
        assert (one.id, one.object, one.owned_by) == ("mock-echo", "model", "mock")
        assert client.models.retrieve("mock-stream-50").id == "mock-stream-50"


def test_unknown_id_is_the_backends_404(proxy):
    with sdk(proxy.url) as client, pytest.raises(openai.NotFoundError) as exc:
        client.models.retrieve("no-such-model")
    err = exc.value.body
    assert err["message"] == "The model 'no-such-model' does not exist"
    assert (err["code"], err["param"]) == ("model_not_found", "model")


def test_ids_with_slashes_reach_the_backend(uncached, mock):
    mock.script_models({"data": ["org/model-1", "mock-echo"]})
    with sdk(uncached.url) as client:
        assert client.models.retrieve("org/model-1").id == "org/model-1"
    assert model_requests(mock)[-1]["path"] == "/v1/models/org/model-1"


def test_a_backend_without_retrieve_is_answered_from_its_list(uncached, mock):
    """vLLM and llama.cpp serve the list only: their 404 for a listed id is not the last word."""
    mock.script_models({"status": 404, "error": {"message": "Not Found"}}, {"data": ["served-model"]})
    with sdk(uncached.url) as client:
        assert client.models.retrieve("served-model").id == "served-model"
    mock.script_models({"status": 404, "error": {"message": "Not Found"}}, {"data": ["served-model"]}, replace=True)
    with sdk(uncached.url) as client, pytest.raises(openai.NotFoundError) as exc:
        client.models.retrieve("unlisted")
    assert exc.value.body["message"] == "Not Found"  # the backend's own 404, passed through


def test_one_backend_request_per_key_while_cached(one_worker, mock):
    with sdk(one_worker.url) as client:
        client.models.list()
        client.models.list()
        assert len(model_requests(mock)) == 1
        client.models.retrieve("mock-echo")
        client.models.retrieve("mock-echo")
        assert len(model_requests(mock)) == 2
    with sdk(one_worker.url, OTHER_KEY) as other:
        other.models.list()
    seen = model_requests(mock)
    assert len(seen) == 3
    assert [r["headers"]["authorization"] for r in seen] == [f"Bearer {API_KEY}"] * 2 + [f"Bearer {OTHER_KEY}"]


def test_cache_expires_and_can_be_off(proxy_factory, mock):
    short = proxy_factory(WEB_CONCURRENCY="1", MODELS_CACHE_SECS="1")
    with sdk(short.url) as client:
        client.models.list()
        client.models.list()
        assert len(model_requests(mock)) == 1
        time.sleep(1.3)
        client.models.list()
        assert len(model_requests(mock)) == 2
    mock.reset()
    off = proxy_factory(WEB_CONCURRENCY="1", MODELS_CACHE_SECS="0")
    with sdk(off.url) as client:
        for _ in range(3):
            client.models.list()
    assert len(model_requests(mock)) == 3


def test_backend_errors_are_mapped_as_for_post(uncached, mock):
    mock.script_models({"status": 500, "error": {"message": "exploded"}})
    r = get(uncached.url, "/v1/models")
    err = error_of(r)
    assert r.status_code == 502 and (err["type"], err["code"]) == ("server_error", "backend_error")
    assert "exploded" in err["message"]
    mock.script_models({"status": 401, "error": {"message": "bad key", "code": "invalid_api_key"}}, replace=True)
    r = get(uncached.url, "/v1/models")
    assert r.status_code == 401 and error_of(r)["message"] == "bad key" and error_of(r)["code"] == "invalid_api_key"
    mock.script_models({"status": 429, "headers": {"retry-after": "7"}}, replace=True)
    r = get(uncached.url, "/v1/models")
    assert r.status_code == 429 and r.headers["retry-after"] == "7"
    mock.script_models({"raw": ["<html>not json</html>"]}, replace=True)
    r = get(uncached.url, "/v1/models")
    assert r.status_code == 502 and error_of(r)["code"] == "backend_error"
    mock.script_models({"first_byte_delay": 3, "data": ["late"]}, replace=True)
    r = get(uncached.url, "/v1/models")
    assert r.status_code == 504 and error_of(r)["code"] == "backend_timeout"


def test_errors_are_not_cached(one_worker, mock):
    mock.script_models({"status": 500}, {"data": ["back"]})
    assert get(one_worker.url, "/v1/models").status_code == 502
    r = get(one_worker.url, "/v1/models")
    assert r.status_code == 200 and [m["id"] for m in r.json()["data"]] == ["back"]


def test_unreachable_backend_is_502(proxy_factory):
    svc = proxy_factory(backend_url=f"http://127.0.0.1:{free_port()}/v1", WEB_CONCURRENCY="1")
    r = get(svc.url, "/v1/models")
    assert r.status_code == 502 and error_of(r)["code"] == "backend_unreachable"


def test_keys(uncached, mock):
    assert get(uncached.url, "/v1/models", key=None).status_code == 401
    assert error_of(get(uncached.url, "/v1/models/mock-echo", key=None))["code"] == "missing_api_key"
    assert model_requests(mock) == []
    mock.script_models({"status": 400, "error": {"message": f"key {API_KEY} is not allowed here"}})
    r = get(uncached.url, "/v1/models")
    assert r.status_code == 400
    assert API_KEY not in r.text and "sk-tes…CRET" in error_of(r)["message"]  # a backend's echo, masked


def test_operator_mode_sends_the_operator_key(proxy_factory, mock):
    svc = proxy_factory(
        WEB_CONCURRENCY="1", BACKEND_API_KEY="sk-operator-key-000000000000", PROXY_API_KEYS="client-key-1,client-key-2"
    )
    assert get(svc.url, "/v1/models", key="not-a-proxy-key").status_code == 401
    assert model_requests(mock) == []
    for key in ("client-key-1", "client-key-2"):
        r = get(svc.url, "/v1/models", key=key)
        assert r.status_code == 200, r.text
    seen = model_requests(mock)
    assert len(seen) == 1, "one upstream key, one cache entry"
    assert seen[0]["headers"]["authorization"] == "Bearer sk-operator-key-000000000000"


def test_models_url_and_cache_setting():
    load = settings_mod.load
    assert load({}).backend_models_url == "https://llm.chutes.ai/v1/models"
    assert load({"BACKEND_URL": "http://h:8000/v1"}).backend_models_url == "http://h:8000/v1/models"
    assert load({"BACKEND_URL": "http://h/api/v1/chat/completions/"}).backend_models_url == "http://h/api/v1/models"
    assert load({}).models_cache_secs == 60
    assert load({"MODELS_CACHE_SECS": "0"}).models_cache_secs == 0
    with pytest.raises(settings_mod.SettingsError, match="MODELS_CACHE_SECS"):
        load({"MODELS_CACHE_SECS": "-1"})
