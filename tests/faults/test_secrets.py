"""Secrets: client keys never in logs (except masked) nor in error bodies; prompts never
in logs at INFO; operator mode; refusing to start with an unsafe key setup."""
from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from proxy.devtools import ROOT, free_port
from tests.faults.helpers import split_sse, stream
from tests.http import error_of, post


def _key() -> str:
    return "sk-fault-" + os.urandom(12).hex()


def _masked(key: str) -> str:
    return f"{key[:6]}…{key[-4:]}"


def test_client_key_only_masked_in_logs_and_never_in_error_bodies(fproxy, mock):
    key = _key()
    echo = f"Incorrect API key provided: {key}. You can find your key at example.com."
    mock.script("sec-ok", {"text": "fine"})
    mock.script("sec-401", {"status": 401, "error": {"message": echo, "code": "invalid_api_key"}})
    mock.script("sec-500", {"status": 500, "error": {"message": echo}})
    mock.script("sec-429", {"status": 429, "error": {"message": echo}})
    mock.script("sec-plain", {"status": 403, "raw": [echo], "content_type": "text/plain"})

    assert post(fproxy.url, {"model": "sec-ok", "input": "x"}, key=key).status_code == 200
    assert stream(fproxy.url, {"model": "sec-ok", "input": "x"}, key=key).status == 200
    assert post(fproxy.url, {"model": "sec-ok", "input": "x"}, headers={"X-Api-Key": key}, key=None).status_code == 200
    bodies = {}
    for model, status in (("sec-401", 401), ("sec-500", 502), ("sec-429", 429), ("sec-plain", 403)):
        for streaming in (False, True):
            r = post(fproxy.url, {"model": model, "input": "x", "stream": streaming}, key=key)
            assert r.status_code == status, r.text
            error_of(r)
            bodies[(model, streaming)] = r.text
    leaks = [k for k, text in bodies.items() if key in text]
    assert not leaks, f"the client key is in the error bodies of {leaks}"
    assert _masked(key) in bodies[("sec-401", False)]  # scrubbed, not dropped

    time.sleep(0.5)
    log = fproxy.log_text()
    assert key not in log, "the client key appears in the proxy log"
    assert key[9:] not in log, "the secret part of the client key appears in the proxy log"
    assert _masked(key) in log, "the request_completed line should name the masked key"


def test_a_client_key_sent_where_a_logged_value_goes_is_masked_in_the_log(fproxy, mock):
    """Found by the live fuzz: the metrics line and the warnings log the client's X-Request-ID,
    model and the values a warning names verbatim, so a key sent there was in the log."""
    key = _key()
    mock.script(key, {"text": "fine"})
    mock.script("sec-where", {"text": "fine"}, {"text": "fine"}, {"text": "fine"})
    rid = "sec-where-" + os.urandom(4).hex()
    sent = [
        post(fproxy.url, {"model": "sec-where", "input": "x"}, key=key, headers={"X-Request-ID": key}),
        post(fproxy.url, {"model": key, "input": "x"}, key=key, headers={"X-Request-ID": rid}),
        post(fproxy.url, {"model": "sec-where", "input": "x", "tool_choice": {"type": key}}, key=key),
        post(fproxy.url, {"model": "sec-where", "input": "x"}, key=None, headers={"X-Api-Key": key, "X-Request-ID": "p" + key}),
        httpx.get(fproxy.url + "/v1/responses/resp_nope", headers={"Authorization": f"Bearer {key}", "X-Request-ID": key}),
    ]
    assert [r.status_code for r in sent] == [200, 200, 200, 200, 404], [r.text[:200] for r in sent]
    time.sleep(0.5)
    log = fproxy.log_text()
    assert key not in log and key[9:] not in log, "the client key appears in the proxy log"
    assert f"model={_masked(key)}, " in log and f"request_id={rid}" in log
    assert log.count(f"request_id={_masked(key)}") == 2 and f"request_id=p{_masked(key)}" in log
    assert f"tool_choice of built-in type '{_masked(key)}' replaced by 'auto'" in log


@pytest.mark.parametrize("streaming", [False, True], ids=["json", "sse"])
def test_client_key_echoed_mid_stream_is_not_relayed(fproxy, mock, streaming):
    """A backend that fails after the 200 (an ``{"error": …}`` chunk) and echoes the key in it."""
    key = _key()
    mock.script("sec-mid", {"text": "abcdefgh", "error_mid_stream": {"message": f"bad key {key}", "after": 2}})
    body = {"model": "sec-mid", "input": "x", "stream": streaming}
    r = post(fproxy.url, body, key=key)
    if streaming:
        events, _, done = split_sse(r.content)
        assert events[-1]["type"] == "response.failed" and done, events[-1]["type"]
    else:
        assert r.status_code == 502, r.text
        error_of(r)
    assert key not in r.text, f"the backend's echo of the client key reached the client: {r.text[-400:]}"


