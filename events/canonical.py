"""Canonical JSON: the one byte form used for hashing and storage.

Sorted keys, compact separators, UTF-8, and numbers written the way PostgreSQL's
``jsonb`` prints them back (plain decimal notation, never an exponent), so the
bytes hashed at append time are reproduced exactly from the stored row.
"""

from __future__ import annotations

import hashlib
import json
import math
import re
from collections.abc import Callable
from decimal import Decimal
from typing import Any, Final

import rfc8785

JsonValue = Any

_FAST = json.JSONEncoder(sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False)
_STRING = re.compile(r'"(?:[^"\\]|\\.)*"')
#: numbers the C encoder writes differently from jsonb: an exponent or a negative zero
_INEXACT_NUMBER = re.compile(r"[0-9][eE]|-0\.0(?![0-9])")


def _encode_float(value: float, path: str) -> str:
    if not math.isfinite(value):
        raise ValueError(f"{path or 'value'}: non-finite number {value!r} is not valid JSON")
    if value == 0:
        value = 0.0  # numeric has no negative zero; "-0.0" would come back as "0.0"
    text = format(Decimal(repr(value)), "f")
    # jsonb keeps the scale it was given; "2.0" stays "2.0", and json.loads reads it as float.
    return text if "." in text else text + ".0"


def _encode(value: JsonValue, path: str, out: list[str]) -> None:
    if value is None:
        out.append("null")
    elif value is True:
        out.append("true")
    elif value is False:
        out.append("false")
    elif isinstance(value, int):
        out.append(str(value))
    elif isinstance(value, float):
        out.append(_encode_float(value, path))
    elif isinstance(value, str):
        if "\x00" in value:
            # jsonb cannot store U+0000; refuse it before it reaches the database.
            raise ValueError(f"{path or 'value'}: strings may not contain NUL characters")
        out.append(json.dumps(value, ensure_ascii=False))
    elif isinstance(value, dict):
        keys = {_key(key, path): key for key in value}
        out.append("{")
        for index, text in enumerate(sorted(keys)):
            if index:
                out.append(",")
            _encode(text, path, out)
            out.append(":")
            _encode(value[keys[text]], f"{path}.{text}" if path else text, out)
        out.append("}")
    elif isinstance(value, list | tuple):
        out.append("[")
        for index, item in enumerate(value):
            if index:
                out.append(",")
            _encode(item, f"{path}[{index}]", out)
        out.append("]")
    else:
        raise ValueError(f"{path or 'value'}: {type(value).__name__} is not a JSON value")


def _key(key: object, path: str) -> str:
    # Same conversions as the json module, so both encoding paths agree.
    if isinstance(key, str):
        return key
    if key is None or isinstance(key, bool):
        return json.dumps(key)
    if isinstance(key, int | float):
        return float.__repr__(key) if isinstance(key, float) else str(key)
    raise ValueError(f"{path or 'value'}: object key {key!r} is not a string")


def canonical_json(value: JsonValue) -> str:
    """Serialise ``value`` canonically; raises ``ValueError`` naming the bad path."""
    try:
        text = _FAST.encode(value)
    except (TypeError, ValueError):
        text = None  # the exact path names the offending value
    if (
        text is not None
        and "\\u0000" not in text  # a NUL (or that literal text): let the exact path judge
        and _INEXACT_NUMBER.search(_STRING.sub("", text)) is None
    ):
        return text
    out: list[str] = []
    _encode(value, "", out)
    return "".join(out)


def canonical_bytes(value: JsonValue) -> bytes:
    return canonical_json(value).encode("utf-8")


#: the hashing scheme of events appended since 2026-12-04: RFC 8785 (JSON
#: Canonicalization Scheme), recorded in each such event's metadata under SCHEME_KEY;
#: events without it were hashed over :func:`canonical_json`
JCS: Final = "rfc8785"
SCHEME_KEY: Final = "hash_scheme"


class UnknownScheme(ValueError):
    """An event names a hashing scheme this code does not know."""


def jcs_bytes(value: JsonValue) -> bytes:
    """RFC 8785 canonical JSON (the ``rfc8785`` package); raises ``ValueError`` for what
    JCS cannot write exactly: integers beyond ±(2^53 - 1), non-finite numbers."""
    try:
        return rfc8785.dumps(value)
    except rfc8785.CanonicalizationError as exc:
        raise ValueError(f"not representable in RFC 8785 JSON: {exc}") from None


def hashing_bytes(scheme: object) -> Callable[[JsonValue], bytes]:
    """The canonical form an event's hashes are taken over, by its recorded scheme."""
    if scheme is None:
        return canonical_bytes
    if scheme == JCS:
        return jcs_bytes
    raise UnknownScheme(f"unknown hashing scheme {scheme!r} (known: {JCS!r}, or none)")


def sha256_hex(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()
