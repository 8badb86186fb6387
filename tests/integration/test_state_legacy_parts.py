"""A context stored before parts of the other side were refused (3f38c2b) is still answered.

Such a part (an ``input_text`` in an assistant message, an ``output_text`` from a user or a tool)
was taken as text and stored as sent. A later turn folds the stored items into the request the
translator reads: refused there, the turn would be a 400 naming an ``input[k]`` its client never
sent, and the chain or conversation could never be continued. The items are put into the SQLite
file behind the service's back, as an older version left them, then continued through real
gunicorn; the client's own input with such a part is still OpenAI's 400."""
from __future__ import annotations

import asyncio
from typing import Any

from proxy.store import NewResponse, prepare_items
from proxy.store.sqlite_store import SQLiteStore
from tests.state_kit import KEY_A, error, post

_CALL = {"type": "function_call", "call_id": "call_1", "name": "f", "arguments": "{}"}
LEGACY = [
    {"type": "message", "role": "user", "content": [{"type": "output_text", "text": "user said A"}]},
    {"type": "message", "role": "assistant", "content": [{"type": "input_text", "text": "assistant said B"}]},
    {"type": "message", "role": "developer", "content": [{"type": "refusal", "refusal": "developer said C"}]},
    _CALL,
    {"type": "function_call_output", "call_id": "call_1", "output": [{"type": "output_text", "text": "tool said D"}]},
]
TEXTS = ("user said A", "assistant said B", "developer said C", "tool said D")


def _seed(path: str) -> tuple[str, str]:
    """A response and a conversation holding ``LEGACY``, owned by ``KEY_A``: their ids."""
    store = SQLiteStore(path)
    owner = store.owner_of(KEY_A)
    response_id = "resp_" + "1" * 32

    async def scenario() -> str:
        try:
            await store.put_response(owner, NewResponse(response_id, b"{}", prepare_items(LEGACY), []))
            conv = await store.create_conversation(owner)
            await store.append_conversation_items(owner, conv["id"], prepare_items(LEGACY, "items"))
            return str(conv["id"])
        finally:
            await store.aclose()

    return response_id, asyncio.run(scenario())


def _upstream_text(mock: Any) -> str:
    return str(mock.requests("mock-echo")[-1]["body"]["messages"])


def test_a_context_stored_with_parts_of_the_other_side_is_still_answered(proxy_factory, mock, tmp_path):
    path = str(tmp_path / "legacy.sqlite3")
    response_id, conv = _seed(path)
    svc = proxy_factory(RESPONSE_STORE_URL=f"sqlite:///{path}")
    for context in ({"previous_response_id": response_id}, {"conversation": conv}):
        r = post(svc.url, "/v1/responses", {"model": "mock-echo", "input": "and now?", "stream": False, **context})
        assert r.status_code == 200, (context, r.text)
        sent = _upstream_text(mock)
        assert all(text in sent for text in TEXTS), (context, sent)
    # The same parts in the client's own input are still refused, as OpenAI refuses them, on a
    # chain or a conversation too, named as the client sent them (input[0]: its first item).
    for context in ({}, {"previous_response_id": response_id}, {"conversation": conv}):
        r = post(svc.url, "/v1/responses", {"model": "mock-echo", "input": LEGACY[1:2], **context})
        err = error(r, 400)
        assert (err["code"], err["param"]) == ("invalid_value", "input[0].content[0]"), (context, err)
