"""Canonical JSON: the one byte form used for hashing and storage.

Sorted keys, compact separators, UTF-8, and numbers written the way PostgreSQL's
``jsonb`` prints them back (plain decimal notation, never an exponent), so the
bytes hashed at append time are reproduced exactly from the stored row.
"""

from __future__ import annotations

import hashlib
import json
import math
from decimal import Decimal
from typing import Any

JsonValue = Any


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
        for key in value:
            if not isinstance(key, str):
                raise ValueError(f"{path or 'value'}: object keys must be strings, got {key!r}")
        out.append("{")
        for index, key in enumerate(sorted(value)):
            if index:
                out.append(",")
            _encode(key, path, out)
            out.append(":")
            _encode(value[key], f"{path}.{key}" if path else key, out)
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


def canonical_json(value: JsonValue) -> str:
    """Serialise ``value`` canonically; raises ``ValueError`` naming the bad path."""
    out: list[str] = []
    _encode(value, "", out)
    return "".join(out)


def canonical_bytes(value: JsonValue) -> bytes:
    return canonical_json(value).encode("utf-8")


def sha256_hex(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()
