"""responses-proxy: an OpenAI Responses API front for Chat Completions backends.

Follow the data: ``proxy.app`` routes ``POST /v1/responses`` to
``proxy.resources.responses``, which validates and translates the request
(``proxy.translate.request``), sends it upstream (``proxy.upstream``) through the
circuit breaker (``proxy.breaker``), and translates the streamed answer back
(``proxy.translate.stream``) into SSE events or one JSON Response object.
"""
