"""The token settings the server's settings describe: the server's own secret, or an
identity provider's keys (docs/auth.md)."""

from __future__ import annotations

from pathlib import Path

from collab.access.issuing import load_or_create_secret
from collab.access.tokens import TokenSettings
from collab.runtime.config import Settings


def secret_file(settings: Settings) -> Path | None:
    """Where the server's own HS256 secret is kept: the setting, or the data dir when
    no key source is given at all; None when the tokens come from elsewhere only."""
    if settings.jwt_secret_file is not None:
        return settings.jwt_secret_file
    external = settings.jwt_public_key_file or settings.jwks_file or settings.jwks_url
    if settings.jwt_secret is None and not external:
        return settings.data_dir / "auth-secret"
    return None


def own_secret(settings: Settings) -> bytes | None:
    """The HS256 secret this server verifies (and ``collab token create`` signs) with,
    created in its file the first time; None when it has none."""
    if settings.jwt_secret is not None:
        return settings.jwt_secret.get_secret_value().encode()
    path = secret_file(settings)
    return load_or_create_secret(path) if path is not None else None


def token_settings(settings: Settings) -> TokenSettings | None:
    """How tokens are verified; None when authentication is off."""
    if settings.auth == "off":
        return None
    return TokenSettings(
        secret=own_secret(settings),
        public_key_file=settings.jwt_public_key_file,
        jwks_file=settings.jwks_file,
        jwks_url=settings.jwks_url,
        algorithms=settings.jwt_algorithms,
        issuer=settings.jwt_issuer,
        audience=settings.jwt_audience,
        leeway=settings.jwt_leeway,
        roles_claim=settings.jwt_roles_claim,
    )
