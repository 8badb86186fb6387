"""Chat Completions chunks → Responses stream events and the final Response.

One ``StreamTranslator`` per request. The I/O layer feeds it every parsed
``chat.completion.chunk`` and sends the events it returns; in JSON mode
(``emit_events=False``) the same state machine runs but builds no event dicts,
and only ``response`` is used.

Event grammar (translation-guide §4): ``response.created``,
``response.in_progress``, then per output item ``output_item.added`` →
content part / deltas / done events → ``output_item.done``, and exactly one
terminal ``response.completed`` / ``response.incomplete`` / ``response.failed``.
A background response starts as OpenAI's does (``queue()``): ``response.created``
and ``response.queued`` with the Response ``queued``, then ``response.in_progress``
when its job begins (``start()``).

The parts, each owning one thing:

* ``translator`` — ``StreamTranslator``: chunk parsing and dispatch, finish
  and failure; ``chunks`` — what finish reasons, choices and error payloads
  mean;
* ``segments`` — reasoning and message, at most one open (output order);
* ``events`` — the emitter: sequence numbers, output indexes, every event's
  shape (the flat ``error`` event); ``silent`` — its JSON-mode twin;
* ``message`` — the message item (text and refusal parts, held whitespace,
  logprobs);
* ``reasoning`` — the reasoning item as ``reasoning_text`` or as a summary,
  with ``encrypted_content``;
* ``tool_calls`` — call fragments matched to their call (every shape chat
  servers send), calls opened in order or dropped;
* ``call_items`` — one upstream call, and its function or custom tool call
  item (custom input buffered, decoded at the end).

The Response object itself is assembled by ``proxy.translate.response``.
"""
from .chunks import StreamFailure
from .translator import TRUNCATED_MESSAGE, StreamTranslator

__all__ = ["TRUNCATED_MESSAGE", "StreamFailure", "StreamTranslator"]
