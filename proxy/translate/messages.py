"""``instructions`` + ``input`` → chat ``messages``.

Choices worth knowing:

- **One system message.** ``instructions`` and every ``system``/``developer``
  message, wherever it appears in ``input``, are merged (instructions first,
  in order, joined by a blank line) into a single leading ``system`` message.
  Many open-model chat templates reject ``developer`` and reject a system
  message that is not first; Codex sends its prompt as several developer
  messages.
- **Tool calls.** Consecutive ``function_call``/``custom_tool_call`` items
  become one assistant message with ``tool_calls`` (merged into a directly
  preceding assistant message), placed before their ``tool`` results.
- **Reasoning** items are never rejected: their text (our own
  ``encrypted_content``, else ``content``, else ``summary``) becomes
  ``reasoning_content`` of the next assistant message, or is dropped (also
  when the backend must not get it: ``keep_reasoning`` false).
- ``item_reference`` cannot be honoured without storage: a clear 400.
"""
from __future__ import annotations

from typing import Any

import orjson

from . import validate as v
from .compaction import TRIGGER, summary_message
from .content import SENT, STORED, Places, message_content, text_content, tool_output
from .errors import InvalidRequest
from .reasoning_codec import decode_reasoning
from .tools import history_name

_CALL_TYPES = ("function_call", "custom_tool_call")
_OUTPUT_TYPES = ("function_call_output", "custom_tool_call_output")
_MESSAGE_ROLES = ("user", "assistant", "system", "developer")
# An item's ``status`` as the openai SDK's item types take it (the spec's MessageStatus): an item is
# stored as sent, so any other value came back from input_items and conversation item listings in
# a shape the SDK cannot parse.
_ITEM_STATUSES = ("in_progress", "completed", "incomplete")
# The optional string fields the openai SDK declares on call and output items (beyond those
# translation reads): stored and listed as sent, like ``status``.
_CALL_STRINGS = ("namespace", "created_by")
_FCO_STRINGS = ("name", "namespace", "created_by")
_CREATED_BY = ("created_by",)  # (a custom tool output's, a compaction's)
# An assistant message's ``phase`` (the spec's enum, the openai SDK's Literal): stored and listed
# as sent, like ``status``.
_PHASES = ("commentary", "final_answer")


def reasoning_text(item: dict[str, Any]) -> str:
    """The text a replayed reasoning item stands for ('' if none).

    Our own ``encrypted_content`` holds the full text; otherwise visible
    ``content`` (reasoning_text) beats ``summary``. Malformed parts are
    skipped, never rejected: every Codex turn replays these items.
    """
    text = decode_reasoning(item.get("encrypted_content"))
    if text is not None:
        return text
    for field, joiner in (("content", "\n"), ("summary", "\n\n")):
        parts = item.get(field)
        if isinstance(parts, list):
            texts = [p["text"] for p in parts if isinstance(p, dict) and isinstance(p.get("text"), str)]
            if texts:
                return joiner.join(texts)
    return ""


class _History:
    """Accumulates chat messages; owns call grouping and reasoning attachment."""

    __slots__ = ("system", "messages", "pending_reasoning", "keep_reasoning", "calls", "orphan", "unanswered")

    def __init__(self, keep_reasoning: bool, *, pair_outputs: bool = False) -> None:
        self.system: list[str] = []
        self.messages: list[dict[str, Any]] = []
        self.pending_reasoning: list[str] = []
        self.keep_reasoning = keep_reasoning
        # When calls and outputs must pair (a whole conversation's items, ``pair_outputs``):
        # the call ids made so far, which each tool output must answer (None: not checked, or no
        # longer after a compaction item, which stands for the calls it replaced), the first
        # output that answered none, and the calls no output answered yet, by call id, with their
        # item type (in the order made: the first is named). None: not checked.
        self.calls: set[str] | None = set() if pair_outputs else None
        self.orphan: InvalidRequest | None = None
        self.unanswered: dict[str, str] | None = {} if pair_outputs else None

    def _attach(self, msg: dict[str, Any]) -> None:
        if self.pending_reasoning:
            text = "\n\n".join(self.pending_reasoning)
            self.pending_reasoning = []
            prev = msg.get("reasoning_content")
            msg["reasoning_content"] = prev + "\n\n" + text if prev else text

    def add(self, msg: dict[str, Any]) -> None:
        if msg["role"] == "assistant":
            self._attach(msg)
        else:
            self.pending_reasoning = []  # reasoning with no assistant answer: nothing to attach to
        self.messages.append(msg)

    def add_call(self, call: dict[str, Any], itype: str) -> None:
        if self.calls is not None:
            self.calls.add(call["id"])
        if self.unanswered is not None:
            self.unanswered.setdefault(call["id"], itype)
        last = self.messages[-1] if self.messages else None
        if last is not None and last["role"] == "assistant":
            self._attach(last)
            calls = last.get("tool_calls")
            if calls is None:
                last["tool_calls"] = [call]
            else:
                calls.append(call)
        else:
            self.add({"role": "assistant", "content": None, "tool_calls": [call]})

    def add_reasoning(self, item: dict[str, Any]) -> None:
        if self.keep_reasoning:
            text = reasoning_text(item)
            if text:
                self.pending_reasoning.append(text)


