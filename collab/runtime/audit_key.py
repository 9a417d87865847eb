"""The Ed25519 key that signs audit checkpoints: loaded from its PEM file, or created
there (readable by the owner only) the first time a server starts."""

from __future__ import annotations

import os
from pathlib import Path

import structlog
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import (
    Encoding,
    NoEncryption,
    PrivateFormat,
    load_pem_private_key,
)

log = structlog.get_logger("collab.runtime.audit_key")


class KeyFileError(Exception):
    """The key file exists but is not an unencrypted Ed25519 private key in PEM."""


def load_or_create(path: Path) -> Ed25519PrivateKey:
    if path.exists():
        try:
            key = load_pem_private_key(path.read_bytes(), password=None)
        except (ValueError, TypeError) as exc:
            raise KeyFileError(f"{path}: not an unencrypted PEM private key ({exc})") from None
        if not isinstance(key, Ed25519PrivateKey):
            raise KeyFileError(f"{path}: the audit key must be Ed25519")
        return key
    key = Ed25519PrivateKey.generate()
    pem = key.private_bytes(Encoding.PEM, PrivateFormat.PKCS8, NoEncryption())
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(path.name + ".tmp")
    descriptor = os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(descriptor, "wb") as file:
        file.write(pem)
    # Two servers starting on one data dir: the first rename wins, both then read it.
    if not path.exists():
        partial.replace(path)
        log.info("audit signing key created", path=str(path))
        return key
    partial.unlink(missing_ok=True)
    return load_or_create(path)
