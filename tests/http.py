"""Plain HTTP against the proxy, for what the SDK hides (status codes, headers,
exact SSE bytes); every call on a new connection (a fresh ``httpx`` client)."""
from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import httpx

from tests.conftest import API_KEY


def wait_for(predicate: Callable[[], Any], timeout: float = 10.0, interval: float = 0.05, what: str = "condition") -> Any:
    """Poll ``predicate`` until it returns something truthy; return that value."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:g} s waiting for {what}")
        time.sleep(interval)


def auth(key: str | None = API_KEY) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"} if key else {}


def post(
    base: str,
    body: dict | bytes,
    *,
    key: str | None = API_KEY,
    headers: dict[str, str] | None = None,
    timeout: float = 30.0,
    path: str = "/v1/responses",
) -> httpx.Response:
    """POST on a new connection (``httpx.post`` makes a fresh client)."""
    h = auth(key)
    h.update(headers or {})
    if isinstance(body, (bytes, bytearray)):
        h.setdefault("Content-Type", "application/json")
        return httpx.post(base + path, content=bytes(body), headers=h, timeout=timeout)
    return httpx.post(base + path, json=body, headers=h, timeout=timeout)


def health(base: str) -> tuple[int, dict]:
    r = httpx.get(base + "/health", timeout=10)
    return r.status_code, r.json()


def error_of(r: httpx.Response) -> dict:
    """The OpenAI-shaped error of a response, asserting the shape."""
    doc = r.json()
    assert set(doc) == {"error"}, doc
    err = doc["error"]
    assert set(err) == {"message", "type", "param", "code"}, err
    assert isinstance(err["message"], str) and err["message"], err
    assert isinstance(err["type"], str) and err["type"], err
    return err


def stream_raw(base: str, body: dict, *, key: str = API_KEY, timeout: float = 30) -> tuple[httpx.Response, bytes]:
    with httpx.stream(
        "POST", base + "/v1/responses", json={**body, "stream": True},
        headers={"Authorization": f"Bearer {key}"}, timeout=timeout,
    ) as r:
        return r, r.read()
