"""Chat Completions chunks → Responses stream events and the final Response.

One ``StreamTranslator`` per request. The I/O layer feeds it every parsed
``chat.completion.chunk`` and sends the events it returns; in JSON mode
(``emit_events=False``) the same state machine runs but builds no event dicts,
and only ``response`` is used.

Event grammar (translation-guide §4): ``response.created``,
``response.in_progress``, then per output item ``output_item.added`` →
content part / deltas / done events → ``output_item.done``, and exactly one
terminal ``response.completed`` / ``response.incomplete`` / ``response.failed``.

The parts, each owning one thing:

* ``translator`` — ``StreamTranslator``: chunk parsing and dispatch, output
  order, tool-call matching, finish reasons and endings;
* ``events`` — the emitter: sequence numbers, output indexes, every event's
  shape (the flat ``error`` event); ``silent`` — its JSON-mode twin;
* ``message`` — the message item (text and refusal parts, held whitespace,
  logprobs);
* ``reasoning`` — the reasoning item as ``reasoning_text`` or as a summary,
  with ``encrypted_content``;
* ``tool_calls`` — an upstream call being assembled, and the function and
  custom tool call items (custom input buffered, decoded at the end).

The Response object itself is assembled by ``proxy.translate.response``.
"""
from .translator import TRUNCATED_MESSAGE, StreamTranslator

__all__ = ["TRUNCATED_MESSAGE", "StreamTranslator"]