def test_prompt_text_never_logged_at_info(fproxy, mock):
    marker = "PROMPT-" + os.urandom(8).hex()
    mock.script("sec-prompt", {"text": f"reply {marker}"})
    mock.script("sec-prompt-err", {"status": 400, "error": {"message": f"bad prompt: {marker}"}})
    mock.script("sec-prompt-500", {"status": 500, "error": {"message": f"failed on {marker}"}})
    rich = {
        "model": "sec-prompt",
        "instructions": f"system {marker}",
        "input": [
            {"role": "user", "content": [{"type": "input_text", "text": f"user {marker}"}]},
            {"type": "function_call", "call_id": "c1", "name": "f", "arguments": f'{{"q": "{marker}"}}'},
            {"type": "function_call_output", "call_id": "c1", "output": f"out {marker}"},
        ],
        "tools": [{"type": "function", "name": "f", "description": f"tool {marker}", "parameters": {"type": "object"}}],
    }
    assert post(fproxy.url, rich).status_code == 200
    assert stream(fproxy.url, rich).status == 200
    assert post(fproxy.url, {**rich, "model": "sec-prompt-err"}).status_code == 400
    assert post(fproxy.url, {**rich, "model": "sec-prompt-500"}).status_code == 502
    # Invalid requests whose bad value is the prompt itself.
    for bad in (
        {"model": "sec-prompt", "input": [{"type": "bogus", "text": marker}]},
        {"model": "sec-prompt", "input": marker, "temperature": marker},
        {"model": f"m {marker}", "input": marker},
        {"model": "sec-prompt", "input": [{"role": marker, "content": marker}]},
    ):
        assert post(fproxy.url, bad).status_code == 400
    time.sleep(0.5)
    lines = [line for line in fproxy.log_text().splitlines() if marker in line]
    assert not lines, "prompt text in the log at INFO:\n" + "\n".join(lines[:5])


def test_operator_key_mode(proxy_factory, mock):
    operator = "sk-operator-" + os.urandom(12).hex()
    allowed = [_key(), _key()]
    svc = proxy_factory(BACKEND_API_KEY=operator, PROXY_API_KEYS=",".join(allowed))
    mock.script("sec-op", {"text": "ok"})
    for key in allowed:
        assert post(svc.url, {"model": "sec-op", "input": "x"}, key=key).status_code == 200
    assert post(svc.url, {"model": "sec-op", "input": "x"}, key=None, headers={"X-Api-Key": allowed[0]}).status_code == 200
    records = mock.requests("sec-op")
    assert len(records) == 3
    for rec in records:
        assert rec["headers"]["authorization"] == f"Bearer {operator}"
        values = " ".join(rec["headers"].values())
        assert not any(k in values for k in allowed), "a client key was forwarded in operator mode"

    refused = [
        {},
        {"Authorization": "Bearer " + _key()},
        {"Authorization": f"Bearer {operator}"},  # the operator key is not a client key
        {"Authorization": f"Basic {allowed[0]}"},
        {"Authorization": f"Bearer {allowed[0][:-1]}"},
        {"X-Api-Key": allowed[0] + "x"},
    ]
    for headers in refused:
        r = post(svc.url, {"model": "sec-op", "input": "x"}, key=None, headers=headers)
        assert r.status_code == 401, (headers, r.text)
        err = error_of(r)
        assert operator not in r.text and not any(k in r.text for k in allowed)
        assert err["type"] in ("authentication_error", "invalid_request_error"), err
    assert len(mock.requests("sec-op")) == 3, "a refused request reached the backend"
    time.sleep(0.3)
    log = svc.log_text()
    assert operator not in log and not any(k in log for k in allowed)


def _start_failing(env: dict[str, str]) -> subprocess.CompletedProcess:
    full = dict(os.environ)
    full.update({"HOST_PORT": str(free_port()), "BACKEND_URL": "http://127.0.0.1:9/v1", "WEB_CONCURRENCY": "2"})
    full.pop("PORT", None)
    full.update(env)
    gunicorn = str(Path(sys.executable).with_name("gunicorn"))
    return subprocess.run(
        [gunicorn, "-c", "conf/gunicorn.conf.py"], cwd=ROOT, env=full, capture_output=True, text=True, timeout=30
    )


@pytest.mark.parametrize(
    "env,expect",
    [
        ({"BACKEND_API_KEY": "sk-operator-abcdefghijkl"}, "PROXY_API_KEYS"),
        ({"BACKEND_API_KEY": "sk-operator-abcdefghijkl", "PROXY_API_KEYS": " , "}, "PROXY_API_KEYS"),
        ({"FORWARD_HEADERS": "x-ok,Cookie"}, "cookie"),
        ({"FORWARD_HEADERS": "authorization"}, "authorization"),
    ],
    ids=["no-proxy-keys", "blank-proxy-keys", "forward-cookie", "forward-authorization"],
)
def test_unsafe_key_setup_refuses_to_start(env, expect):
    done = _start_failing(env)
    assert done.returncode != 0, done.stderr[-2000:]
    assert expect in done.stderr, done.stderr[-2000:]
    assert "sk-operator-abcdefghijkl" not in done.stderr + done.stdout
    print(f"\n{sorted(env)} -> exit {done.returncode}: {done.stderr.strip().splitlines()[-1]}")
