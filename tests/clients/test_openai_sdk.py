"""openai SDK 3.57 helpers beyond create(): ``responses.parse``, the ``responses.stream``
helper, and the SDK's own exception classes for the proxy's error answers.

Every call goes through a ``RecordingTap``, so each raw answer (JSON, SSE or error
body) is validated too.
"""
from __future__ import annotations

import json
from collections.abc import Iterator

import openai
import pytest
from pydantic import BaseModel

from tests.clients.helpers import check_chat_request
from tests.conftest import API_KEY
from tests.tap import RecordingTap, check_exchanges


class Invoice(BaseModel):
    number: str
    total_cents: int
    paid: bool


TOOLS = [{
    "type": "function",
    "name": "lookup_order",
    "description": "Find an order by id.",
    "parameters": {"type": "object", "properties": {"order_id": {"type": "string"}}, "required": ["order_id"]},
    "strict": False,
}]


@pytest.fixture
def tap(proxy) -> Iterator[RecordingTap]:
    with RecordingTap(proxy.url) as t:
        yield t


@pytest.fixture
def client(tap) -> Iterator[openai.OpenAI]:
    with openai.OpenAI(base_url=tap.url + "/v1", api_key=API_KEY, max_retries=0, timeout=30) as c:
        yield c


def test_parse_with_text_format(client, tap, mock):
    invoice = {"number": "INV-42", "total_cents": 12950, "paid": False}
    mock.script("sdk-parse", {"text": json.dumps(invoice), "chunk_size": 4})
    raw = client.responses.with_raw_response.parse(model="sdk-parse", input="Extract the invoice.", text_format=Invoice)
    parsed = raw.parse()
    assert parsed.output_parsed == Invoice(**invoice)
    (final,) = check_exchanges(tap)
    assert final["text"]["format"]["type"] == "json_schema"
    assert final["text"]["format"]["name"] == "Invoice"

    body = mock.requests("sdk-parse")[-1]["body"]
    check_chat_request(body)
    fmt = body["response_format"]
    assert fmt["type"] == "json_schema"
    assert fmt["json_schema"]["name"] == "Invoice" and fmt["json_schema"]["strict"] is True
    assert list(fmt["json_schema"]["schema"]["properties"]) == ["number", "total_cents", "paid"]


def _normalized(response) -> list[dict]:
    """Output items without what legitimately differs: ids (fresh per response) and the
    stream helper's ``parsed`` / ``parsed_arguments`` (client-side fields of ParsedResponse)."""
    def strip(value):
        if isinstance(value, dict):
            return {k: strip(v) for k, v in value.items() if k not in ("id", "parsed", "parsed_arguments")}
        if isinstance(value, list):
            return [strip(v) for v in value]
        return value

    return [strip(item.model_dump()) for item in response.output]


def test_stream_helper_final_equals_json_with_tools_and_reasoning(client, tap, mock):
    mock.script("sdk-stream", {
        "reasoning": "The user wants order 7; look it up.", "reasoning_field": "reasoning_content",
        "text": "Let me look that up.", "chunk_size": 3,
        "tool_calls": [{"id": "call_o7", "name": "lookup_order", "arguments": {"order_id": "7"}}],
        "usage": {"prompt_tokens": 20, "completion_tokens": 9},
    })
    kwargs = dict(model="sdk-stream", input="Where is order 7?", tools=TOOLS,
                  include=["reasoning.encrypted_content"], store=False)
    with client.responses.stream(**kwargs) as stream:
        seen = [event.type for event in stream]
        streamed = stream.get_final_response()
    as_json = client.responses.create(**kwargs)

    assert "response.reasoning_text.delta" in seen and "response.function_call_arguments.delta" in seen
    assert [i.type for i in streamed.output] == ["reasoning", "message", "function_call"]
    assert _normalized(streamed) == _normalized(as_json)
    assert streamed.output_text == as_json.output_text == "Let me look that up."
    assert streamed.output[0].content[0].text == "The user wants order 7; look it up."
    assert streamed.output[0].encrypted_content and streamed.output[0].encrypted_content == as_json.output[0].encrypted_content
    call = streamed.output[2]
    assert (call.call_id, call.name, json.loads(call.arguments)) == ("call_o7", "lookup_order", {"order_id": "7"})
    assert streamed.usage == as_json.usage and streamed.usage.total_tokens == 29
    assert streamed.status == as_json.status == "completed"

    finals = check_exchanges(tap)
    assert len(finals) == 2
    assert tap.exchanges[0].response_headers["content-type"].startswith("text/event-stream")
    assert tap.exchanges[1].response_headers["content-type"].startswith("application/json")
    # On the wire too: the streamed final Response has the same output as the JSON one.
    wire = [[{k: v for k, v in item.items() if k != "id"} for item in f["output"]] for f in finals]
    assert wire[0] == wire[1]


@pytest.mark.parametrize("stream", [False, True], ids=["json", "stream"])
def test_bad_request_is_bad_request_error(client, tap, mock, stream):
    with pytest.raises(openai.BadRequestError) as info:
        client.responses.create(model="sdk-err", input="hi", temperature=5, stream=stream)
    assert info.value.status_code == 400
    assert info.value.param == "temperature"
    assert info.value.type == "invalid_request_error"
    assert mock.requests("sdk-err") == []  # refused before the backend
    check_exchanges(tap)


@pytest.mark.parametrize("stream", [False, True], ids=["json", "stream"])
@pytest.mark.parametrize(
    ("status", "error_class", "proxy_status"),
    [
        (429, openai.RateLimitError, 429),
        (401, openai.AuthenticationError, 401),
        (500, openai.APIStatusError, 502),
    ],
)
def test_backend_errors_surface_as_sdk_classes(client, tap, mock, stream, status, error_class, proxy_status):
    model = f"sdk-backend-{status}"
    headers = {"retry-after": "7"} if status == 429 else {}
    mock.script(model, {"status": status, "headers": headers, "error": {"message": f"backend says {status}"}})
    with pytest.raises(error_class) as info:
        client.responses.create(model=model, input="hi", stream=stream)
    assert info.value.status_code == proxy_status
    assert isinstance(info.value, openai.APIStatusError)
    if status == 429:
        assert info.value.response.headers.get("retry-after") == "7"
    if status == 500:
        assert isinstance(info.value, openai.InternalServerError)
    assert len(mock.requests(model)) == 1  # max_retries=0: exactly one upstream attempt
    check_exchanges(tap)
    err = json.loads(tap.exchanges[0].response_body)["error"]
    if status < 500:
        assert err["message"] == f"backend says {status}"  # the backend's own words reach the client
