"""The core's one exception: a request it refuses.

The translation core knows nothing of HTTP. ``InvalidRequest`` says what was
wrong (``message``, for a client author to read), which parameter (``param``,
e.g. ``"input[3].content"``) and, when there is one, OpenAI's ``code``
(``missing_required_parameter``, ``unsupported_parameter``, …). The edge
(``proxy.app``) turns it into an ``invalid_request_error`` with exactly those
three fields, of ``status``: 400, but for a refusal OpenAI documents otherwise
(403 for an access program the server cannot give).
"""
from __future__ import annotations


class InvalidRequest(Exception):
    """The request cannot be translated; nothing was sent anywhere."""

    def __init__(self, message: str, param: str | None = None, code: str | None = None, status: int = 400) -> None:
        super().__init__(message)
        self.message = message
        self.param = param
        self.code = code
        self.status = status
