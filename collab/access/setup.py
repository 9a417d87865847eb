"""The token verifier the settings describe: the server's own secret, or an identity
provider's keys (``collab.runtime.config.AuthSettings``)."""

from __future__ import annotations

from collab.access.tokens import TokenSettings, load_or_create_secret
from collab.runtime.config import AuthSettings


def token_settings(auth: AuthSettings) -> TokenSettings:
    """The verifier's settings; the secret file is read (created the first time) here."""
    secret = auth.secret
    if secret is None and auth.secret_file is not None:
        secret = load_or_create_secret(auth.secret_file)
    return TokenSettings(
        secret=secret,
        public_key_file=auth.public_key_file,
        jwks_file=auth.jwks_file,
        jwks_url=auth.jwks_url,
        algorithms=auth.algorithms,
        issuer=auth.issuer,
        audience=auth.audience,
        leeway=auth.leeway,
        roles_claim=auth.roles_claim,
    )
