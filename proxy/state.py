"""What a request stands on in the store, and what it leaves there.

``stand()`` runs before translation. It reads from the store what the request
names — the stored items of its ``item_reference``s, the history of its
``previous_response_id``, the items of its ``conversation`` — one read per kind
used, and folds them into the body the translator sees
(``proxy.translate.history``): the translator then translates one ordinary
request whose ``input`` is the whole conversation. Every transport (SSE and
JSON, the WebSocket mode, compaction) calls it, so chaining means one thing.

``Standing.remember`` is the Exchange's ``on_terminal``: it runs before the
terminal event is sent, and stores the response with its own input and output
items and appends them to its conversation. Once a client has seen an answer,
any worker of any instance sharing the store finds it. A failed write does not
fail an answer the model already gave: it is logged (keys never appear in store
errors) and counted in ``/metrics`` (``proxy.store.instrumented``).

Without a store (``RESPONSE_STORE_URL=none``) the body reaches the translator
as it came, and the translator refuses what it cannot honour without one.
"""
from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import orjson

from .errors import ProxyError, invalid_request
from .failures import TAXONOMY, Cause
from .store import (
    ConversationContext,
    History,
    HistoryIncomplete,
    InvalidItem,
    Item,
    NewResponse,
    ObjectTooLarge,
    ResponsePending,
    Store,
    StoreError,
    StoreUnavailable,
    prepare_items,
)
from .store.base import client_caused
from .store.items import check_unique, encode_items, referenced_ids, resolve_references
from .store.shapes import InvalidParam, conversation_param
from .translate.compaction import TRIGGER, compacted_window
from .translate.history import CONTEXT_KEYS, input_items
from .translate.shapes import Response

log = logging.getLogger("proxy.state")


@dataclass(slots=True)
class Standing:
    """A request's footing: the body to translate, and what its stored response will hold."""

    body: dict[str, Any]
    store: Store | None = None
    owner: str = ""
    request_id: str = "-"
    previous_response_id: str | None = None
    conversation_id: str | None = None
    # The request's own input (references resolved); ``prepare()`` gives every item its id.
    own_input: list[Item] = field(default_factory=list)
    history: History | None = None
    conversation: ConversationContext | None = None
    # The Response's JSON as stored: the JSON transport sends these same bytes.
    stored_body: bytes | None = None
    # ``own_input`` encoded once by ``prepare()`` (its size is checked there; the store reuses it).
    input_json: bytes | None = None

    @property
    def keeps(self) -> bool:
        """Whether the response will be stored: there is a store and the request did not say
        ``store: false`` (which keeps nothing, ever — its conversation gets nothing either)."""
        return self.store is not None and self.body.get("store") is not False

    @property
    def context(self) -> list[Item]:
        """What came before the request's own input (the items a chain from it stands on)."""
        if self.history is not None:
            return self.history.items
        if self.conversation is not None:
            return self.conversation.items
        return []

    def prepare(self, *, trigger: bool = False) -> None:
        """Give the own input items their ids, once the request translated (so a bad item got
        the translator's precise 400 first), and refuse, before the backend is called, an input
        the store could not keep: over ``max_object_bytes`` by itself, or with the items of its
        conversation (413 ``object_too_large``). Without that check the answer would be given and
        then not stored — a chain or a conversation silently missing this turn. (An output that
        pushes a response over the bound can only be found after the fact: that write fails as
        a store fault does, logged and counted.) Only needed when something will be stored.

        ``trigger``: the request ends with a ``compaction_trigger``, an instruction rather than
        an item (no item type of the API lists one): its own input is what comes before it."""
        if trigger and self.own_input and self.own_input[-1].get("type") == TRIGGER:
            self.own_input = self.own_input[:-1]
        if not self.keeps:
            return
        assert self.store is not None
        try:
            self.own_input = prepare_items(self.own_input)
            # An item the conversation holds would not be appended again: the 400 OpenAI answers.
            check_unique(self.own_input, "input", self.conversation.items if self.conversation else ())
        except InvalidItem as exc:
            raise refusal(exc, self.request_id) from None
        self.input_json = encode_items(self.own_input)
        size, limit = len(self.input_json), self.store.max_object_bytes
        if size > limit:
            raise ProxyError(
                413, f"The input is {size} bytes once stored, over the response store's limit of {limit} bytes "
                "per object; send it with 'store': false, or in smaller parts.",
                param="input", code="object_too_large",
            )
        conversation = self.conversation
        if conversation is not None and conversation.size + size > limit:
            raise ProxyError(
                413, f"Conversation '{conversation.conversation_id}' holds {conversation.size} bytes of items; with "
                f"this input ({size} bytes) it would exceed the response store's limit of {limit} bytes per object.",
                param="conversation", code="object_too_large",
            )

    def next_history(self, response: Response) -> History:
        """The history a request chaining from ``response`` stands on."""
        output: list[Item] = list(response["output"])  # type: ignore[arg-type]  # items are JSON objects
        return History(response["id"], [*self.context, *self.own_input, *output])

    def compacted(self, response: Mapping[str, Any]) -> History:
        """The history a request chaining from a trigger's ``response`` stands on (its one output is
        the ``compaction`` item): this conversation compacted (``compaction.compacted_window``)."""
        return History(response["id"], compacted_window([*self.context, *self.own_input], response["output"][0]))

    async def remember(self, response: Mapping[str, Any], window: list[Item] | None = None) -> None:
        """Store the finished response and append its items to its conversation (module doc).
        ``window``: a trigger's response, stored as a chain of its own standing on it (``compacted``)."""
        store = self.store
        if store is None or not self.keeps:
            return
        output: list[Item] = response["output"]
        body = orjson.dumps(response)
        self.stored_body = body
        chained = window is None  # (a window stands for what the request was built on)
        record = NewResponse(
            response["id"], body, self.own_input, output, previous=self.history if chained else None,
            conversation=self.conversation if chained else None, input_json=self.input_json, window=window,
        )
        try:
            await store.put_response(self.owner, record)
            if self.conversation is not None:
                await append_turn(
                    store, self.owner, self.conversation.conversation_id, [*self.own_input, *output],
                    f"request_id={self.request_id}: response {response['id']}",
                )
        except StoreError as exc:
            log.warning(
                "request_id=%s: response %s answered but not stored (%s store): %s",
                self.request_id, response["id"], store.backend, exc,
            )


