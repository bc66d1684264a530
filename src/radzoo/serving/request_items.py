"""The inputs of an embeddings request -> image bytes, texts, or the error that names each item.

Accepted in ``input`` (one value or a list), so clients of other servers work unchanged:

* a string: an image as base64 or a ``data:`` URL (radzoo's and OpenAI-style clients); a text
  when ``input_type`` (radzoo) or ``modality`` (Infinity) is ``"text"``; an ``http(s)`` URL only
  for allow-listed hosts (:mod:`radzoo.serving.url_fetch`);
* ``{"type": "text", "text": "..."}`` and ``{"type": "image_url", "image_url": {"url": "..."}}``
  items (OpenAI chat content parts, as vLLM takes them); image and text items may be mixed.

A bad item becomes that item's error; only a malformed request as a whole raises.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from radzoo.errors import InputError, RadzooError
from radzoo.serving.payloads import decode_image_string
from radzoo.serving.url_fetch import UrlFetcher

#: Longest text item accepted (characters); the tokenizer truncates to the model's length anyway.
MAX_TEXT_CHARS = 20_000
KINDS = ("image", "text")
ITEM_TYPES = ("text", "image_url")


@dataclass(frozen=True)
class TextItem:
    """A text to embed in the model's joint image-text space."""

    text: str


#: One request item: an image file's bytes, a text, or the error met while extracting it.
Item = bytes | TextItem | RadzooError


def request_kind(input_type: str | None, modality: str | None) -> str:
    """What plain strings in ``input`` are: ``input_type`` (radzoo) or ``modality`` (Infinity); default images."""
    if input_type and modality and input_type != modality:
        raise InputError(f"input_type {input_type!r} and modality {modality!r} disagree; send one of them")
    return input_type or modality or "image"


def image_bytes(value: Any, index: int, fetcher: UrlFetcher) -> bytes:
    """An image string (base64, data URL, allow-listed http(s) URL) -> the file's bytes."""
    if isinstance(value, str) and value.lstrip()[:8].lower().startswith(("http://", "https://")):
        return fetcher.fetch(value.strip(), index)
    return decode_image_string(value, index)


def parse_item(value: Any, index: int, kind: str, fetcher: UrlFetcher) -> bytes | TextItem:
    """One ``input`` value -> image bytes or a text (raises ``InputError`` naming the item)."""
    where = f"input[{index}]"
    if isinstance(value, str):
        return _text(value, where) if kind == "text" else image_bytes(value, index, fetcher)
    if not isinstance(value, dict):
        raise InputError(f"{where}: expected a string or an object with a 'type', got {type(value).__name__}")
    item_type = value.get("type")
    if item_type == "text":
        return _text(value.get("text"), where + ".text")
    if item_type == "image_url":
        ref = value.get("image_url")
        url = ref.get("url") if isinstance(ref, dict) else ref
        if not isinstance(url, str):
            raise InputError(f"{where}: an image_url item needs {{'image_url': {{'url': 'data:...'}}}}")
        return image_bytes(url, index, fetcher)
    raise InputError(f"{where}: unknown item type {item_type!r}; use one of {', '.join(ITEM_TYPES)}")


def parse_items(values: list[Any], kind: str, fetcher: UrlFetcher) -> list[Item]:
    """Every value parsed, or the error that names it (per-item errors are not fatal)."""
    items: list[Item] = []
    for index, value in enumerate(values):
        try:
            items.append(parse_item(value, index, kind, fetcher))
        except RadzooError as exc:
            items.append(exc)
    return items


def _text(value: Any, where: str) -> TextItem:
    if not isinstance(value, str) or not value.strip():
        raise InputError(f"{where}: expected a non-empty text")
    if len(value) > MAX_TEXT_CHARS:
        raise InputError(f"{where}: text of {len(value)} characters exceeds the limit of {MAX_TEXT_CHARS}")
    return TextItem(value)
