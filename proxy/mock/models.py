"""The mock's ``GET /v1/models`` and ``GET /v1/models/{id}``: a ``Plan``, as for chat requests.

Pure, like ``proxy.mock.scripts``: the app replays the plan (delays, hangs).
"""
from __future__ import annotations

import re
from typing import Any

import orjson

from proxy.mock.scripts import JSON_CONTENT_TYPE, Plan, error_body, script_headers

# The built-in names the list shows; retrieve also knows every name of their families.
BUILTIN_MODELS = ("mock-echo", "mock-tool", "mock-reasoning", "mock-stream-10", "mock-slow-100", "mock-error-500")
_FAMILIES = re.compile(r"mock-(?:stream|slow|error)-\d+")
# Where the models requests' scripts queue (``POST /_mock/models``): not a name a chat request can send.
QUEUE = "\x00models"
CREATED = 1_700_000_000


def entry(model: Any) -> dict[str, Any]:
    """An OpenAI model object; ``model`` is an id or an object used as is."""
    if isinstance(model, dict):
        return model
    return {"id": str(model), "object": "model", "created": CREATED, "owned_by": "mock"}


def build_models_plan(script: dict[str, Any] | None, model_id: str | None) -> Plan:
    """What ``GET …/models`` (``model_id`` None) or ``GET …/models/{model_id}`` receives.

    Script keys (all optional): ``status`` and ``error`` (an error answer),
    ``data`` (the list's ids or objects, instead of the built-in names),
    ``body`` (the whole JSON answer, verbatim), ``raw`` (body pieces sent
    verbatim), ``headers``, ``first_byte_delay``, ``hang``.
    """
    script = script or {}
    plan = Plan(
        first_byte_delay=float(script.get("first_byte_delay") or 0),
        hang=bool(script.get("hang")),
        sized=True,
    )
    status = int(script.get("status", 200))
    data = [entry(m) for m in script.get("data", BUILTIN_MODELS)]
    doc: Any
    if "raw" in script:
        plan.pieces = [p.encode() if isinstance(p, str) else bytes(p) for p in script["raw"]]
        plan.sized = False
    elif "body" in script:
        doc = script["body"]
    elif status >= 400:
        doc = error_body(status, script.get("error"))
    elif model_id is None:
        doc = {"object": "list", "data": data}
    else:
        found = next((e for e in data if e.get("id") == model_id), None)
        if found is None and "data" not in script and _FAMILIES.fullmatch(model_id):
            found = entry(model_id)
        if found is None:
            status = 404
            doc = error_body(404, {
                "message": f"The model '{model_id}' does not exist",
                "param": "model", "code": "model_not_found",
            })
        else:
            doc = found
    if not plan.pieces:
        plan.pieces = [orjson.dumps(doc)]
    plan.status = status
    plan.headers = [(b"content-type", JSON_CONTENT_TYPE), *script_headers(script)]
    return plan
