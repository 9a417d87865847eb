"""Turning a bearer token into a ``Principal`` (the keys: ``collab.access.keys``; the
tokens this server signs itself: ``collab.access.issuing``).

Every request and every connection with authentication on passes through
``TokenVerifier.verify``, so this is where a forged, stale or misdirected token has to be
stopped, and stopped with a message that tells an operator which check failed. The keys
come from a shared secret (tokens this server issued itself), a PEM public key, or an
identity provider's key set (JWKS) in a file or at a URL.

Two classic JWT mistakes are ruled out by construction rather than by care at each call:
the algorithm a token names is only ever checked against the one algorithm its key is
for (an HS256 token is never verified with a public key's bytes as the HMAC secret, and
``none`` is never accepted), and a flood of tokens naming unknown key ids cannot turn the
server into a client hammering the identity provider (one fetch per cooldown, shared by
every verification waiting for it).

Why this module is over 400 lines: the verifier is one state machine (the key sources,
when each is read or fetched again, which key a token may be checked with, and the
message of each refusal); split, each part would need the others' state.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final
from urllib.parse import urlsplit

import httpx
import jwt
import structlog

from collab.access import keys
from collab.access.errors import Unauthenticated
from collab.access.issuing import MIN_SECRET_BYTES
from collab.access.principal import GLOBAL_ROLES, GlobalRole, Principal

log = structlog.get_logger("collab.access.tokens")

ALLOWED_ALGORITHMS: Final = frozenset({"HS256", "RS256", "ES256", "EdDSA"})
ASYMMETRIC_ALGORITHMS: Final = frozenset({"RS256", "ES256", "EdDSA"})

#: longest actor name a token may carry; also bounds what ends up in every event
MAX_NAME_CHARS: Final = 200
# A token is parsed (base64 and JSON) before anything proves it genuine; bounding its
# size bounds the work an anonymous caller can make us do.
MAX_TOKEN_CHARS: Final = 16 * 1024


@dataclass(frozen=True, slots=True)
class TokenSettings:
    #: HS256 shared secret (at least 32 bytes)
    secret: bytes | None = None
    #: a PEM public key: RSA, EC P-256 or Ed25519
    public_key_file: Path | None = None
    #: an identity provider's key set, kept in a file (re-read when it changes)
    jwks_file: Path | None = None
    #: an identity provider's key set, fetched over HTTP(S)
    jwks_url: str | None = None
    #: empty: every algorithm a configured key can verify; otherwise only these
    algorithms: tuple[str, ...] = ()
    #: the ``iss`` a token must carry; None: not checked
    issuer: str | None = None
    #: the ``aud`` a token must carry; None: a token must carry none
    audience: str | None = None
    #: seconds of clock difference tolerated on ``exp``, ``nbf`` and ``iat``
    leeway: float = 30.0
    #: the claim holding global roles; a dotted path reaches into nested objects
    roles_claim: str = "roles"
    #: seconds a fetched key set is used before it is fetched again
    jwks_lifetime: float = 300.0
    #: at most one fetch of the key set per this many seconds
    jwks_cooldown: float = 30.0
    #: deadline of one fetch of the key set, in seconds
    jwks_timeout: float = 5.0

    def __post_init__(self) -> None:
        for name in self.algorithms:
            if name.lower() == "none":
                raise ValueError(
                    "the token algorithm 'none' is never allowed: an unsigned token proves nothing"
                )
            if name not in ALLOWED_ALGORITHMS:
                raise ValueError(
                    f"unknown token algorithm {name!r}; allowed: {_listing(ALLOWED_ALGORITHMS)}"
                )
        if self.secret is not None and len(self.secret) < MIN_SECRET_BYTES:
            raise ValueError(
                f"the token secret must be at least {MIN_SECRET_BYTES} bytes "
                f"(it has {len(self.secret)})"
            )
        if self.jwks_url is not None and urlsplit(self.jwks_url).scheme not in ("http", "https"):
            raise ValueError(f"the JWKS URL must be http or https: {self.jwks_url!r}")
        if self.leeway < 0:
            raise ValueError("the token leeway cannot be negative")
        if self.jwks_lifetime <= 0 or self.jwks_cooldown < 0 or self.jwks_timeout <= 0:
            raise ValueError(
                "jwks_lifetime and jwks_timeout must be positive, jwks_cooldown not negative"
            )
        if not self.roles_claim or "" in self.roles_claim.split("."):
            raise ValueError(f"not a claim name or dotted path: {self.roles_claim!r}")

    @property
    def has_public_keys(self) -> bool:
        return (
            self.public_key_file is not None
            or self.jwks_file is not None
            or self.jwks_url is not None
        )

    @property
    def effective_algorithms(self) -> frozenset[str]:
        """The algorithms a token may use: those a configured key can verify, narrowed
        to ``algorithms`` when that is given."""
        available: set[str] = set()
        if self.secret is not None:
            available.add("HS256")
        if self.has_public_keys:
            available |= ASYMMETRIC_ALGORITHMS
        if self.algorithms:
            available &= set(self.algorithms)
        return frozenset(available)


class TokenVerifier:
    """Verifies bearer tokens against the configured keys; ``start`` before use."""

    #: HTTP fetches of the key set made so far (attempts, failed ones included)
    fetches: int

    def __init__(self, settings: TokenSettings) -> None:
        self.settings = settings
        self._algorithms = settings.effective_algorithms
        if not settings.secret and not settings.has_public_keys:
            raise ValueError(
                "no key to verify tokens with: set a secret, a public key file, "
                "a JWKS file or a JWKS URL"
            )
        if not self._algorithms:
            raise ValueError(
                f"none of the token algorithms {_listing(settings.algorithms)} has a configured key"
            )
        self._started = False
        self._public_key: keys.VerifyingKey | None = None
        self._file_keys: list[keys.VerifyingKey] = []
        self._file_stamp: tuple[int, int, int] | None = None
        self._file_lock = asyncio.Lock()
        self._remote_keys: list[keys.VerifyingKey] = []
        self._fetched_at: float | None = None
        self._attempted_at: float | None = None
        self._fetch_error: str | None = None
        self._fetching: asyncio.Task[None] | None = None
        self._client: httpx.AsyncClient | None = None
        self.fetches = 0

    async def start(self) -> None:
        """Load the key files and make the first fetch of a key set URL.

        A broken key file is a broken configuration: ValueError, and the server does not
        start. An unreachable key set URL is not: the identity provider may come up
        later, and until it does tokens are refused with that reason.
        """
        if self._started:
            return
        settings = self.settings
        if settings.public_key_file is not None:
            self._public_key = await asyncio.to_thread(
                keys.load_public_key, settings.public_key_file
            )
        if settings.jwks_file is not None:
            stamp = keys.file_stamp(settings.jwks_file)
            if stamp is None:
                raise ValueError(f"{settings.jwks_file}: no such JWKS file")
            self._file_keys = await asyncio.to_thread(keys.load_key_set_file, settings.jwks_file)
            self._file_stamp = stamp
        if settings.jwks_url is not None:
            self._client = httpx.AsyncClient(
                timeout=settings.jwks_timeout,
                follow_redirects=False,
                headers={"accept": "application/json"},
            )
            await self._refresh_if_due()
        self._started = True

    async def close(self) -> None:
        fetching, self._fetching = self._fetching, None
        if fetching is not None:
            fetching.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await fetching
        client, self._client = self._client, None
        if client is not None:
            await client.aclose()
        self._started = False

    async def verify(self, token: str) -> Principal:
        """The principal a token stands for, or ``Unauthenticated`` saying why not."""
        if not self._started:
            raise RuntimeError("TokenVerifier.verify before TokenVerifier.start")
        if not token:
            raise Unauthenticated("no token")
        if len(token) > MAX_TOKEN_CHARS:
            raise Unauthenticated(f"malformed token: longer than {MAX_TOKEN_CHARS} characters")
        try:
            header = jwt.get_unverified_header(token)
        except jwt.PyJWTError as exc:
            raise Unauthenticated(f"malformed token: {exc}") from None
        algorithm = header.get("alg")
        if not isinstance(algorithm, str) or algorithm not in self._algorithms:
            raise Unauthenticated(
                f"token algorithm {algorithm!r} is not allowed "
                f"(allowed: {_listing(self._algorithms)})"
            )
        key: bytes | keys.PublicKey
        if algorithm == "HS256" and self.settings.secret is not None:
            key = self.settings.secret
        else:
            # HS256 is among the algorithms only when a secret is set: here it is not HS256
            key = await self._public_key_for(algorithm, header.get("kid"))
        claims = self._decode(token, key, algorithm)
        return self._principal(claims)

    def _decode(self, token: str, key: bytes | keys.PublicKey, algorithm: str) -> dict[str, Any]:
        settings = self.settings
        try:
            return jwt.decode(
                token,
                key,
                # only the algorithm the key is for: this, not the header, decides how
                # the signature is checked
                algorithms=[algorithm],
                audience=settings.audience,
                issuer=settings.issuer,
                leeway=settings.leeway,
                options={"enforce_minimum_key_length": True},
            )
        except jwt.ExpiredSignatureError:
            raise Unauthenticated("token expired") from None
        except jwt.ImmatureSignatureError as exc:
            claim = "iat" if "iat" in str(exc) else "nbf"
            raise Unauthenticated(f"token not valid yet ({claim} is in the future)") from None
        except jwt.InvalidSignatureError:
            raise Unauthenticated("token signature does not verify") from None
        except jwt.InvalidAudienceError:
            expected = repr(settings.audience) if settings.audience else "none"
            raise Unauthenticated(f"wrong token audience (expected {expected})") from None
        except jwt.InvalidIssuerError:
            raise Unauthenticated(f"wrong token issuer (expected {settings.issuer!r})") from None
        except jwt.MissingRequiredClaimError as exc:
            raise Unauthenticated(f"token lacks the {exc.claim!r} claim") from None
        except jwt.InvalidAlgorithmError as exc:
            raise Unauthenticated(f"token algorithm not allowed: {exc}") from None
        except jwt.InvalidKeyError as exc:
            raise Unauthenticated(f"the key for this token is unusable: {exc}") from None
        except jwt.PyJWTError as exc:
            raise Unauthenticated(f"malformed token: {exc}") from None

    def _principal(self, claims: Mapping[str, Any]) -> Principal:
        if claims.get("agent_id") is not None:
            actor = _name(claims["agent_id"], "agent_id")
            agent_id: str | None = actor
        elif claims.get("sub") is not None:
            actor = _name(claims["sub"], "sub")
            agent_id = None
        else:
            raise Unauthenticated("token names no one: it has neither 'sub' nor 'agent_id'")
        return Principal(
            actor=actor,
            agent_id=agent_id,
            roles=_roles(claims, self.settings.roles_claim),
            expires_at=_expiry(claims.get("exp")),
            verified=True,
        )

    # -- keys ---------------------------------------------------------------------------

    async def _public_key_for(self, algorithm: str, kid: Any) -> keys.PublicKey:
        settings = self.settings
        has_key_sets = settings.jwks_file is not None or settings.jwks_url is not None
        # A key id is looked up in the key sets only: the public key file has no ids,
        # and serving an id the sets lack from it would hide a rotation we must fetch.
        if kid is not None and has_key_sets:
            return (await self._key_by_id(str(kid), algorithm)).key
        if self._public_key is not None:
            if self._public_key.algorithm != algorithm:
                raise Unauthenticated(
                    f"token algorithm {algorithm} does not fit the configured "
                    f"{self._public_key.algorithm} public key"
                )
            return self._public_key.key
        keys = [key for key in await self._key_set() if key.algorithm == algorithm]
        if len(keys) == 1:
            return keys[0].key
        if not keys:
            raise Unauthenticated(
                f"no {algorithm} key to verify the token with{self._fetch_problem()}"
            )
        raise Unauthenticated(
            f"token names no key id (kid) and the key set holds {len(keys)} {algorithm} keys"
        )

    async def _key_by_id(self, kid: str, algorithm: str) -> keys.VerifyingKey:
        await self._check_key_set_file()
        keys = self._find(kid)
        if self.settings.jwks_url is not None and (not keys or self._stale()):
            await self._refresh_if_due()
            keys = self._find(kid)
        if not keys:
            raise Unauthenticated(f"unknown key id {kid!r}{self._fetch_problem()}")
        for key in keys:
            if key.algorithm == algorithm:
                return key
        raise Unauthenticated(
            f"key {kid!r} is for {_listing(key.algorithm for key in keys)}, "
            f"the token says {algorithm}"
        )

    async def _key_set(self) -> list[keys.VerifyingKey]:
        await self._check_key_set_file()
        if self.settings.jwks_url is not None and self._stale():
            await self._refresh_if_due()
        return [*self._file_keys, *self._remote_keys]

    def _find(self, kid: str) -> list[keys.VerifyingKey]:
        return [key for key in (*self._file_keys, *self._remote_keys) if key.kid == kid]

    def _stale(self) -> bool:
        return (
            self._fetched_at is None
            or time.monotonic() - self._fetched_at >= self.settings.jwks_lifetime
        )

    @property
    def fetch_error(self) -> str | None:
        """Why the last fetch of the key set failed (None after a good one): logged, and
        kept from callers, who are told only that the keys are unavailable."""
        return self._fetch_error

    def _fetch_problem(self) -> str:
        if self._fetch_error is None:
            return ""
        # The URL and the network error are no business of an unauthenticated caller.
        return " (the identity provider's keys could not be fetched; the server log says why)"

    async def _check_key_set_file(self) -> None:
        path = self.settings.jwks_file
        # A stat per verification costs microseconds; it lets an operator rotate keys
        # by replacing the file, without a restart.
        if path is None or keys.file_stamp(path) == self._file_stamp:
            return
        async with self._file_lock:
            stamp = keys.file_stamp(path)
            if stamp == self._file_stamp:
                return
            # Remembered before reading: a file that does not parse (half written, or
            # gone) is reported once, and the keys read last stay in use meanwhile.
            self._file_stamp = stamp
            if stamp is None:
                log.warning("JWKS file vanished; keeping its last keys", path=str(path))
                return
            try:
                self._file_keys = await asyncio.to_thread(keys.load_key_set_file, path)
            except (OSError, ValueError) as exc:
                log.warning("JWKS file unreadable; keeping its last keys", error=str(exc))
            else:
                log.info("JWKS file reloaded", path=str(path), keys=len(self._file_keys))

    async def _refresh_if_due(self) -> None:
        """Fetch the key set URL unless a fetch was tried within the cooldown; callers
        arriving while a fetch is under way wait for that one instead of starting theirs."""
        if self._fetching is None:
            if (
                self._attempted_at is not None
                and time.monotonic() - self._attempted_at < self.settings.jwks_cooldown
            ):
                return
            self._attempted_at = time.monotonic()
            self._fetching = asyncio.create_task(self._fetch(), name="jwks-fetch")
            self._fetching.add_done_callback(self._fetch_done)
        # shielded: one caller giving up (its client went away) must not cancel the
        # fetch the others are waiting for
        await asyncio.shield(self._fetching)

    def _fetch_done(self, task: asyncio.Task[None]) -> None:
        if self._fetching is task:
            self._fetching = None

    async def _fetch(self) -> None:
        url, client = self.settings.jwks_url, self._client
        if url is None or client is None:
            raise RuntimeError("JWKS fetch without a URL, or before start")
        self.fetches += 1
        try:
            # httpx's timeout bounds each read; this bounds the whole transfer, so a
            # server that trickles bytes cannot hold the waiting verifications
            async with asyncio.timeout(self.settings.jwks_timeout):
                fetched = await keys.download_key_set(client, url)
        except TimeoutError:
            self._fetch_error = f"no complete answer within {self.settings.jwks_timeout:g} s"
        except httpx.TransportError as exc:
            self._fetch_error = f"unreachable ({type(exc).__name__}: {exc})"
        except httpx.HTTPError as exc:
            self._fetch_error = f"{type(exc).__name__}: {exc}"
        except ValueError as exc:
            self._fetch_error = str(exc)
        else:
            self._remote_keys = fetched
            self._fetched_at = time.monotonic()
            self._fetch_error = None
            log.info("JWKS fetched", url=url, keys=len(fetched))
            return
        log.warning("JWKS fetch failed; keeping the last keys", url=url, error=self._fetch_error)


def _expiry(exp: Any) -> float | None:
    if exp is None:
        return None
    try:
        # PyJWT compares int(exp) with the clock; the principal expires at the same second
        return float(int(exp))
    except OverflowError:
        # an integer too large for a float passes PyJWT's check but fits no clock
        raise Unauthenticated("token claim 'exp' is out of range") from None


def _name(value: Any, claim: str) -> str:
    if not isinstance(value, str) or not value:
        raise Unauthenticated(f"token claim {claim!r} must be a non-empty string")
    if len(value) > MAX_NAME_CHARS:
        raise Unauthenticated(f"token claim {claim!r} is longer than {MAX_NAME_CHARS} characters")
    if "\x00" in value:
        raise Unauthenticated(f"token claim {claim!r} contains a NUL character")
    return value


def _roles(claims: Mapping[str, Any], path: str) -> frozenset[GlobalRole]:
    value: Any
    if path in claims:
        value = claims[path]
    else:
        value = claims
        for part in path.split("."):
            value = value.get(part) if isinstance(value, Mapping) else None
    if isinstance(value, str):
        names = set(value.split())
    elif isinstance(value, list):
        names = {name for name in value if isinstance(name, str)}
    else:
        # a claim of another shape grants nothing rather than refusing the token:
        # fewer rights is the safe reading of something we do not understand
        names = set()
    return frozenset(role for role in GLOBAL_ROLES if role in names)


def _listing(names: Iterable[str]) -> str:
    return ", ".join(sorted(set(names))) or "none"
