"""Input content parts → chat content: text joined, images and files as chat parts.

A message or tool result whose parts are all text becomes one plain string
(what every chat template accepts); with an image or file it becomes the chat
parts list, text parts kept in place. Images and files are allowed only where
Chat Completions takes them (user messages and tool results); ``file_id``
references are refused, this server has no file store.
"""
from __future__ import annotations

from typing import Any, NamedTuple

from . import validate as v
from .errors import InvalidRequest

IMAGE_DETAILS = ("auto", "low", "high")

ChatContent = str | list[dict[str, Any]]


class Place(NamedTuple):
    """Where parts are given: the text part types it takes, by the key holding their text (the
    rest are the other side's), if it takes images and files, and OpenAI's list of its part types
    as its 400 names them."""

    texts: dict[str, str]
    rich: bool
    supported: str


# A part of the other side (an ``output_text``, ``refusal``, ``summary_text`` or ``reasoning_text``
# given by a user, a system or developer message, or a tool; an ``input_text`` in an assistant
# message) was taken as text and stored as sent, so every later listing failed the openai SDK's
# item types, each of which names its own side's parts (as the Open Responses spec does). OpenAI
# refuses them, word for word the 400 of ``_misplaced``.
_INPUT_SIDE = "'input_text', 'input_image', 'input_file', 'scoped_content', and 'input_audio'"
_INPUT_TEXT = {"input_text": "text"}
USER = Place(_INPUT_TEXT, True, _INPUT_SIDE)
SYSTEM = Place(_INPUT_TEXT, False, _INPUT_SIDE)  # (system and developer)
ASSISTANT = Place({"output_text": "text", "refusal": "refusal"}, False, "'output_text' and 'refusal'")
TOOL = Place(_INPUT_TEXT, True, "'input_text', 'input_image', 'input_file', and 'scoped_content'")
_EITHER_SIDE = {"input_text": "text", "output_text": "text", "refusal": "refusal", "summary_text": "text",
                "reasoning_text": "text"}  # every text part type, by the key holding its text
_TEXT_PARTS = tuple(_EITHER_SIDE)  # (a tuple: a part type may be any JSON value, hashable or not)


class Places(NamedTuple):
    """The place of each kind of item's parts."""

    user: Place
    system: Place  # (and developer)
    assistant: Place
    tool: Place


SENT = Places(USER, SYSTEM, ASSISTANT, TOOL)
# Each place as it reads an item from the store (a chain's or a conversation's context): a text
# part of either side is its text there, as it was before such parts were refused, so a context
# stored then is still answered — the 400 would name an input item its client never sent
# (``messages.translate_input``'s ``stored``).
STORED = Places(*(Place(_EITHER_SIDE, place.rich, place.supported) for place in SENT))


def _misplaced(ptype: Any, place: Place, param: str) -> InvalidRequest:
    return InvalidRequest(f"Invalid value: '{ptype}'. Supported values are: {place.supported}.", param,
                          "invalid_value")


# The text parts of the other side, by the text part type of the place listing them: refused in
# input (``_misplaced``), but a store may hold some taken before that; listed as that type.
_OTHER_SIDE = {"input_text": ("output_text", "refusal", "summary_text", "reasoning_text"),
               "output_text": ("input_text", "summary_text", "reasoning_text")}


def listed_parts(parts: Any, own: str = "input_text") -> Any:
    """``parts`` as the API lists them, in a place whose text parts are ``own`` (``output_text``
    for an assistant message): an ``input_image`` that left out ``detail`` gets OpenAI's default
    ``auto``, which the SDK's listed types (``ResponseInputImage``) require, and one sent with the
    tolerated Chat-style ``image_url: {"url": …}`` has the URL string the SDK declares; a text part
    of the other side, stored before such parts were refused, is an ``own`` part of its text, as
    the backend read it. ``parts`` itself when none needs it (or it is not a list); the given parts
    are not modified."""
    if not isinstance(parts, list) or not any(_unlisted(p, own) for p in parts):
        return parts
    return [_listed(p, own) if _unlisted(p, own) else p for p in parts]


def _unlisted(part: Any, own: str) -> bool:
    if not isinstance(part, dict):
        return False
    ptype = part.get("type")
    if ptype == own:  # (nearly every part)
        return False
    if ptype == "input_image":
        return part.get("detail") is None or isinstance(part.get("image_url"), dict)
    return ptype in _OTHER_SIDE[own]


def _listed(part: dict[str, Any], own: str) -> dict[str, Any]:
    ptype = part.get("type")
    if ptype == "input_image":
        return _listed_image(part)
    text = part.get("refusal" if ptype == "refusal" else "text")
    fixed = {"type": own, "text": text if isinstance(text, str) else ""}
    return {**fixed, "annotations": []} if own == "output_text" else fixed


