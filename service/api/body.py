"""JSON request bodies, parsed so that no client text can break validation.

Python's json module returns two kinds of value that JSON allows but nothing downstream can
use: a string holding a lone surrogate (the escape "\\ud800", or its UTF-8 bytes, which
json decodes with surrogatepass), which cannot be encoded (pydantic raised
UnicodeEncodeError on one: a 500); and an integer of more digits than Python converts
(sys.get_int_max_str_digits(), 4300), whose ValueError came before validation could say
which field it was in. Each becomes a Rejected value where it stood, which no field accepts:
validation then fails at that very field, and app._validation_error answers a 422 with the
Rejected value's reason as the message. An object key that is not Unicode text is spelt
with backslash escapes instead: an unknown field, named readably."""
from __future__ import annotations

import json
import sys
from dataclasses import dataclass
from typing import Any, Callable

from fastapi import Request
from fastapi.routing import APIRoute

MAX_INT_DIGITS = sys.get_int_max_str_digits() or 4300  # 0 would be no limit: keep Python's default then


@dataclass(frozen=True)
class Rejected:
    """A JSON value the server will not use. `type` and `reason` become the 422's type and message."""

    type: str
    reason: str


def _integer(text: str) -> int | Rejected:
    digits = len(text.lstrip("-"))
    if digits > MAX_INT_DIGITS:
        return Rejected("int_parsing_size", f"integer has too many digits ({digits}; at most {MAX_INT_DIGITS})")
    return int(text)


def _is_text(text: str) -> bool:
    return text.isascii() or not any("\ud800" <= c <= "\udfff" for c in text)


def _text(text: str) -> str | Rejected:
    if _is_text(text):
        return text
    at = next(i for i, c in enumerate(text) if "\ud800" <= c <= "\udfff")
    return Rejected("string_unicode", f"not valid Unicode text: a lone surrogate {text[at]!a} at character {at}")


def _clean(value: Any) -> Any:
    """`value` with each string that is not Unicode text replaced (in place, without
    recursion: the nesting json accepts can be deeper than this stack allows)."""
    if isinstance(value, str):
        return _text(value)
    stack = [value]
    while stack:
        node = stack.pop()
        if isinstance(node, dict):
            for key in [k for k in node if not _is_text(k)]:
                node[key.encode("utf-8", "backslashreplace").decode("ascii")] = node.pop(key)
            entries: Any = node.items()
        elif isinstance(node, list):
            entries = enumerate(node)
        else:
            continue
        for k, v in list(entries):
            if isinstance(v, str):
                node[k] = _text(v)
            elif isinstance(v, (dict, list)):
                stack.append(v)
    return value


def parse_json(body: bytes) -> Any:
    """The body as json.loads reads it, with Rejected values for what no field may take.
    Other failures raise as json.loads raises them (FastAPI turns JSONDecodeError into a 422
    and anything else into HTTPException(400) from it: see app._http_error)."""
    return _clean(json.loads(body, parse_int=_integer))


class JsonBodyRequest(Request):
    async def json(self) -> Any:
        if not hasattr(self, "_json"):
            self._json = parse_json(await self.body())
        return self._json


class JsonBodyRoute(APIRoute):
    """The route class of the routers whose operations take a JSON body."""

    def get_route_handler(self) -> Callable:
        handler = super().get_route_handler()

        async def route_handler(request: Request):
            return await handler(JsonBodyRequest(request.scope, request.receive))

        return route_handler
