"""``/v1/responses/{id}`` (GET, DELETE) and ``…/{id}/cancel``, ``…/{id}/input_items``.

The proxy is stateless: it stores no response, so every id is unknown. Clients
get OpenAI's own answer for an unknown id — a 404 naming it — with a message
that says why, instead of a bare "unknown path".
"""
from __future__ import annotations

import falcon.asgi

from ..errors import ProxyError

# OpenAI endpoints that share the /v1/responses/{id} shape but are not ids.
_OTHER_ENDPOINTS = frozenset({"compact", "input_tokens"})


class StoredResponseResource:
    async def on_get(
        self, req: falcon.asgi.Request, resp: falcon.asgi.Response, response_id: str, action: str = ""
    ) -> None:
        if response_id in _OTHER_ENDPOINTS and not action:
            raise ProxyError(
                404,
                f"{req.method} /v1/responses/{response_id} is not supported by this proxy: it serves "
                "POST /v1/responses (translated to Chat Completions) and nothing that needs stored state.",
                code="not_found",
            )
        raise ProxyError(
            404,
            f"No response found with id '{response_id}': this proxy is stateless and stores no "
            "responses (send the conversation as `input` instead).",
            param="response_id",
            code="not_found",
        )

    on_delete = on_get
    on_post = on_get
    on_get_action = on_post_action = on_get
