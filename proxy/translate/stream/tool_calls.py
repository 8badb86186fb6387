"""The tool calls of one response: fragments matched to calls, calls opened in order.

Chat streams send each call in fragments under ``tool_calls[]`` and never say
when one is complete, so every call stays open until the ``finish_reason``
chunk (``close_all``).

Tool-call shapes handled: id and name first; arguments before the name
(buffered until the name is known, ``output_item.added`` is only sent with a
name); the whole call in one chunk; calls interleaved by ``index``; a missing
``index`` (matched by id, else the last call); a missing id (a ``call_…`` id is
generated); one index reused for several whole calls (told apart by id). Calls
are opened in order of first appearance, so a call waits for an earlier one
still without a name. A call whose name never arrives is dropped. Calls to
tools outside ``ctx.allowed_tools``, calls past the request's
``max_tool_calls`` (the limit the Response echoes), and with
``parallel_tool_calls: false`` every call after the first, are dropped before
they reach the client: the backend is not told the limit (chat has no such
field), and not every backend honours ``parallel_tool_calls``, while OpenAI's
answer then holds at most one call. Every drop is recorded in ``dropped`` and
``warnings``.
"""
from __future__ import annotations

from collections.abc import Callable
from typing import Any

import orjson

from ..context import ResponseContext
from ..shapes import ItemStatus
from .call_items import CLOSED, DROPPED, STREAMING, CustomToolCallBuilder, FunctionCallBuilder, ToolCall, is_open
from .events import Emitter


class ToolCalls:
    """Every upstream call of the response, by key and in order of first appearance."""

    __slots__ = ("_ctx", "_em", "_new_id", "_before_open", "_by_key", "order", "next_open", "_last", "_room",
                 "_serial", "dropped", "warnings")

    def __init__(self, ctx: ResponseContext, emitter: Emitter, new_id: Callable[[str], str],
                 before_open: Callable[[], None]) -> None:
        self._ctx = ctx
        self._em = emitter
        self._new_id = new_id
        self._before_open = before_open  # closes the open message or reasoning item
        # By upstream index, or ("id", id) / ("n", position) when a server sends none.
        self._by_key: dict[Any, ToolCall] = {}
        self.order: list[ToolCall] = []
        self.next_open = 0  # position in `order` of the next call to open
        self._last: ToolCall | None = None  # where a fragment without index or id belongs
        # How many more calls the client may get (max_tool_calls, as echoed; -1: no limit).
        limit = ctx.echo.get("max_tool_calls")
        room = limit if type(limit) is int and limit >= 0 else -1
        # parallel_tool_calls: false leaves room for one call: ``_serial`` when that, not
        # max_tool_calls, is the bound (it names the reason of a drop).
        self._serial = ctx.echo.get("parallel_tool_calls") is False and room not in (0, 1)
        self._room = 1 if self._serial else room
        self.dropped: list[str] = []
        self.warnings: list[str] = []

    def feed(self, fragments: Any) -> None:
        """One delta's ``tool_calls`` list; opens the calls that became ready.

        Each fragment is matched to its call here, in the loop (one call per
        chunk, not per fragment: this runs for every argument token).
        """
        calls = self._by_key
        for tc in fragments:
            key = tc.get("index")
            cid = tc.get("id")
            if type(cid) is not str or not cid:
                cid = None
            call = None
            if key is None:
                if cid is not None:
                    for c in self.order:
                        if c.call_id == cid:
                            call = c
                            break
                    else:
                        key = ("id", cid)
                else:
                    call = self._last
            else:
                call = calls.get(key)
                if call is not None and cid is not None and call.call_id is not None and call.call_id != cid:
                    call = None  # a server reusing one index for several whole calls
            if call is None:
                call = ToolCall()
                calls[key if key is not None else ("n", len(self.order))] = call
                self.order.append(call)
            self._last = call
            if cid is not None and call.call_id is None:
                call.call_id = cid
            fn = tc.get("function")
            if not fn:
                continue
            name = fn.get("name")
            if name and call.name is None and type(name) is str:
                call.name = name
            args = fn.get("arguments")
            if args:
                if type(args) is not str:  # some servers send the arguments object itself
                    args = orjson.dumps(args).decode()
                call.args.append(args)
                if call.state is STREAMING:
                    call.item.arguments(args)
        if self.next_open < len(self.order):
            self.open_ready(force=False)

    def open_ready(self, *, force: bool) -> None:
        """Open calls in order of first appearance, stopping at the first without a name.

        With ``force`` (the stream is over) nameless calls are dropped instead.
        """
        order = self.order
        i = self.next_open
        n = len(order)
        while i < n:
            call = order[i]
            if call.name is None:
                if not force:
                    break
                self._drop(call, "<unnamed>", "tool call without a function name")
            else:
                self._open(call, call.name)
            i += 1
        self.next_open = i

    def has_open(self) -> bool:
        """Whether any call is still open or waiting for its name (not closed, not dropped)."""
        return any(call.state is not CLOSED and call.state is not DROPPED for call in self.order)

    def close_all(self, status: Callable[[int], ItemStatus]) -> None:
        """Close every open call; ``status`` maps its output_index to its final status."""
        for call in self.order:
            if is_open(call.state):
                builder = call.item
                builder.close(status(builder.index))
                del call.item  # the builder holds the call: a cycle, left for the garbage collector

    def _open(self, call: ToolCall, name: str) -> None:
        ctx = self._ctx
        if ctx.allowed_tools is not None and name not in ctx.allowed_tools:
            self._drop(call, name, "not in allowed_tools")
            return
        if self._room == 0:
            if self._serial:
                self._drop(call, name, "parallel_tool_calls is false: one call per response")
            else:
                self._drop(call, name, f"over max_tool_calls ({ctx.echo['max_tool_calls']})")
            return
        if self._room > 0:
            self._room -= 1
        self._before_open()
        ns = ctx.namespaced.get(name) if ctx.namespaced else None
        builder = CustomToolCallBuilder if name in ctx.custom_tools else FunctionCallBuilder
        if ns is None:
            item = builder(self._em, call, name, None, self._new_id)
        else:
            item = builder(self._em, call, ns[1], ns[0], self._new_id)
        item.open()

    def _drop(self, call: ToolCall, name: str, why: str) -> None:
        call.state = DROPPED
        self.dropped.append(name)
        self.warnings.append(f"dropped upstream tool call {name!r}: {why}")
