"""Settings, validated once: flags override environment variables override defaults.

Why this module is over 400 lines: every setting of the server is declared here once,
with its bounds and the comment that explains it, beside the parts (live, read, audit,
HTTP, rates) that take them; the README's settings table mirrors this one list.
"""

from __future__ import annotations

import contextlib
import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import Field, SecretStr, ValidationError, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from events.checkpoints import check_origin

ProjectionMode = Literal["worker", "inline", "none"]


@dataclass(frozen=True, slots=True)
class LiveSettings:
    #: seconds the writer waits for more updates before committing a batch
    commit_window: float = 0.002
    #: largest WebSocket message accepted (close 4413 above it)
    max_message_bytes: int = 10 * 1024 * 1024
    #: bytes queued for one client before it is dropped as too slow (4508, reconnect)
    send_queue_bytes: int = 16 * 1024 * 1024
    #: updates waiting for the database before new ones are refused (1013)
    max_pending_updates: int = 20_000
    #: seconds an unused room stays loaded
    room_grace: float = 10.0
    #: document versions between two saves of a room's state to the cache
    cache_every: int = 1000
    #: seconds between two checks of the log for what other writers appended to the
    #: loaded rooms' streams (the worst-case delay when the fan-out does not tell)
    follow_seconds: float = 1.0
    #: the Redis that carries the fan-out between nodes; None: this node is alone
    redis_url: str | None = None
    #: the prefix of the fan-out's channel names (several clusters on one Redis)
    redis_prefix: str = "collab"


_LIVE = LiveSettings()


@dataclass(frozen=True, slots=True)
class ReadSettings:
    #: seconds a read with ``?min_position=N`` waits for the projections (then 503)
    projection_wait: float = 5.0
    #: versions between two stored document states (time travel replays fewer)
    state_every: int = 500
    #: events folded per projection transaction (catching up folds full batches). Each
    #: batch rewrites the document and parts of every project it touched, so larger
    #: batches catch up faster (20,000 against 5,000: +24 % at 200,000 events), at the
    #: cost of memory while catching up (the worker keeps two batches decoded: about
    #: 70 MB for 40,000 small doc.updated events, against 17 MB with 5,000)
    projection_batch: int = 20_000
    #: where the projections run: a worker process the server supervises, the
    #: server's own event loop, or elsewhere (``collab projections run``)
    projections: ProjectionMode = "worker"
    #: how much lower the worker's CPU priority is than the server's (``nice``)
    projection_nice: int = 10
    #: processes the worker folds ``projects`` by when it is far behind (at least
    #: ``projections.runner.PARALLEL_LAG`` events); 1: in the worker alone. Two on two
    #: cores caught up 1.6x faster (docs/benchmarks.md), taking both cores while it ran
    projection_jobs: int = 1
    #: seconds between a standby's attempts to take the lead of the cluster's
    #: projections, and between the leader's checks that it still holds it
    leader_retry: float = 1.0


_READ = ReadSettings()


@dataclass(frozen=True, slots=True)
class AuditSettings:
    #: the Ed25519 key that signs checkpoints (PEM, created when missing); None means a
    #: throwaway key held in memory (tests and benchmarks only)
    key_file: Path | None = None
    #: events added since the last checkpoint that call for a new one
    checkpoint_every: int = 1000
    #: seconds after which new events get a checkpoint however few they are
    checkpoint_seconds: float = 10.0
    #: the log's origin line and key name in its signed checkpoints; None: derived from
    #: the key (``events.checkpoints.default_origin``), stable as long as the key
    origin: str | None = None


_AUDIT = AuditSettings()

#: the names a browser on this machine uses for a server bound to loopback
LOOPBACK_HOSTS = ("localhost", "127.0.0.1", "[::1]")
#: bind addresses that mean "every interface" (they name no host a client would use)
WILDCARD_BINDS = ("", "0.0.0.0", "::", "[::]")  # noqa: S104 - recognised, not bound to


@dataclass(frozen=True, slots=True)
class HttpSettings:
    #: largest request body (413 above it, refused while it streams in)
    max_body_bytes: int = 10 * 1024 * 1024
    #: Host header names served (400 otherwise); ``*`` serves any, ``*.example.com``
    #: any subdomain
    allowed_hosts: tuple[str, ...] = LOOPBACK_HOSTS
    #: origins whose pages may write (unsafe methods, the WebSocket); None: the allowed
    #: hosts at ``port``, http and https. A page of the request's own origin always may
    allowed_origins: tuple[str, ...] | None = None
    #: the port served, for the default origins (None or 0: same-origin pages only)
    port: int | None = None


_HTTP = HttpSettings()


