"""The public keys tokens are verified with: a PEM file, or a key set (JWKS) in a file
or fetched from an identity provider, each key bound to the one algorithm its own type
verifies (``collab.access.tokens`` never lets a token choose)."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Final, TypeAlias

import httpx
import jwt
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from cryptography.hazmat.primitives.serialization import load_pem_public_key

PublicKey: TypeAlias = rsa.RSAPublicKey | ec.EllipticCurvePublicKey | ed25519.Ed25519PublicKey
# A misbehaving or hostile endpoint must not fill memory.
MAX_JWKS_BYTES: Final = 1024 * 1024


@dataclass(frozen=True, slots=True)
class VerifyingKey:
    kid: str | None
    #: the one algorithm this key verifies
    algorithm: str
    key: PublicKey


async def download_key_set(client: httpx.AsyncClient, url: str) -> list[VerifyingKey]:
    async with client.stream("GET", url) as response:
        if response.status_code != httpx.codes.OK:
            raise ValueError(f"HTTP {response.status_code}")
        body = bytearray()
        async for chunk in response.aiter_bytes():
            body += chunk
            if len(body) > MAX_JWKS_BYTES:
                raise ValueError(f"answer larger than {MAX_JWKS_BYTES} bytes")
    return parse_key_set(bytes(body), "")


def load_key_set_file(path: Path) -> list[VerifyingKey]:
    return parse_key_set(path.read_bytes(), f"{path}: ")


def parse_key_set(raw: bytes, where: str) -> list[VerifyingKey]:
    """The signing keys of a JWKS document that verify an allowed algorithm.

    Keys of other algorithms, encryption keys, symmetric (``oct``) keys and private
    keys are left out: a published set is public, so a secret in it is no secret.
    ``where`` begins each complaint: a file's path; nothing for a fetched answer, whose
    URL the caller's message already names."""
    try:
        document = json.loads(raw)
    except ValueError:
        raise ValueError(f"{where}not a JSON document") from None
    if not isinstance(document, dict) or not isinstance(document.get("keys"), list):
        # bad data from outside, reported like every other unusable key set
        raise ValueError(f"{where}not a JWKS document (no 'keys' list)")  # noqa: TRY004
    try:
        key_set = jwt.PyJWKSet.from_dict(document)
    except jwt.PyJWTError as exc:
        raise ValueError(f"{where}{exc}") from None
    keys: list[VerifyingKey] = []
    for jwk in key_set:
        if jwk.public_key_use not in (None, "sig"):
            continue
        kid = jwk.key_id
        key = key_of(jwk.key, kid if isinstance(kid, str) else None)
        # an entry whose "alg" contradicts its key type is a broken entry, not a hint
        if key is not None and key.algorithm == jwk.algorithm_name:
            keys.append(key)
    if not keys:
        raise ValueError(f"{where}no RS256, ES256 or EdDSA signing key in the key set")
    return keys


def load_public_key(path: Path) -> VerifyingKey:
    try:
        key = load_pem_public_key(path.read_bytes())
    except (OSError, ValueError) as exc:
        raise ValueError(f"{path}: not a PEM public key ({exc})") from None
    loaded = key_of(key, None)
    if loaded is None:
        raise ValueError(f"{path}: the public key must be RSA, EC P-256 or Ed25519")
    return loaded


def key_of(key: object, kid: str | None) -> VerifyingKey | None:
    """A public key with the one allowed algorithm it verifies, decided by the key's own
    type (never by what a token or a key set entry claims); None for any other key."""
    if isinstance(key, rsa.RSAPublicKey):
        return VerifyingKey(kid=kid, algorithm="RS256", key=key)
    if isinstance(key, ec.EllipticCurvePublicKey) and isinstance(key.curve, ec.SECP256R1):
        return VerifyingKey(kid=kid, algorithm="ES256", key=key)
    if isinstance(key, ed25519.Ed25519PublicKey):
        return VerifyingKey(kid=kid, algorithm="EdDSA", key=key)
    return None


def file_stamp(path: Path) -> tuple[int, int, int] | None:
    try:
        stat = path.stat()
    except FileNotFoundError:
        return None
    # size and inode too: a file replaced by rename within one mtime tick still differs
    return (stat.st_mtime_ns, stat.st_size, stat.st_ino)
