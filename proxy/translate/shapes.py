"""The JSON shapes the core produces, as types: the Response object and what it holds.

They are ``TypedDict`` s, so at run time they are the plain dicts that orjson
serializes (no conversion, no copies on the hot path), while mypy checks every
key the code writes. Key order on the wire is the order of the dict literals
that build them, not of these declarations. Stream events are ``Event``:
their shapes are spelled once each, by the constructors in
``proxy.translate.stream.events``.
"""
from __future__ import annotations

from typing import Any, Literal, NotRequired, TypedDict

# One streamed event: {"type", "sequence_number", ...}.
Event = dict[str, Any]

ItemStatus = Literal["in_progress", "completed", "incomplete"]
ResponseStatus = Literal["queued", "in_progress", "completed", "incomplete", "failed", "cancelled"]


class TopLogprob(TypedDict):
    token: str
    logprob: float
    bytes: list[int]


class Logprob(TypedDict):
    token: str
    logprob: float
    bytes: list[int]
    top_logprobs: list[TopLogprob]


class UrlCitation(TypedDict):
    type: Literal["url_citation"]
    url: str
    title: str
    start_index: int
    end_index: int


class OutputTextPart(TypedDict):
    type: Literal["output_text"]
    text: str
    annotations: list[UrlCitation]
    logprobs: list[Logprob]


class RefusalPart(TypedDict):
    type: Literal["refusal"]
    refusal: str


class ReasoningTextPart(TypedDict):
    type: Literal["reasoning_text"]
    text: str


class SummaryTextPart(TypedDict):
    type: Literal["summary_text"]
    text: str


MessagePart = OutputTextPart | RefusalPart


class MessageItem(TypedDict):
    id: str
    type: Literal["message"]
    status: ItemStatus
    content: list[MessagePart]
    role: Literal["assistant"]


class ReasoningItem(TypedDict):
    id: str
    type: Literal["reasoning"]
    summary: list[SummaryTextPart]
    content: NotRequired[list[ReasoningTextPart]]  # absent in summary mode, as OpenAI sends it
    status: ItemStatus
    encrypted_content: NotRequired[str]


class FunctionCallItem(TypedDict):
    id: str
    type: Literal["function_call"]
    status: ItemStatus
    arguments: str
    call_id: str
    name: str
    namespace: NotRequired[str]


class CustomToolCallItem(TypedDict):
    id: str
    type: Literal["custom_tool_call"]
    status: ItemStatus
    call_id: str
    input: str
    name: str
    namespace: NotRequired[str]


OutputItem = MessageItem | ReasoningItem | FunctionCallItem | CustomToolCallItem


class InputTokensDetails(TypedDict):
    cached_tokens: int
    cache_write_tokens: int


class OutputTokensDetails(TypedDict):
    reasoning_tokens: int


class Usage(TypedDict):
    input_tokens: int
    input_tokens_details: InputTokensDetails
    output_tokens: int
    output_tokens_details: OutputTokensDetails
    total_tokens: int


class ResponseError(TypedDict):
    code: str
    message: str


class IncompleteDetails(TypedDict):
    reason: str


class ConversationRef(TypedDict):
    id: str


class Response(TypedDict):
    """The spec's ResponseResource's 31 keys, then OpenAI's ``prompt_cache_retention`` and
    ``user`` (plus ``conversation``, OpenAI's too, when the request named one)."""

    id: str
    object: Literal["response"]
    created_at: int
    completed_at: int | None
    status: ResponseStatus
    incomplete_details: IncompleteDetails | None
    model: str
    previous_response_id: Any
    instructions: Any
    output: list[OutputItem]
    error: ResponseError | None
    tools: Any
    tool_choice: Any
    truncation: Any
    parallel_tool_calls: Any
    text: Any
    top_p: Any
    presence_penalty: Any
    frequency_penalty: Any
    top_logprobs: Any
    temperature: Any
    reasoning: Any
    usage: Usage | None
    max_output_tokens: Any
    max_tool_calls: Any
    store: Any
    background: Any
    service_tier: Any
    metadata: Any
    safety_identifier: Any
    prompt_cache_key: Any
    prompt_cache_retention: Any
    user: Any
    # Only when the request set the option (proxy.translate.options).
    access_programs: NotRequired[dict[str, Any]]
    image: NotRequired[dict[str, Any]]
    prompt_cache_options: NotRequired[dict[str, Any]]
    prompt_cache_diagnostics: NotRequired[dict[str, Any]]
    conversation: NotRequired[ConversationRef]
