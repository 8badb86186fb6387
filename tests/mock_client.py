"""``MockControl``: script the mock backend (``python -m proxy.mock``) and read what it got.

The process itself is started with ``proxy.devtools.start_mock``, like every
other service in the tests.
"""
from __future__ import annotations

from typing import Any

import httpx


class MockControl:
    """The mock backend's control API (``/_mock/*``) at ``url``."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.client = httpx.Client(base_url=url, timeout=10.0)

    def script(self, model: str, *responses: dict[str, Any], replace: bool = False) -> None:
        """Queue ``responses`` for requests with this ``model`` (``"*"``: any model)."""
        r = self.client.post("/_mock/script", json={"model": model, "responses": list(responses), "replace": replace})
        r.raise_for_status()

    def script_models(self, *responses: dict[str, Any], replace: bool = False) -> None:
        """Queue ``responses`` for the models endpoints (``GET /v1/models``, ``/v1/models/{id}``)."""
        r = self.client.post("/_mock/models", json={"responses": list(responses), "replace": replace})
        r.raise_for_status()

    def requests(self, model: str | None = None) -> list[dict[str, Any]]:
        """Recorded chat requests in arrival order."""
        r = self.client.get("/_mock/requests", params={"model": model} if model is not None else None)
        r.raise_for_status()
        return r.json()

    def reset(self) -> None:
        self.client.post("/_mock/reset").raise_for_status()

    def close(self) -> None:
        self.client.close()
