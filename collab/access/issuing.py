"""Tokens this server signs itself (``collab token create``, the admin token ``serve``
prints) and the HS256 secret it keeps for them."""

from __future__ import annotations

import os
import secrets
import string
import tempfile
import time
from collections.abc import Iterable
from pathlib import Path
from typing import Any, Final

import jwt
import structlog

#: RFC 7518 §3.2: an HS256 key must be at least as long as the hash output.
MIN_SECRET_BYTES: Final = 32

log = structlog.get_logger("collab.access.issuing")
SECRET_BYTES: Final = 32


def issue(
    secret: bytes,
    *,
    user: str,
    roles: Iterable[str] = (),
    agent_id: str | None = None,
    ttl: float | None = 3600,
    issuer: str | None = None,
    audience: str | None = None,
    roles_claim: str = "roles",
) -> str:
    """An HS256 token for ``user`` (``agent_id`` makes it a service's), valid ``ttl``
    seconds from now (None: no expiry)."""
    if len(secret) < MIN_SECRET_BYTES:
        raise ValueError(f"the token secret must be at least {MIN_SECRET_BYTES} bytes")
    if not user:
        raise ValueError("a token needs a user")
    now = int(time.time())
    claims: dict[str, Any] = {"sub": user, "iat": now}
    if ttl is not None:
        claims["exp"] = now + int(ttl)
    if agent_id is not None:
        claims["agent_id"] = agent_id
    if issuer is not None:
        claims["iss"] = issuer
    if audience is not None:
        claims["aud"] = audience
    *parents, leaf = roles_claim.split(".")
    target = claims
    for part in parents:
        target = target.setdefault(part, {})
    target[leaf] = list(roles)
    return jwt.encode(claims, secret, algorithm="HS256")


def generate_secret() -> bytes:
    return secrets.token_bytes(SECRET_BYTES)


def load_or_create_secret(path: Path) -> bytes:
    """The HS256 secret kept at ``path`` as hex text, created there (readable by the owner
    only) the first time."""
    try:
        text = path.read_text(encoding="ascii")
    except FileNotFoundError:
        return _create_secret(path)
    except UnicodeDecodeError:
        text = "\N{REPLACEMENT CHARACTER}"
    hex_text = text.strip()
    if len(hex_text) != 2 * SECRET_BYTES or not set(hex_text) <= set(string.hexdigits):
        raise ValueError(f"{path}: not a token secret (expected {2 * SECRET_BYTES} hex characters)")
    return bytes.fromhex(hex_text)


def _create_secret(path: Path) -> bytes:
    secret = generate_secret()
    path.parent.mkdir(parents=True, exist_ok=True)
    # mkstemp creates the file with mode 0o600; linking it into place either creates
    # the secret complete or fails because another process created one first
    descriptor, partial = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        with os.fdopen(descriptor, "w", encoding="ascii") as file:
            file.write(secret.hex() + "\n")
            file.flush()
            os.fsync(file.fileno())
        try:
            os.link(partial, path)
        except FileExistsError:
            return load_or_create_secret(path)
    finally:
        Path(partial).unlink(missing_ok=True)
    log.info("token secret created", path=str(path))
    return secret