def _message(h: _History, item: dict[str, Any], param: str, places: Places) -> None:
    role = item.get("role")
    if role not in _MESSAGE_ROLES:
        if role is None:
            raise v.missing(param + ".role", "'user', 'assistant', 'system' or 'developer'")
        raise v.fail(param + ".role", "'user', 'assistant', 'system' or 'developer'", role)
    if role == "user":
        h.add({"role": "user", "content": message_content(item, param, places.user, "\n")})
    elif role == "assistant":
        h.add({"role": "assistant", "content": text_content(item, param, places.assistant, "")})
    else:
        h.system.append(text_content(item, param, places.system, "\n"))
    phase = item.get("phase")
    if phase is not None and phase not in _PHASES:
        raise v.fail(param + ".phase", "'commentary' or 'final_answer'", phase)


def _call(h: _History, item: dict[str, Any], itype: str, param: str) -> None:
    call_id = v.req_str(item, "call_id", param + ".call_id")
    name = v.req_str(item, "name", param + ".name")
    if itype == "function_call":
        arguments = item.get("arguments")
        if not isinstance(arguments, str):
            if arguments is None:
                raise v.missing(param + ".arguments", "a JSON string")
            raise v.fail(param + ".arguments", "a JSON-encoded string", arguments)
    else:
        data = item.get("input")
        if not isinstance(data, str):
            if data is None:
                raise v.missing(param + ".input")
            raise v.fail(param + ".input", "a string", data)
        arguments = orjson.dumps({"input": data}).decode()
    h.add_call(
        {
            "id": call_id,
            "type": "function",
            "function": {"name": history_name(name, item.get("namespace")), "arguments": arguments},
        },
        itype,
    )


def _add_item(h: _History, item: Any, param: str, places: Places = SENT) -> None:
    """One input item into ``h``, or the 400 naming what is wrong with it (``places``: where its
    parts are read, ``content.STORED`` for an item of the context the store gave)."""
    if not isinstance(item, dict):
        raise v.fail(param, "an input item object", item)
    itype = item.get("type")
    if itype == "message" or (itype is None and "role" in item):
        _message(h, item, param, places)
    elif itype in _CALL_TYPES:
        _call(h, item, itype, param)
        _check_declared(item, _CALL_STRINGS, param, True)
    elif itype in _OUTPUT_TYPES:
        call_id = v.req_str(item, "call_id", param + ".call_id")
        h.add({"role": "tool", "tool_call_id": call_id, "content": tool_output(item, param, places.tool)})
        if h.unanswered is not None:
            h.unanswered.pop(call_id, None)
        if h.calls is not None and call_id not in h.calls and h.orphan is None:
            h.orphan = _orphan(itype, call_id)
        _check_declared(item, _FCO_STRINGS if itype == "function_call_output" else _CREATED_BY, param, False)
    elif itype == "reasoning":
        h.add_reasoning(item)
    elif itype == "compaction":
        # The summary stands in for the history it replaced (proxy.translate.compaction), and
        # for the calls in it: outputs after it are not paired, nor calls before it left
        # unanswered (a call made after it must still be answered after it).
        h.add({"role": "user", "content": summary_message(item, param)})
        h.calls = None
        v.check_strings(item, _CREATED_BY, param)
        if h.unanswered:
            h.unanswered.clear()
    elif itype == TRIGGER:
        # The edge answers a request ending with one; anywhere else it is a mistake.
        raise InvalidRequest(
            f"Invalid '{param}': a compaction_trigger item must be the last input item.",
            param,
            "invalid_compaction_trigger",
        )
    elif itype == "item_reference" or (itype is None and "role" not in item and "id" in item):
        # The openai SDK's ItemReference: {"id": ...} with an optional type.
        raise InvalidRequest(
            f"Invalid '{param}': item_reference is not supported because this server stores no "
            "responses; send the referenced item itself.",
            param,
            "unsupported_input_item",
        )
    elif itype is None:
        raise v.missing(param + ".type", "or 'role' for a message")
    else:
        raise InvalidRequest(
            f"Invalid '{param}': input item type {str(itype)[:64]!r} is not supported by this server "
            "(it forwards to a Chat Completions backend).",
            param,
            "unsupported_input_item",
        )
    # The fields every served item's SDK type declares (every other kind was refused above).
    item_id = item.get("id")
    if item_id is not None and not isinstance(item_id, str):
        raise v.fail(param + ".id", "a string", item_id)
    status = item.get("status")
    if status is not None and status not in _ITEM_STATUSES:
        raise v.fail(param + ".status", "'in_progress', 'completed' or 'incomplete'", status)


