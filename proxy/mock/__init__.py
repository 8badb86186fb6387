"""Scripted mock Chat Completions backend for tests, the README demo and load tests.

Run: ``python -m proxy.mock --host 127.0.0.1 --port 9100 [--workers N]`` (``--port 0``
picks a free port; the ready line ``mock backend listening on http://HOST:PORT`` names it).
Serves ``POST /v1/chat/completions`` and ``POST /chat/completions``: SSE when
``stream: true`` (usage chunk with ``choices: []`` when ``stream_options.include_usage``),
one ``chat.completion`` JSON otherwise.

Built-in models (used when no script is queued for the request's ``model``):

- ``mock-echo`` (and any unknown name): ``"You said: <last user text>"`` in 4-char deltas.
- ``mock-stream-<N>``: N text deltas ``"tok0 "``, ``"tok1 "``, ...
- ``mock-tool``: one call to the first offered tool (required params filled with
  placeholders), or ``get_weather`` if none; if the last message is a tool result it
  answers ``"Tool result: ..."`` instead, so agent loops end.
- ``mock-reasoning``: ``reasoning_content`` then the echo text.
- ``mock-slow-<ms>``: the echo with ``<ms>`` between chunks.
- ``mock-error-<status>``: an OpenAI-shaped error with that status.

Also ``GET /v1/models`` (and ``/models``): ``{"object": "list", "data": [...]}`` with the
built-in names ``mock-echo``, ``mock-tool``, ``mock-reasoning``, ``mock-stream-10``,
``mock-slow-100``, ``mock-error-500``; ``GET /v1/models/{id}``: that model object for a
listed name or any ``mock-stream-<N>`` / ``mock-slow-<ms>`` / ``mock-error-<status>``, else
OpenAI's 404 (``code: model_not_found``).

Compaction: a request whose last message is a user message starting with the first line of
the proxy's default compaction prompt (``proxy.translate.compaction.DEFAULT_PROMPT``) never
takes the model's own scripts (so a client compacting in the middle of a scripted loop does
not shift them): it takes a script queued for model ``compaction:<model>`` if any, else it is
answered ``"Summary of N earlier messages. The user asked: <the user texts, ' / '-joined>"``.

Control API (JSON; state is per worker process, so script with ``--workers 1``):
``POST /_mock/script {"model", "responses": [script, ...], "replace"?}`` queues scripts
(model ``"*"`` matches any model without its own queue; each request pops one; the last
one stays and is reused until new scripts replace it); ``POST /_mock/models {"responses":
[script, ...], "replace"?}`` does the same for the models endpoints (one queue for list and
retrieve; keys: ``status``, ``error``, ``data`` (ids or objects instead of the built-in list),
``body`` (the whole JSON answer), ``raw``, ``headers``, ``first_byte_delay``, ``hang``);
``POST /_mock/reset``; ``GET /_mock/requests[?model=]`` → records ``{model, path, client,
headers, body, disconnected, completed, started_at, ended_at}`` in arrival order (models
requests too: ``model`` is the id, or null for the list); ``GET /_mock/health``.

Script keys (all optional): ``status``, ``headers``, ``error`` (body for status >= 400),
``text``, ``chunks`` (pre-split text deltas), ``chunk_size`` (4), ``reasoning``,
``reasoning_field`` (``reasoning_content`` | ``reasoning`` | ``think``: ``<think>…</think>``
prefixed to the content, then split as a whole), ``refusal``, ``tool_calls``
(``[{"id", "name", "arguments": str | object}]``), ``tool_call_style`` (``standard`` |
``args_before_name`` | ``whole_at_end`` | ``interleaved`` | ``no_id``), ``finish_reason``,
``usage`` (verbatim; default computed from lengths), ``logprobs``, ``first_byte_delay``,
``delay`` (s between events; with 0 the whole body is one write), ``hang``, ``drop_after``
(N events, then the connection breaks mid-body), ``no_done`` (clean end without finish
chunk, usage or ``[DONE]``), ``raw`` / ``raw_b64`` (body pieces sent verbatim, one write
each), ``crlf``, ``oversize_event_bytes`` (one content event of exactly that size, padded
with ``x``, after the role chunk), ``error_mid_stream`` (``{message, type, code, after=2}``:
``data: {"error": ...}`` after ``after`` events, then ``[DONE]``), ``content_type``.
Stream-only keys are ignored for ``stream: false``.

Recorded answers of real servers (``tests/fixtures/backends``) replay through ``raw_b64``
(one piece per SSE event, so reads end where the server's writes did) and ``content_type``
(the recorded one, JSON bodies included); ``drop_after`` cuts such a replay short.
"""