@dataclass(frozen=True, slots=True)
class DatabaseSettings:
    """How long the server waits for its database before it answers 503 / 1013."""

    #: seconds one statement may take (an append, a query); then the caller gets
    #: ``StoreTimeout``: HTTP 503, and the live path closes the sender with 1013
    command_timeout: float = 10.0
    #: seconds a caller waits for a pooled connection (opening one included)
    acquire_timeout: float = 10.0
    #: seconds ``/ready`` waits for the database before it answers 503
    ready_timeout: float = 2.0


_DATABASE = DatabaseSettings()


@dataclass(frozen=True, slots=True)
class RateSettings:
    """The rate limits (``collab.access.limits``), each a rate such as ``60/minute``."""

    connections: str = "120/minute"
    http_writes: str = "600/minute"
    #: a fader dragged at 60 Hz in two tabs stays well below
    updates: str = "300/second"
    update_bytes: str = "50000000/minute"
    #: where counters live: memory:// (this process) or a ``limits`` storage URL
    storage: str = "memory://"


_RATES = RateSettings()


class Settings(BaseSettings):
    """Every command reads these. Environment names are ``COLLAB_<FIELD>``, except
    ``DATABASE_URL`` (the usual name for it)."""

    model_config = SettingsConfigDict(env_prefix="COLLAB_", extra="forbid", frozen=True)

    host: str = "127.0.0.1"
    port: int = Field(default=8000, ge=0, le=65535)
    data_dir: Path = Path(".collab")
    database_url: str | None = Field(default=None, validation_alias="DATABASE_URL")
    #: the Redis that ties the nodes of a cluster together (fan-out); unset: one node
    redis_url: str | None = Field(default=None, validation_alias="REDIS_URL")
    #: prefix of the fan-out's Redis channels (several clusters on one Redis)
    redis_prefix: str = Field(default="collab", pattern=r"^[A-Za-z0-9_.:-]{1,64}$")
    #: seconds between two checks of the log for other writers' updates to loaded rooms
    follow_seconds: float = Field(default=_LIVE.follow_seconds, gt=0, le=3600)
    log_level: Literal["debug", "info", "warning", "error"] = "info"
    log_format: Literal["auto", "json", "console"] = "auto"
    db_pool_size: int = Field(default=10, ge=1, le=200)
    #: seconds one database statement of the server may take (then 503 / 1013)
    db_command_timeout: float = Field(default=_DATABASE.command_timeout, gt=0, le=3600)
    #: seconds a request waits for a pooled database connection (then 503 / 1013)
    db_acquire_timeout: float = Field(default=_DATABASE.acquire_timeout, gt=0, le=3600)
    #: seconds /ready waits for the database before it answers 503
    ready_timeout: float = Field(default=_DATABASE.ready_timeout, gt=0, le=60)
    #: seconds between subscription polls when no notification arrives
    poll_interval: float = Field(default=1.0, gt=0, le=60)
    #: milliseconds the store's group commit waits for more rooms' updates to join a
    #: transaction (callers that await an append never wait for it)
    commit_window_ms: float = Field(default=_LIVE.commit_window * 1000, ge=0, le=1000)
    #: largest WebSocket message accepted (close 4413 above it)
    max_message_bytes: int = Field(default=_LIVE.max_message_bytes, ge=1024, le=1024**3)
    #: bytes queued for one slow client before it is disconnected (4508, reconnect)
    send_queue_bytes: int = Field(default=_LIVE.send_queue_bytes, ge=1024, le=1024**3)
    #: updates waiting for the database before new ones are refused (1013)
    max_pending_updates: int = Field(default=_LIVE.max_pending_updates, ge=1, le=10_000_000)
    #: seconds an unused room stays loaded
    room_grace: float = Field(default=_LIVE.room_grace, ge=0, le=3600)
    #: seconds between WebSocket pings (a client silent for as long again is dropped)
    ws_ping_interval: float = Field(default=20.0, gt=0, le=3600)
    #: permessage-deflate on WebSockets (less traffic for large documents, about 50 KiB
    #: more memory per connection and CPU for every frame sent)
    ws_compression: bool = False
    #: seconds a read with ?min_position=N waits for the projections before a 503
    projection_wait: float = Field(default=_READ.projection_wait, gt=0, le=600)
    #: document versions between two stored states used by time travel
    state_every: int = Field(default=_READ.state_every, ge=10, le=1_000_000)
    #: events folded per projection transaction
    projection_batch: int = Field(default=_READ.projection_batch, ge=1, le=100_000)
    #: where the projections run: worker (a process of their own), inline, none
    projections: ProjectionMode = _READ.projections
    #: how much lower the projection worker's CPU priority is (nice, 0-19)
    projection_nice: int = Field(default=_READ.projection_nice, ge=0, le=19)
    #: processes folding projects when the worker is far behind (1: the worker alone)
    projection_jobs: int = Field(default=_READ.projection_jobs, ge=1, le=64)
    #: seconds between a standby worker's attempts to lead (and the leader's checks)
    leader_retry: float = Field(default=_READ.leader_retry, ge=0.05, le=60)

    #: largest HTTP request body in bytes (413 above it)
    max_body_bytes: int = Field(default=_HTTP.max_body_bytes, ge=1024, le=1024**3)
    #: Host names served, comma-separated (default: loopback names plus the bind host)
    allowed_hosts: Annotated[tuple[str, ...], NoDecode] = ()
    #: origins whose pages may write, comma-separated (default: the allowed hosts at the
    #: port, http and https)
    allowed_origins: Annotated[tuple[str, ...], NoDecode] = ()

    #: on: every request and connection needs a token; off: callers name themselves
    #: (``X-Actor``) and everyone may do everything (experiments only: said in the
    #: log and in /ready)
    auth: Literal["on", "off"] = "on"
    #: the HS256 secret of tokens (at least 32 bytes); default: the secret file
    jwt_secret: SecretStr | None = None
    #: the file holding the HS256 secret as hex (default: in the data dir, created on
    #: first start when no key source is given)
    jwt_secret_file: Path | None = None
    #: a PEM public key (RSA, EC P-256 or Ed25519) of an identity provider
    jwt_public_key_file: Path | None = None
    #: an identity provider's key set (JWKS) in a file, or at a URL
    jwks_file: Path | None = None
    jwks_url: str | None = None
    #: algorithms accepted, comma-separated, of HS256, RS256, ES256, EdDSA (default:
    #: those the configured keys are for)
    jwt_algorithms: Annotated[tuple[str, ...], NoDecode] = ()
    #: the ``iss`` and ``aud`` tokens must carry, when set
    jwt_issuer: str | None = None
    jwt_audience: str | None = None
    #: seconds of clock skew allowed on ``exp`` and ``nbf``
    jwt_leeway: float = Field(default=30.0, ge=0, le=3600)
    #: the claim holding global roles (``admin``, ``auditor``); dotted for nested claims
    jwt_roles_claim: str = Field(default="roles", min_length=1, max_length=200)

    #: on: the rate limits below hold (docs/auth.md); off: none
    rate_limits: Literal["on", "off"] = "on"
    #: socket opens per client address and per principal
    rate_connections: str = _RATES.connections
    #: unsafe HTTP requests per client address and per principal
    rate_http_writes: str = _RATES.http_writes
    #: socket frames per principal (all its sockets together), and their bytes
    rate_updates: str = _RATES.updates
    rate_update_bytes: str = _RATES.update_bytes
    #: where the counters live: memory:// (this node) or a Redis URL (every node)
    rate_limit_storage: str = _RATES.storage

    #: PEM file of the Ed25519 key signing audit checkpoints (default: in the data dir)
    audit_key_file: Path | None = None
    #: events between two signed audit checkpoints
    checkpoint_every: int = Field(default=_AUDIT.checkpoint_every, ge=1, le=10_000_000)
    #: seconds after which pending events get a signed checkpoint anyway
    checkpoint_seconds: float = Field(default=_AUDIT.checkpoint_seconds, gt=0, le=86_400)
    #: origin line of the signed checkpoints (C2SP tlog-checkpoint), for example
    #: collab.example.com/audit; default: collab.audit/<the key's fingerprint>
    audit_origin: str | None = Field(default=None, max_length=200)

    @field_validator("database_url")
    @classmethod
    def _check_url(cls, value: str | None) -> str | None:
        if value in (None, ""):
            return None
        assert value is not None  # noqa: S101 - narrowing for mypy
        if not value.startswith(("postgresql://", "postgres://")):
            raise ValueError("must start with postgresql:// or postgres://")
        return value

    @field_validator("audit_origin")
    @classmethod
    def _check_origin(cls, value: str | None) -> str | None:
        # empty (as compose passes an unset variable): derived from the key
        return None if value in (None, "") else check_origin(str(value))

    @field_validator("redis_url")
    @classmethod
    def _check_redis_url(cls, value: str | None) -> str | None:
        if value in (None, ""):
            return None
        assert value is not None  # noqa: S101 - narrowing for mypy
        if not value.startswith(("redis://", "rediss://", "unix://")):
            raise ValueError("must start with redis://, rediss:// or unix://")
        return value

    @field_validator("allowed_hosts", mode="before")
    @classmethod
    def _split_hosts(cls, value: Any) -> Any:
        return _split(value, normalize_host)

    @field_validator("jwt_algorithms", mode="before")
    @classmethod
    def _split_algorithms(cls, value: Any) -> Any:
        return _split(value, str.strip)

    @field_validator("allowed_origins", mode="before")
    @classmethod
    def _split_origins(cls, value: Any) -> Any:
        return _split(value, _check_origin)


