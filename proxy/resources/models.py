"""``GET /v1/models`` and ``GET /v1/models/{id}``: the backend's own answers, cached.

Forwarded to the models endpoint beside ``BACKEND_URL`` (``…/v1/chat/completions``
→ ``…/v1/models``) with the key ``POST /v1/responses`` would send (the
client's, or the operator's after checking the client's proxy key). Errors are
those of ``POST``: the backend's 4xx passed through with its message, its
5xx → 502, unreachable → 502, too slow (``BACKEND_TIMEOUT_SECS``) → 504.

Many chat backends (vLLM, llama.cpp) serve the list but not one model by id:
when the backend answers 404 for an id, the entry is looked up in its list,
and the backend's 404 is passed through only if the list lacks it too.

Successful answers are cached per worker for ``MODELS_CACHE_SECS`` (0: off),
keyed by a hash of the upstream key — never the key itself — so one client's
list is never shown to another key, and bounded in size.
"""
from __future__ import annotations

import asyncio
import hashlib
import time
from collections import OrderedDict
from typing import Any
from urllib.parse import quote

import falcon
import falcon.asgi
import httpx
import orjson

from ..failures import Cause, Failure
from ..logs import mask_key
from ..runtime import Runtime
from ..upstream import _read_bounded, _status_error, _transport_error
from .auth import client_key, scrub, upstream_key

__all__ = ["ModelsCache", "ModelsResource"]

_MAX_ANSWER_BYTES = 16 * 1024 * 1024
_CACHE_ENTRIES = 1024
# RFC 3986 segment characters other than "/": an id is one path segment, as the openai SDK sends it.
_SEGMENT_SAFE = "!$&'()*+,;=:@-._~"


class ModelsCache:
    """Answers by (key hash, path), each kept ``ttl`` seconds; the least recently used dropped past ``size``."""

    def __init__(self, ttl: float, size: int = _CACHE_ENTRIES) -> None:
        self._ttl = ttl
        self._size = size
        self._entries: OrderedDict[tuple[bytes, str], tuple[float, bytes]] = OrderedDict()

    def get(self, key: tuple[bytes, str]) -> bytes | None:
        hit = self._entries.get(key)
        if hit is None:
            return None
        if hit[0] <= time.monotonic():
            del self._entries[key]
            return None
        self._entries.move_to_end(key)
        return hit[1]

    def put(self, key: tuple[bytes, str], body: bytes) -> None:
        if self._ttl <= 0:
            return
        self._entries[key] = (time.monotonic() + self._ttl, body)
        self._entries.move_to_end(key)
        while len(self._entries) > self._size:
            self._entries.popitem(last=False)


class ModelsResource:
    def __init__(self, runtime: Runtime) -> None:
        self._rt = runtime
        self._cache = ModelsCache(runtime.settings.models_cache_secs)

    async def on_get(self, req: falcon.asgi.Request, resp: falcon.asgi.Response) -> None:
        key = self._key(req)
        body = await self._fetch("", key)
        _json(resp, body)

    async def on_get_model(self, req: falcon.asgi.Request, resp: falcon.asgi.Response, model_id: str) -> None:
        req.context.meta.model = model_id if model_id.isprintable() and len(model_id) <= 256 else "-"
        key = self._key(req)
        try:
            body = await self._fetch("/" + quote(model_id, safe=_SEGMENT_SAFE), key)
        except Failure as exc:
            if exc.http_status != 404:
                raise
            entry = await self._from_list(model_id, key)
            if entry is None:
                raise
            body = orjson.dumps(entry)
        _json(resp, body)

    def _key(self, req: falcon.asgi.Request) -> str:
        settings = self._rt.settings
        key = client_key(req, settings)
        req.context.meta.key = mask_key(key)
        return upstream_key(key, settings)

    async def _from_list(self, model_id: str, key: str) -> dict[str, Any] | None:
        """The list's entry for ``model_id``, or None (also when the list itself fails)."""
        try:
            doc = orjson.loads(await self._fetch("", key))
        except (Failure, orjson.JSONDecodeError):
            return None
        data = doc.get("data") if isinstance(doc, dict) else None
        for entry in data if isinstance(data, list) else ():
            if isinstance(entry, dict) and entry.get("id") == model_id:
                return entry
        return None

    async def _fetch(self, suffix: str, key: str) -> bytes:
        """The backend's 200 body for ``GET <models URL><suffix>``: a JSON object, from the cache if fresh."""
        cache_key = (hashlib.sha256(key.encode()).digest(), suffix)
        body = self._cache.get(cache_key)
        if body is not None:
            return body
        settings = self._rt.settings
        try:
            async with asyncio.timeout(settings.backend_timeout_secs):
                body = await self._get(settings.backend_models_url + suffix, key)
        except TimeoutError:
            raise Failure(
                Cause.BACKEND_TIMEOUT, "The backend did not answer in time.", "backend_timeout", kind="timeout"
            ) from None
        except Failure as exc:
            exc.message = scrub(exc.message, key)  # a backend may echo the key it was given
            raise
        self._cache.put(cache_key, body)
        return body

    async def _get(self, url: str, key: str) -> bytes:
        upstream = self._rt.upstream
        assert upstream is not None, "lifespan startup did not run"
        client = upstream.client
        headers = {"authorization": f"Bearer {key}", "accept": "application/json", "accept-encoding": "identity"}
        try:
            response = await client.send(client.build_request("GET", url, headers=headers), stream=True)
        except httpx.HTTPError as exc:  # (the transport maps aiohttp's failures: proxy.transport)
            raise _transport_error(exc) from None
        try:
            if response.status_code != 200:
                raise _status_error(response, await _read_bounded(response))
            body = await _read_all(response)
        except httpx.HTTPError as exc:
            raise _malformed(f"The backend's answer broke off ({type(exc).__name__}).") from None
        finally:
            await response.aclose()
        try:
            doc = orjson.loads(body)
        except orjson.JSONDecodeError:
            doc = None
        if not isinstance(doc, dict):
            raise _malformed("The backend's models answer is not a JSON object.")
        return body


async def _read_all(response: httpx.Response) -> bytes:
    body = bytearray()
    async for chunk in response.aiter_bytes():
        body += chunk
        if len(body) > _MAX_ANSWER_BYTES:
            raise _malformed("The backend's models answer exceeds 16 MB.")
    return bytes(body)


def _json(resp: falcon.asgi.Response, body: bytes) -> None:
    resp.content_type = falcon.MEDIA_JSON
    resp.data = body


def _malformed(message: str) -> Failure:
    return Failure(Cause.BACKEND_FAILED, message, "backend_error", kind="malformed")
