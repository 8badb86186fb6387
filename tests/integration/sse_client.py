"""Raw HTTP access to the proxy, for checks the SDK hides (exact SSE bytes, headers)."""
from __future__ import annotations

import httpx

from tests.conftest import API_KEY


def post(base: str, body: dict | bytes, *, key: str | None = API_KEY, headers: dict | None = None, timeout: float = 30) -> httpx.Response:
    h = {"Authorization": f"Bearer {key}"} if key else {}
    h.update(headers or {})
    if isinstance(body, bytes):
        h.setdefault("Content-Type", "application/json")
        return httpx.post(base + "/v1/responses", content=body, headers=h, timeout=timeout)
    return httpx.post(base + "/v1/responses", json=body, headers=h, timeout=timeout)


def stream_raw(base: str, body: dict, *, key: str = API_KEY, timeout: float = 30) -> tuple[httpx.Response, bytes]:
    with httpx.stream(
        "POST", base + "/v1/responses", json={**body, "stream": True},
        headers={"Authorization": f"Bearer {key}"}, timeout=timeout,
    ) as r:
        return r, r.read()