def _listed_image(part: dict[str, Any]) -> dict[str, Any]:
    url = part.get("image_url")
    fixed = {**part, "detail": part.get("detail") or "auto"}
    if isinstance(url, dict):
        fixed["image_url"] = url.get("url")
    return fixed


def _image_part(part: dict[str, Any], param: str) -> dict[str, Any]:
    url = part.get("image_url")
    if url is None:
        if part.get("file_id") is not None:
            raise InvalidRequest(
                f"Invalid '{param}': 'file_id' images are not supported (this server has no file store); "
                "send 'image_url' with a URL or a data URL instead.",
                param + ".file_id",
            )
        raise v.missing(param + ".image_url", "a URL or a base64 data URL")
    if isinstance(url, dict):  # Chat-style {"url": ...}, tolerated (listed as the string: listed_parts)
        url = url.get("url")
    if not isinstance(url, str) or not url:
        raise v.fail(param + ".image_url", "a URL or data URL string", url)
    v.check_strings(part, ("file_id",), param)
    image: dict[str, Any] = {"url": url}
    detail = part.get("detail")
    if detail is not None:
        if detail in IMAGE_DETAILS:
            image["detail"] = detail
        elif detail != "original":  # (the SDK's ImageDetail; no chat equivalent: the backend's default)
            raise v.fail(param + ".detail", "'auto', 'low', 'high' or 'original'", detail)
    return {"type": "image_url", "image_url": image}


def _file_part(part: dict[str, Any], param: str) -> dict[str, Any]:
    file: dict[str, Any] = {}
    data = part.get("file_data")
    url = part.get("file_url")
    if data is not None:
        if not isinstance(data, str):
            raise v.fail(param + ".file_data", "a base64 string or data URL", data)
        file["file_data"] = data
    elif url is not None:
        if not isinstance(url, str):
            raise v.fail(param + ".file_url", "a URL string", url)
        file["file_url"] = url
    elif part.get("file_id") is not None:
        raise InvalidRequest(
            f"Invalid '{param}': 'file_id' files are not supported (this server has no file store); "
            "send 'file_data' or 'file_url' instead.",
            param + ".file_id",
        )
    else:
        raise v.missing(param + ".file_data", "or 'file_url'")
    v.check_strings(part, _FILE_STRINGS, param)  # (the one sent was checked above: the others are stored)
    detail = part.get("detail")
    if detail is not None and detail not in IMAGE_DETAILS:
        raise v.fail(param + ".detail", "'auto', 'low' or 'high'", detail)
    filename = part.get("filename")
    if filename is not None:
        file["filename"] = filename
    return {"type": "file", "file": file}


_FILE_STRINGS = ("file_data", "file_url", "file_id", "filename")
_CACHE_TTLS = ("30m", "12h")


def _check_breakpoint(part: dict[str, Any], param: str) -> None:
    """An input part's ``prompt_cache_breakpoint`` (the SDK's PromptCacheBreakpoint: ``mode``
    ``explicit``, an optional ``ttl``). Not a chat concept; stored and listed as sent."""
    mark = part["prompt_cache_breakpoint"]
    if mark is None:
        return
    param += ".prompt_cache_breakpoint"
    if not isinstance(mark, dict):
        raise v.fail(param, "an object", mark)
    mode = mark.get("mode")
    if mode != "explicit":
        raise v.wrong(param + ".mode", "'explicit'", mode)
    ttl = mark.get("ttl")
    if ttl is not None and ttl not in _CACHE_TTLS:
        raise v.fail(param + ".ttl", "'30m' or '12h'", ttl)


def _text_of(part: dict[str, Any], key: str, param: str) -> str:
    text = part.get(key)
    if not isinstance(text, str):
        raise v.wrong(f"{param}.{key}", "a string", text)
    return text


# The fields each annotation kind of the openai SDK's ResponseOutputText requires (the spec's
# UrlCitationParam is the first): a replayed output_text part is stored and listed as sent.
_ANNOTATION_FIELDS: dict[str, dict[str, type]] = {
    "url_citation": {"start_index": int, "end_index": int, "url": str, "title": str},
    "file_citation": {"file_id": str, "filename": str, "index": int},
    "container_file_citation": {"container_id": str, "file_id": str, "filename": str, "start_index": int,
                                "end_index": int},
    "file_path": {"file_id": str, "index": int},
}


def _check_fields(obj: Any, fields: dict[str, type], param: str) -> None:
    if not isinstance(obj, dict):
        raise v.fail(param, "an object", obj)
    for name, kind in fields.items():
        value = obj.get(name)
        ok = v.is_int(value) if kind is int else v.is_number(value) if kind is float else isinstance(value, kind)
        if not ok:
            expected = {int: "an integer", float: "a number", str: "a string", list: "an array"}[kind]
            raise v.wrong(f"{param}.{name}", expected, value)