async def append_turn(store: Store, owner: str, conversation_id: str, items: list[Item], who: str) -> bool:
    """Append a finished response's items to its conversation (False: the conversation is gone).

    ``prepare()`` refused an input repeating an item of the conversation it read, before the
    backend was called. Only a request racing this one can have put one of these ids there since
    (both sent it): the conversation keeps that copy, the rest of the batch is appended after it,
    contiguous and in order (``skip_held``), and the skipped ids are logged — where a batch
    refused whole would lose this turn's answer from the conversation."""
    added = await store.append_conversation_items(owner, conversation_id, items, skip_held=True)
    if added is None:
        return False
    if len(added) < len(items):
        kept = {item["id"] for item in added}
        log.warning(
            "%s: conversation %s got items %s from another request meanwhile: they were not appended again "
            "(the other %d items were)", who, conversation_id, [i["id"] for i in items if i["id"] not in kept],
            len(added),
        )
    return True


async def stand(
    store: Store | None,
    key: str,
    body: dict[str, Any],
    *,
    request_id: str = "-",
    known: History | None = None,
    chaining: bool = False,
) -> Standing:
    """Read what ``body`` names from the store and return its ``Standing`` (module doc).

    What is read and kept belongs to ``store.owner_of(key)`` (the client's key:
    in operator mode its proxy key), never to the key itself.
    ``known`` is a history the caller already holds (a WebSocket connection's last
    response): a ``previous_response_id`` naming it costs no store read, and works
    without a store. ``chaining`` says the transport chains on its own (the
    WebSocket mode, compaction): without a store, a ``previous_response_id`` it
    does not know is then OpenAI's 404 ``previous_response_not_found`` (Codex
    answers that by resending the whole conversation), not the stateless 400.

    Raises ``ProxyError`` for references that are bad or not found (400, 404) —
    for another key's ids too, so ids leak nothing — and for the store's own
    faults, already in their HTTP form (``store_http_error``: 503 with
    ``Retry-After`` for an unavailable store…, logged here), so that every
    transport answers them as it answers any refusal: a WebSocket ``error`` frame
    with that status as much as an HTTP response.
    """
    try:
        return await _stand(store, key, body, request_id, known, chaining)
    except (StoreError, InvalidParam) as exc:
        raise refusal(exc, request_id) from None