_HOST = re.compile(r"^(\*|(\*\.)?[a-z0-9_]([a-z0-9_.-]*[a-z0-9_])?|\[[0-9a-f:.]+\])$")


def normalize_host(value: str) -> str:
    """A Host header name as starlette's host check compares it: lower case, IPv6
    addresses in brackets, no port."""
    host = value.strip().lower()
    if ":" in host and not host.startswith("["):
        host = f"[{host}]"
    if not _HOST.match(host):
        raise ValueError(f"{value!r} is not a host name (no scheme or port; *.domain allowed)")
    return host


def _check_origin(value: str) -> str:
    # collab.http.origins parses them again (normalised); here only the shape is checked
    origin = value.strip().rstrip("/")
    if not re.match(r"^https?://[^/?#@\s]+$", origin, re.IGNORECASE):
        raise ValueError(f"{value!r} is not an origin such as https://app.example.com")
    return origin


def _split(value: Any, check: Callable[[str], str]) -> Any:
    if isinstance(value, str):
        value = [part for part in value.split(",") if part.strip()]
    if isinstance(value, (list, tuple)):
        return tuple(check(str(part)) for part in value)
    return value


class ConfigError(Exception):
    """One line naming the setting and what is wrong with it."""


def load_settings(**overrides: Any) -> Settings:
    """Build settings from the environment plus explicit (non-None) overrides."""
    given = {key: value for key, value in overrides.items() if value is not None}
    try:
        return Settings(**given)
    except ValidationError as exc:
        error = exc.errors()[0]
        field = str(error["loc"][0]) if error["loc"] else "settings"
        if field in given:
            source = f"--{field.replace('_', '-')}"
        elif field.isupper():
            source = field  # errors of aliased fields carry the alias (DATABASE_URL)
        else:
            source = f"COLLAB_{field.upper()}"
        raise ConfigError(
            f"invalid setting {source}: {error['msg']} (got {error.get('input')!r})"
        ) from None


