"""The emitter of JSON mode (``emit_events=False``): indexes and slots, no events.

A non-streaming client gets only the final Response, so the same state machine
runs but no event dict is ever built: every constructor is overridden with a
no-op of the same signature (no ``*args`` packing, so a token costs no
allocation), except the two that hand out output indexes and place items.
"""
from __future__ import annotations

from ..shapes import Logprob, MessagePart, OutputItem, ReasoningTextPart, Response, SummaryTextPart, UrlCitation
from .events import Emitter


class SilentEmitter(Emitter):
    __slots__ = ()

    live = False

    def output_item_added(self, item: OutputItem) -> int:
        self.slots.append(None)
        return len(self.slots) - 1

    def output_item_done(self, index: int, item: OutputItem) -> None:
        self.slots[index] = item

    def response_created(self, response: Response) -> None:
        pass

    def response_queued(self, response: Response) -> None:
        pass

    def response_in_progress(self, response: Response) -> None:
        pass

    def response_completed(self, response: Response) -> None:
        pass

    def response_incomplete(self, response: Response) -> None:
        pass

    def response_failed(self, response: Response) -> None:
        pass

    def error(self, code: str, message: str) -> None:
        pass

    def content_part_added(self, item_id: str, index: int, part_index: int,
                           part: MessagePart | ReasoningTextPart) -> None:
        pass

    def content_part_done(self, item_id: str, index: int, part_index: int,
                          part: MessagePart | ReasoningTextPart) -> None:
        pass

    def output_text_delta(self, item_id: str, index: int, part_index: int, delta: str,
                          logprobs: list[Logprob] | None) -> None:
        pass

    def output_text_done(self, item_id: str, index: int, part_index: int, text: str, logprobs: list[Logprob]) -> None:
        pass

    def output_text_annotation_added(self, item_id: str, index: int, part_index: int, annotation_index: int,
                                     annotation: UrlCitation) -> None:
        pass

    def refusal_delta(self, item_id: str, index: int, part_index: int, delta: str) -> None:
        pass

    def refusal_done(self, item_id: str, index: int, part_index: int, refusal: str) -> None:
        pass

    def reasoning_text_delta(self, item_id: str, index: int, delta: str) -> None:
        pass

    def reasoning_text_done(self, item_id: str, index: int, text: str) -> None:
        pass

    def reasoning_summary_part_added(self, item_id: str, index: int, part: SummaryTextPart) -> None:
        pass

    def reasoning_summary_part_done(self, item_id: str, index: int, part: SummaryTextPart, incomplete: bool) -> None:
        pass

    def reasoning_summary_text_delta(self, item_id: str, index: int, delta: str) -> None:
        pass

    def reasoning_summary_text_done(self, item_id: str, index: int, text: str) -> None:
        pass

    def function_call_arguments_delta(self, item_id: str, index: int, delta: str) -> None:
        pass

    def function_call_arguments_done(self, item_id: str, index: int, arguments: str) -> None:
        pass

    def custom_tool_call_input_delta(self, item_id: str, index: int, delta: str) -> None:
        pass

    def custom_tool_call_input_done(self, item_id: str, index: int, input: str) -> None:
        pass