async def _stand(
    store: Store | None, key: str, body: dict[str, Any], request_id: str, known: History | None, chaining: bool
) -> Standing:
    previous = body.get("previous_response_id")
    if store is None and (known is None or previous != known.response_id):
        if chaining and isinstance(previous, str):
            raise _previous_not_found(previous)
        return Standing(body)  # the translator refuses what needs a store
    conversation = body.get("conversation")
    if previous is not None and not isinstance(previous, str):
        raise invalid_request("Invalid 'previous_response_id': expected a string.", "previous_response_id")
    if previous is not None and conversation is not None:
        raise invalid_request(
            "'previous_response_id' and 'conversation' cannot be used together: a response continues "
            "either a stored response or a conversation.",
            "conversation",
        )
    owner = store.owner_of(key) if store is not None else ""
    standing = Standing(body, store=store, owner=owner, request_id=request_id)
    raw = body.get("input")
    refs = referenced_ids(raw)
    if refs and store is not None:
        raw = await with_references(store, owner, raw, refs)
    if previous:
        if known is not None and previous == known.response_id:
            history: History | None = known
        else:
            assert store is not None
            history = await store.get_history(owner, previous)
        if history is None:
            raise _previous_not_found(previous)
        standing.previous_response_id, standing.history = previous, history
    elif conversation is not None and store is not None:
        conversation_id = conversation_param(conversation)
        found = await store.conversation_context(owner, conversation_id)
        if found is None:
            raise ProxyError(
                404, f"Conversation with id '{conversation_id[:256]}' not found.",
                param="conversation", code="conversation_not_found",
            )
        standing.conversation_id, standing.conversation = conversation_id, found
    standing.own_input = input_items({"input": raw}) if raw is not None else []
    if not (refs or standing.history or standing.conversation or standing.keeps):
        return standing  # nothing read, nothing to keep: the body as it came
    chained = {k: v for k, v in body.items() if k not in CONTEXT_KEYS}
    chained["input"] = [*standing.context, *standing.own_input]
    standing.body = chained
    return standing


async def with_references(
    store: Store, owner: str, raw: Any, refs: list[str], param: str = "input"
) -> Any:
    """``raw`` (a request's ``input``, the Conversations API's ``items``) with its item references
    (``refs``: ``referenced_ids(raw)``) replaced by the owner's stored items, read in one call;
    ``InvalidItem`` naming ``param[i]`` for one that is not there (unknown or another key's)."""
    wanted = [ref for ref in refs if ref]
    return resolve_references(raw, await store.get_items(owner, wanted) if wanted else {}, param)


def _previous_not_found(response_id: str) -> ProxyError:
    """OpenAI's answer for an unknown (or another key's) ``previous_response_id``."""
    return ProxyError(
        404, f"Previous response with id '{response_id[:256]}' not found.",
        param="previous_response_id", code="previous_response_not_found",
    )


def refusal(exc: StoreError | InvalidParam, request_id: str = "-", where: str = "") -> ProxyError:
    """``store_http_error(exc)``, with the store's own faults (not the client's bad ids, items or
    sizes) logged: store errors never hold a key."""
    if not (isinstance(exc, InvalidParam) or client_caused(exc)):
        log.warning("request_id=%s: %sstore error: %s", request_id, where, exc)
    return store_http_error(exc)


def store_http_error(exc: StoreError | InvalidParam) -> ProxyError:
    """The HTTP answer to a store error that reached a route (``proxy.app`` registers it)."""
    if isinstance(exc, StoreUnavailable):
        return ProxyError(
            TAXONOMY[Cause.STORE_UNAVAILABLE].status,
            "The response store is unavailable; retry shortly.",
            type="server_error", code="store_unavailable", headers={"Retry-After": str(exc.retry_after)},
        )
    if isinstance(exc, (InvalidItem, InvalidParam)):
        return invalid_request(str(exc), exc.param)
    if isinstance(exc, ResponsePending):
        return invalid_request(
            f"Previous response with id '{exc.response_id[:256]}' is still in progress: its output is not there "
            "yet. Wait until it has finished (poll GET /v1/responses/{id}) before continuing from it.",
            "previous_response_id", "previous_response_in_progress",
        )
    if isinstance(exc, ObjectTooLarge):
        return ProxyError(413, f"Cannot store this: {exc}.", code="object_too_large")
    if isinstance(exc, HistoryIncomplete) and exc.conversation_id is not None:
        return invalid_request(
            f"Previous response '{exc.response_id[:256]}' was built on conversation '{exc.conversation_id[:256]}', "
            "which was deleted: the context it stands on is gone. Send that context in 'input' instead.",
            "previous_response_id", "conversation_deleted",
        )
    if isinstance(exc, HistoryIncomplete):
        return ProxyError(
            500, f"{exc}; the request was not sent rather than with part of its context missing.",
            type="server_error", code="stored_history_incomplete",
        )
    return ProxyError(500, "The response store failed.", type="server_error", code="store_error")