def _check_declared(item: dict[str, Any], strings: tuple[str, ...], param: str, call: bool) -> None:
    """The fields the openai SDK declares on a call or output item that translation does not read.

    An item is stored as sent and listed back as the SDK's ``ResponseItem`` / ``ConversationItem``:
    a wrong-typed ``name``, ``created_by``, ``caller``… made every later listing fail the SDK's own
    types, where OpenAI refuses the input (tests/unit/test_input_item_types.py puts a wrong value
    into every declared field of every item type served). Fields the SDK does not declare are kept
    as sent (clients such as Codex send some)."""
    v.check_strings(item, strings, param)
    caller = item.get("caller")
    if caller is not None:
        _check_caller(caller, param + ".caller")
    if call:
        value = item.get("async")
        if value is not None and not isinstance(value, bool):
            raise v.fail(param + ".async", "a boolean", value)


def _check_caller(caller: Any, param: str) -> None:
    """A call's or an output's ``caller`` (the SDK's ``Caller``): ``{"type": "direct"}`` or
    ``{"type": "program", "caller_id"}``."""
    if not isinstance(caller, dict):
        raise v.fail(param, "an object", caller)
    kind = caller.get("type")
    if kind == "program":
        caller_id = caller.get("caller_id")
        if not isinstance(caller_id, str):
            raise v.wrong(param + ".caller_id", "a string", caller_id)
    elif kind != "direct":
        raise v.wrong(param + ".type", "'direct' or 'program'", kind)


def check_items(raw: list[Any], param: str) -> None:
    """Refuse any item that ``input`` would refuse, named ``<param>[i]``: for the Conversations
    API, whose items are a later response's input. Stored unchecked, one bad item made every
    response in its conversation a 400 naming an input item its client never sent, and came back
    from the item listings in a shape the openai SDK's types refuse."""
    h = _History(keep_reasoning=False)
    for i, item in enumerate(raw):
        _add_item(h, item, f"{param}[{i}]")


def _orphan(itype: str, call_id: str) -> InvalidRequest:
    """A tool output must answer a call made before it in the conversation, as OpenAI requires
    (its 400, word for word): a chat backend given a ``tool`` message with no ``tool_calls`` entry
    refuses it less clearly, or renders a template that breaks. Raised once every item passed its
    own checks, so an item's own fault is named first."""
    kind = "function call" if itype == "function_call_output" else "custom tool call"
    return InvalidRequest(f"No tool call found for {kind} output with call_id {call_id[:v.MAX_ID_STRING]}.", "input")


def _unanswered(itype: str, call_id: str) -> InvalidRequest:
    """The mirror: every call must be answered by an output after it in the conversation, as OpenAI
    requires (its 400, word for word) — also a call the chain or conversation stands on that the
    new input does not answer. A chat backend given ``tool_calls`` with no ``tool`` message after
    them refuses the history (or its template breaks) less clearly. Raised after ``_orphan``."""
    kind = "function call" if itype == "function_call" else "custom tool call"
    return InvalidRequest(f"No tool output found for {kind} {call_id[:v.MAX_ID_STRING]}.", "input")


def translate_input(
    raw: Any, instructions: str | None, *, keep_reasoning: bool, stored: int = 0
) -> list[dict[str, Any]]:
    """``instructions`` + ``input`` → chat ``messages`` (see the module docstring); the first
    ``stored`` items of ``input`` are the context the store gave (``_add_item``)."""
    h = _History(keep_reasoning, pair_outputs=True)
    if instructions:
        h.system.append(instructions)
    if isinstance(raw, str):
        if len(raw) > v.MAX_INPUT_STRING:
            raise InvalidRequest(
                f"Invalid 'input': string too long, expected at most {v.MAX_INPUT_STRING} characters.", "input"
            )
        h.add({"role": "user", "content": raw})
    elif isinstance(raw, list):
        for i, item in enumerate(raw):
            # The client's own items are named as it sent them (``input[0]`` is its first, after
            # the context), as OpenAI and the store's own checks (``proxy.state``) name them.
            if i < stored:
                _add_item(h, item, f"input[{i}]", STORED)
            else:
                _add_item(h, item, f"input[{i - stored}]")
        if h.orphan is not None:
            raise h.orphan
        if h.unanswered:
            call_id, itype = next(iter(h.unanswered.items()))
            raise _unanswered(itype, call_id)
    elif raw is None:
        raise v.missing("input", "a string or an array of input items")
    else:
        raise v.fail("input", "a string or an array of input items", raw)
    if h.system:
        h.messages.insert(0, {"role": "system", "content": "\n\n".join(h.system)})
    if not h.messages:
        raise InvalidRequest("Invalid 'input': expected at least one input item.", "input", "empty_array")
    return h.messages