def live_settings(settings: Settings) -> LiveSettings:
    """The live path's part of the settings."""
    return LiveSettings(
        commit_window=settings.commit_window_ms / 1000,
        max_message_bytes=settings.max_message_bytes,
        send_queue_bytes=settings.send_queue_bytes,
        max_pending_updates=settings.max_pending_updates,
        room_grace=settings.room_grace,
        follow_seconds=settings.follow_seconds,
        redis_url=settings.redis_url,
        redis_prefix=settings.redis_prefix,
    )


def read_settings(settings: Settings) -> ReadSettings:
    """The read side's part of the settings."""
    return ReadSettings(
        projection_wait=settings.projection_wait,
        state_every=settings.state_every,
        projection_batch=settings.projection_batch,
        projections=settings.projections,
        projection_nice=settings.projection_nice,
        projection_jobs=settings.projection_jobs,
        leader_retry=settings.leader_retry,
    )


def audit_settings(settings: Settings) -> AuditSettings:
    """The audit log's part of the settings; the key lives in the data dir by default."""
    return AuditSettings(
        key_file=settings.audit_key_file or settings.data_dir / "audit-ed25519.pem",
        checkpoint_every=settings.checkpoint_every,
        checkpoint_seconds=settings.checkpoint_seconds,
        origin=settings.audit_origin,
    )


def http_settings(settings: Settings) -> HttpSettings:
    """The HTTP side's part: loopback names and the bind host are served unless the
    allowed hosts are given."""
    hosts = settings.allowed_hosts
    if not hosts:
        bind = settings.host.strip().lower()
        extra: tuple[str, ...] = ()
        if bind not in WILDCARD_BINDS:
            with contextlib.suppress(ValueError):  # not a name a client could send
                extra = (normalize_host(bind),)
        hosts = tuple(dict.fromkeys((*LOOPBACK_HOSTS, *extra)))
    return HttpSettings(
        max_body_bytes=settings.max_body_bytes,
        allowed_hosts=hosts,
        allowed_origins=settings.allowed_origins or None,
        port=settings.port,
    )


def database_settings(settings: Settings) -> DatabaseSettings:
    """The server's limits on waiting for its database."""
    return DatabaseSettings(
        command_timeout=settings.db_command_timeout,
        acquire_timeout=settings.db_acquire_timeout,
        ready_timeout=settings.ready_timeout,
    )


def rate_settings(settings: Settings) -> RateSettings | None:
    """The rate limits; None when they are off."""
    if settings.rate_limits == "off":
        return None
    return RateSettings(
        connections=settings.rate_connections,
        http_writes=settings.rate_http_writes,
        updates=settings.rate_updates,
        update_bytes=settings.rate_update_bytes,
        storage=settings.rate_limit_storage,
    )