def _check_output_text(part: dict[str, Any], param: str) -> None:
    """An output_text part's ``annotations`` and ``logprobs`` (never sent upstream, but stored and
    listed back): shaped as the openai SDK's ResponseOutputText takes them, or a 400."""
    if "annotations" in part:  # (null too: it would be listed as null)
        annotations = part["annotations"]
        if not isinstance(annotations, list):
            raise v.fail(param + ".annotations", "an array of annotations", annotations)
        for k, note in enumerate(annotations):
            nparam = f"{param}.annotations[{k}]"
            kind = note.get("type") if isinstance(note, dict) else None
            fields = _ANNOTATION_FIELDS.get(kind) if isinstance(kind, str) else None
            if fields is None:
                raise v.fail(nparam + ".type", "'url_citation', 'file_citation', 'container_file_citation' or "
                             "'file_path'", kind) if isinstance(note, dict) else v.fail(nparam, "an object", note)
            _check_fields(note, fields, nparam)
    logprobs = part.get("logprobs")
    if logprobs is None:
        return
    if not isinstance(logprobs, list):
        raise v.fail(param + ".logprobs", "an array of log probabilities", logprobs)
    for k, lp in enumerate(logprobs):
        _check_logprob(lp, f"{param}.logprobs[{k}]", True)


def _check_logprob(obj: Any, param: str, with_top: bool) -> None:
    fields: dict[str, type] = {"token": str, "logprob": float, "bytes": list}
    _check_fields(obj, {**fields, "top_logprobs": list} if with_top else fields, param)
    if not all(v.is_int(b) for b in obj["bytes"]):
        raise v.fail(param + ".bytes", "an array of integers", obj["bytes"])
    if with_top:
        for t, alt in enumerate(obj["top_logprobs"]):
            _check_logprob(alt, f"{param}.top_logprobs[{t}]", False)


def _parts(content: list[Any], param: str, place: Place, joiner: str) -> ChatContent:
    """Content parts → a plain string when all are text, else chat parts.

    ``place`` says which text parts are taken and whether images/files are
    allowed (user messages and tool results); assistant and system content
    must be text.
    """
    texts: list[str] = []
    parts: list[dict[str, Any]] | None = None
    own = place.texts
    for j, part in enumerate(content):
        pparam = f"{param}[{j}]"
        if not isinstance(part, dict):
            raise v.fail(pparam, "a content part object", part)
        ptype: Any = part.get("type")
        try:
            key = own.get(ptype)
        except TypeError:  # (not hashable: no part type, refused below)
            key = None
        if key is not None:
            chat = {"type": "text", "text": _text_of(part, key, pparam)}
            if ptype == "output_text":
                _check_output_text(part, pparam)
            elif "prompt_cache_breakpoint" in part and ptype == "input_text":
                _check_breakpoint(part, pparam)
        elif ptype in _TEXT_PARTS:  # the other side's (before its fields, as OpenAI names it)
            raise _misplaced(ptype, place, pparam)
        elif ptype in ("input_image", "input_file") and place.rich:
            if "prompt_cache_breakpoint" in part:
                _check_breakpoint(part, pparam)
            chat = _image_part(part, pparam) if ptype == "input_image" else _file_part(part, pparam)
        elif ptype in ("input_image", "input_file"):
            raise InvalidRequest(
                f"Invalid '{pparam}': {ptype} is only supported in user messages and tool outputs.",
                pparam + ".type",
            )
        elif ptype == "input_audio" or ptype == "input_video":
            raise InvalidRequest(
                f"Invalid '{pparam}': {ptype} content is not supported by this server; "
                "send text, images (input_image) or files (input_file).",
                pparam + ".type",
                "unsupported_content_type",
            )
        else:
            raise v.fail(pparam + ".type", "a content part type such as 'input_text'", ptype)
        if parts is None:
            if chat["type"] == "text":
                texts.append(chat["text"])
                continue
            parts = [{"type": "text", "text": t} for t in texts]
        parts.append(chat)
    return joiner.join(texts) if parts is None else parts


def message_content(item: dict[str, Any], param: str, place: Place, joiner: str) -> ChatContent:
    content = item.get("content")
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return _parts(content, param + ".content", place, joiner)
    if content is None:
        raise v.missing(param + ".content")
    raise v.fail(param + ".content", "a string or an array of content parts", content)


def text_content(item: dict[str, Any], param: str, place: Place, joiner: str) -> str:
    """Content that must be text (assistant, system, developer messages): one string.

    Without images or files allowed, every part is text, so the parts are always joined.
    """
    content = message_content(item, param, place, joiner)
    assert isinstance(content, str)
    return content


def tool_output(item: dict[str, Any], param: str, place: Place = TOOL) -> ChatContent:
    output = item.get("output")
    if isinstance(output, str):
        return output
    if isinstance(output, list):
        return _parts(output, param + ".output", place, "\n")
    if output is None:
        raise v.missing(param + ".output")
    raise v.fail(param + ".output", "a string or an array of content parts", output)
