"""The emitter: sequence numbers, output indexes, and the shape of every event.

Each event type has one constructor here, named after it, and no event dict is
built anywhere else. The item builders call them; the translator hands the
list they fill (``out``, a new one per call) to its caller. Sequence numbers
count every event of the response from 0, in the order built. Output indexes
are handed out by ``output_item_added`` and the closed items sit in ``slots``
at their index, so ``output()`` is the Response's ``output`` in index order
whatever order the items closed in.

The ``error`` event has **OpenAI's flat shape** ``{type: "error", code,
message, param, sequence_number}``. Open Responses nests these under an
``error`` key, but the openai SDK raises ``APIError`` on any event whose
``error`` key is truthy, which would abort the stream before the
``response.failed`` event that real OpenAI sends after it.

JSON mode uses ``SilentEmitter`` (``silent.py``): the same indexes and slots,
no events.
"""
from __future__ import annotations

from ..shapes import Event, Logprob, MessagePart, OutputItem, ReasoningTextPart, Response, SummaryTextPart, UrlCitation


class Emitter:
    """Builds the events of one response into ``out``."""

    __slots__ = ("out", "_seq", "slots")

    live = True  # events are built (False in JSON mode: nothing per token is worth doing)

    def __init__(self) -> None:
        self.out: list[Event] = []
        self._seq = 0
        # Closed items by output_index; an open item's slot is None until its output_item.done.
        self.slots: list[OutputItem | None] = []

    def output(self) -> list[OutputItem]:
        """The closed items in output_index order."""
        return [item for item in self.slots if item is not None]

    @property
    def last_index(self) -> int:
        """The output_index of the newest item (-1 before any)."""
        return len(self.slots) - 1

    # Each constructor below takes the next sequence number inline (no helper
    # call): they run once per streamed token.

    # ------------------------------------------------------------- response

    def response_created(self, response: Response) -> None:
        seq = self._seq
        self._seq = seq + 1
        self.out.append({"type": "response.created", "sequence_number": seq, "response": response})

    def response_queued(self, response: Response) -> None:
        seq = self._seq
        self._seq = seq + 1
        self.out.append({"type": "response.queued", "sequence_number": seq, "response": response})

    def response_in_progress(self, response: Response) -> None:
        seq = self._seq
        self._seq = seq + 1
        self.out.append({"type": "response.in_progress", "sequence_number": seq, "response": response})

    def response_completed(self, response: Response) -> None:
        seq = self._seq
        self._seq = seq + 1
        self.out.append({"type": "response.completed", "sequence_number": seq, "response": response})

    def response_incomplete(self, response: Response) -> None:
        seq = self._seq
        self._seq = seq + 1
        self.out.append({"type": "response.incomplete", "sequence_number": seq, "response": response})

    def response_failed(self, response: Response) -> None:
        seq = self._seq
        self._seq = seq + 1
        self.out.append({"type": "response.failed", "sequence_number": seq, "response": response})

    def error(self, code: str, message: str) -> None:
        seq = self._seq
        self._seq = seq + 1
        self.out.append({"type": "error", "sequence_number": seq, "code": code, "message": message, "param": None})

    # ---------------------------------------------------------------- items

    def output_item_added(self, item: OutputItem) -> int:
        """Give the item the next output_index, announce it, and return the index."""
        index = len(self.slots)
        self.slots.append(None)
        seq = self._seq
        self._seq = seq + 1
        self.out.append({"type": "response.output_item.added", "sequence_number": seq, "output_index": index,
                         "item": item})
        return index

    def output_item_done(self, index: int, item: OutputItem) -> None:
        self.slots[index] = item
        seq = self._seq
        self._seq = seq + 1
        self.out.append({"type": "response.output_item.done", "sequence_number": seq, "output_index": index,
                         "item": item})

    def content_part_added(self, item_id: str, index: int, part_index: int,
                           part: MessagePart | ReasoningTextPart) -> None:
        seq = self._seq
        self._seq = seq + 1
        self.out.append({"type": "response.content_part.added", "sequence_number": seq, "item_id": item_id,
                         "output_index": index, "content_index": part_index, "part": part})

    def content_part_done(self, item_id: str, index: int, part_index: int,
                          part: MessagePart | ReasoningTextPart) -> None:
        seq = self._seq
        self._seq = seq + 1
        self.out.append({"type": "response.content_part.done", "sequence_number": seq, "item_id": item_id,
                         "output_index": index, "content_index": part_index, "part": part})

    # -------------------------------------------------------------- message

    def output_text_delta(self, item_id: str, index: int, part_index: int, delta: str,
                          logprobs: list[Logprob] | None) -> None:
        seq = self._seq
        self._seq = seq + 1
        self.out.append({"type": "response.output_text.delta", "sequence_number": seq, "item_id": item_id,
                         "output_index": index, "content_index": part_index, "delta": delta,
                         "logprobs": logprobs or []})

    def output_text_done(self, item_id: str, index: int, part_index: int, text: str, logprobs: list[Logprob]) -> None:
        seq = self._seq
        self._seq = seq + 1
        self.out.append({"type": "response.output_text.done", "sequence_number": seq, "item_id": item_id,
                         "output_index": index, "content_index": part_index, "text": text, "logprobs": logprobs})

    def output_text_annotation_added(self, item_id: str, index: int, part_index: int, annotation_index: int,
                                     annotation: UrlCitation) -> None:
        seq = self._seq
        self._seq = seq + 1
        self.out.append({"type": "response.output_text.annotation.added", "sequence_number": seq,
                         "item_id": item_id, "output_index": index, "content_index": part_index,
                         "annotation_index": annotation_index, "annotation": annotation})

    def refusal_delta(self, item_id: str, index: int, part_index: int, delta: str) -> None:
        seq = self._seq
        self._seq = seq + 1
        self.out.append({"type": "response.refusal.delta", "sequence_number": seq, "item_id": item_id,
                         "output_index": index, "content_index": part_index, "delta": delta})

    def refusal_done(self, item_id: str, index: int, part_index: int, refusal: str) -> None:
        seq = self._seq
        self._seq = seq + 1
        self.out.append({"type": "response.refusal.done", "sequence_number": seq, "item_id": item_id,
                         "output_index": index, "content_index": part_index, "refusal": refusal})

    # ------------------------------------------------------------ reasoning

    def reasoning_text_delta(self, item_id: str, index: int, delta: str) -> None:
        seq = self._seq
        self._seq = seq + 1
        self.out.append({"type": "response.reasoning_text.delta", "sequence_number": seq, "item_id": item_id,
                         "output_index": index, "content_index": 0, "delta": delta})

    def reasoning_text_done(self, item_id: str, index: int, text: str) -> None:
        seq = self._seq
        self._seq = seq + 1
        self.out.append({"type": "response.reasoning_text.done", "sequence_number": seq, "item_id": item_id,
                         "output_index": index, "content_index": 0, "text": text})

    def reasoning_summary_part_added(self, item_id: str, index: int, part: SummaryTextPart) -> None:
        seq = self._seq
        self._seq = seq + 1
        self.out.append({"type": "response.reasoning_summary_part.added", "sequence_number": seq,
                         "item_id": item_id, "output_index": index, "summary_index": 0, "part": part})

    def reasoning_summary_part_done(self, item_id: str, index: int, part: SummaryTextPart, incomplete: bool) -> None:
        seq = self._seq
        self._seq = seq + 1
        event: Event = {"type": "response.reasoning_summary_part.done", "sequence_number": seq, "item_id": item_id,
                        "output_index": index, "summary_index": 0, "part": part}
        if incomplete:
            event["status"] = "incomplete"  # OpenAI marks a summary part cut short this way (omitted otherwise)
        self.out.append(event)

    def reasoning_summary_text_delta(self, item_id: str, index: int, delta: str) -> None:
        seq = self._seq
        self._seq = seq + 1
        self.out.append({"type": "response.reasoning_summary_text.delta", "sequence_number": seq,
                         "item_id": item_id, "output_index": index, "summary_index": 0, "delta": delta})

    def reasoning_summary_text_done(self, item_id: str, index: int, text: str) -> None:
        seq = self._seq
        self._seq = seq + 1
        self.out.append({"type": "response.reasoning_summary_text.done", "sequence_number": seq,
                         "item_id": item_id, "output_index": index, "summary_index": 0, "text": text})

    # ----------------------------------------------------------- tool calls

    def function_call_arguments_delta(self, item_id: str, index: int, delta: str) -> None:
        seq = self._seq
        self._seq = seq + 1
        self.out.append({"type": "response.function_call_arguments.delta", "sequence_number": seq,
                         "item_id": item_id, "output_index": index, "delta": delta})

    def function_call_arguments_done(self, item_id: str, index: int, arguments: str) -> None:
        seq = self._seq
        self._seq = seq + 1
        self.out.append({"type": "response.function_call_arguments.done", "sequence_number": seq,
                         "item_id": item_id, "output_index": index, "arguments": arguments})

    def custom_tool_call_input_delta(self, item_id: str, index: int, delta: str) -> None:
        seq = self._seq
        self._seq = seq + 1
        self.out.append({"type": "response.custom_tool_call_input.delta", "sequence_number": seq,
                         "item_id": item_id, "output_index": index, "delta": delta})

    def custom_tool_call_input_done(self, item_id: str, index: int, input: str) -> None:
        seq = self._seq
        self._seq = seq + 1
        self.out.append({"type": "response.custom_tool_call_input.done", "sequence_number": seq,
                         "item_id": item_id, "output_index": index, "input": input})

