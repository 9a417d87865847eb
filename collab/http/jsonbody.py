"""Request bodies as JSON values that PostgreSQL and JSON itself can hold.

The standard library's parser accepts more than JSON: ``NaN`` and ``Infinity``, numbers
that overflow to an infinity (``1e999``), ``\\u0000`` (which no PostgreSQL text or
``jsonb`` value can hold) and lone surrogates (``\\ud800``, which UTF-8 cannot encode);
and it recurses once per level of nesting, so a body nested some thousand levels deep
raises ``RecursionError``. :func:`loads` refuses all of these with :class:`BadJson`,
naming where in the body the value is.
"""

from __future__ import annotations

import json
import math
import re
from typing import Any

#: deepest nesting of objects and arrays accepted (the API's models need about 6)
MAX_DEPTH = 64
_SHOWN_PATH = 120


class BadJson(ValueError):
    """A body that is not JSON (400) or holds a value the server cannot keep (422).
    ``field`` is the place in the body, as in validation errors (``""`` for the body)."""

    def __init__(self, status: int, message: str, field: str = "") -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.field = field


class _Unkept:
    """Stands for a NaN or infinity until its place in the body is known."""

    def __init__(self, message: str) -> None:
        self.message = message


#: the escapes a body needs to hold a NUL or a lone surrogate (raw, neither is valid JSON
#: or UTF-8); only bodies with one are walked string by string
_SUSPECT = re.compile(r"\\u(?:0000|[dD][89a-fA-F])")


def loads(raw: bytes) -> Any:
    """The JSON value of ``raw`` (UTF-8); ``null`` for an empty body."""
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise BadJson(400, f"request body is not UTF-8: {exc}") from None
    unkept: list[_Unkept] = []

    def constant(name: str) -> _Unkept:
        unkept.append(_Unkept(f"{name} is not a number JSON can hold"))
        return unkept[-1]

    def number(literal: str) -> float | _Unkept:
        value = float(literal)
        if math.isfinite(value):
            return value
        unkept.append(_Unkept("number out of range (JSON has no infinities)"))
        return unkept[-1]

    try:
        value = json.loads(text or "null", parse_constant=constant, parse_float=number)
    except RecursionError:
        raise BadJson(400, f"request body nests deeper than {MAX_DEPTH} levels") from None
    except ValueError as exc:
        raise BadJson(400, f"request body is not JSON: {exc}") from None
    # The checks walk with paths only when something may be wrong (a walk costs about
    # as much as validating the body); the common body is only measured for depth.
    if unkept or _SUSPECT.search(text) or _too_deep(value, text):
        _check(value)
    return value


def _too_deep(value: Any, text: str) -> bool:
    if not isinstance(value, (dict, list)) or text.count("{") + text.count("[") <= MAX_DEPTH:
        return False
    stack: list[tuple[Any, int]] = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        if depth > MAX_DEPTH:
            return True
        children = item.values() if isinstance(item, dict) else item
        stack.extend((child, depth + 1) for child in children if isinstance(child, (dict, list)))
    return False


def _check(value: Any) -> None:
    """Raise :class:`BadJson` at the first value that cannot be kept, naming its place."""
    # Iterative: the depth is what is being checked, so no recursion here.
    stack: list[tuple[Any, tuple[str | int, ...]]] = [(value, ())]
    while stack:
        item, path = stack.pop()
        if isinstance(item, dict):
            _deep(path)
            for key, child in item.items():
                _text(key, (*path, key), "key")
                stack.append((child, (*path, key)))
        elif isinstance(item, list):
            _deep(path)
            stack.extend((child, (*path, index)) for index, child in enumerate(item))
        elif isinstance(item, str):
            _text(item, path, "text")
        elif isinstance(item, _Unkept):
            _refuse(path, item.message)


def _deep(path: tuple[str | int, ...]) -> None:
    if len(path) >= MAX_DEPTH:
        where = _where(path)
        shown = where if len(where) <= _SHOWN_PATH else where[:_SHOWN_PATH] + "…"
        raise BadJson(400, f"request body nests deeper than {MAX_DEPTH} levels (at {shown})")


def _text(text: str, path: tuple[str | int, ...], what: str) -> None:
    if "\x00" in text:
        _refuse(path, f"{what} holds a NUL character (\\u0000), which cannot be stored")
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        _refuse(path, f"{what} holds a lone surrogate (not Unicode text)")


def _refuse(path: tuple[str | int, ...], message: str) -> None:
    where = _where(path)
    raise BadJson(422, f"invalid {where}: {message}", where)


def _where(path: tuple[str | int, ...]) -> str:
    return ".".join(str(part) for part in path) or "body"
