"""One upstream tool call, and the builders of its ``function_call`` / ``custom_tool_call`` item.

A ``ToolCall`` collects what the chat stream sends for one call (id, name,
argument fragments) from its first fragment on. ``tool_calls`` opens a
builder for it once it has a name and its turn has come; the builder owns the
item's added → delta → done life. Function call arguments stream as
``response.function_call_arguments.delta`` as they arrive (the fragments sent
before the name go out as one delta right after ``output_item.added``).

Custom tool calls (``ctx.custom_tools``) arrive as a function whose arguments
are ``{"input": "<text>"}``. We **buffer** the arguments and decode them once
the call is complete: an incremental JSON-string decoder would let
``custom_tool_call_input.delta`` flow earlier, but the clients that use custom
tools (Codex ``apply_patch``) act only on ``output_item.done``, and a buffer is
simpler and exact. The input is then sent as one
``response.custom_tool_call_input.delta`` and ``.done``. Arguments that are
not a JSON object with a string ``input`` are passed through verbatim as the
input (models sometimes emit the raw text).
"""
from __future__ import annotations

from collections.abc import Callable
from enum import Enum

import orjson

from ..shapes import CustomToolCallItem, FunctionCallItem, ItemStatus
from .events import Emitter


class CallState(Enum):
    PENDING = 0  # collecting; not yet sent to the client (no name yet, or an earlier call has none)
    STREAMING = 1  # item added; each new fragment goes to the builder (function calls with events on)
    BUFFERING = 2  # item added; fragments are only collected (custom tool calls, and JSON mode)
    CLOSED = 3  # output_item.done sent
    DROPPED = 4  # never sent: no name, outside allowed_tools, or past max_tool_calls


PENDING, STREAMING, BUFFERING, CLOSED, DROPPED = CallState


def is_open(state: CallState) -> bool:
    return state is STREAMING or state is BUFFERING


class ToolCall:
    """One upstream tool call; ``call_id`` and ``name`` stay None until the stream sends them."""

    __slots__ = ("call_id", "name", "args", "state", "item")

    def __init__(self) -> None:
        self.call_id: str | None = None
        self.name: str | None = None
        self.args: list[str] = []
        self.state = PENDING
        self.item: CallBuilder  # set when opened


class CallBuilder:
    """The item of an opened call: ids, output_index, and the name the client sees."""

    __slots__ = ("_em", "_call", "call_id", "item_id", "index", "name", "namespace")

    _prefix = ""

    def __init__(self, emitter: Emitter, call: ToolCall, name: str, namespace: str | None,
                 new_id: Callable[[str], str]) -> None:
        self._em = emitter
        self._call = call
        if call.call_id is None:
            call.call_id = new_id("call")
        self.call_id = call.call_id
        self.item_id = new_id(self._prefix)
        self.name = name
        self.namespace = namespace
        self.index = -1
        call.state = BUFFERING
        call.item = self

    def open(self) -> None:
        """Send ``output_item.added`` (and, for a function, the arguments so far)."""
        raise NotImplementedError

    def arguments(self, fragment: str) -> None:
        """A fragment arrived while ``STREAMING`` (it is already in ``call.args``)."""
        raise NotImplementedError

    def close(self, status: ItemStatus) -> None:
        raise NotImplementedError


class FunctionCallBuilder(CallBuilder):
    """A ``function_call`` item; arguments stream as they arrive."""

    __slots__ = ()

    _prefix = "fc"

    def open(self) -> None:
        em = self._em
        self.index = em.output_item_added(self._item("in_progress", ""))
        if self._call.args:  # fragments that came before the name
            em.function_call_arguments_delta(self.item_id, self.index, "".join(self._call.args))
        if em.live:
            self._call.state = STREAMING

    def arguments(self, fragment: str) -> None:
        self._em.function_call_arguments_delta(self.item_id, self.index, fragment)

    def close(self, status: ItemStatus) -> None:
        args = "".join(self._call.args)
        item = self._item(status, args)
        self._call.state = CLOSED
        em = self._em
        em.function_call_arguments_done(self.item_id, self.index, args)
        em.output_item_done(self.index, item)

    def _item(self, status: ItemStatus, arguments: str) -> FunctionCallItem:
        item: FunctionCallItem = {"id": self.item_id, "type": "function_call", "status": status,
                                  "arguments": arguments, "call_id": self.call_id, "name": self.name}
        if self.namespace is not None:
            item["namespace"] = self.namespace
        return item


class CustomToolCallBuilder(CallBuilder):
    """A ``custom_tool_call`` item; the input is buffered and decoded at the end."""

    __slots__ = ()

    _prefix = "ctc"

    def open(self) -> None:
        self.index = self._em.output_item_added(self._item("in_progress", ""))

    def close(self, status: ItemStatus) -> None:
        payload = custom_input("".join(self._call.args))
        item = self._item(status, payload)
        self._call.state = CLOSED
        em = self._em
        if payload:
            em.custom_tool_call_input_delta(self.item_id, self.index, payload)
        em.custom_tool_call_input_done(self.item_id, self.index, payload)
        em.output_item_done(self.index, item)

    def _item(self, status: ItemStatus, payload: str) -> CustomToolCallItem:
        item: CustomToolCallItem = {"id": self.item_id, "type": "custom_tool_call", "status": status,
                                    "call_id": self.call_id, "input": payload, "name": self.name}
        if self.namespace is not None:
            item["namespace"] = self.namespace
        return item


def custom_input(args: str) -> str:
    """The ``input`` string of a custom tool call's ``{"input": ...}`` arguments.

    Anything else (invalid JSON, another shape) is the raw text itself.
    """
    if not args:
        return ""
    try:
        value = orjson.loads(args)
    except orjson.JSONDecodeError:
        return args
    if type(value) is dict:
        inner = value.get("input")
        if type(inner) is str:
            return inner
        if len(value) == 1:
            only = next(iter(value.values()))
            if type(only) is str:
                return only
    elif type(value) is str:
        return value
    return args
