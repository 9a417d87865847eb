"""Token verification against real keys and a real key set server.

Every refusal a forged, stale or misdirected token should meet is exercised here with a
token built the way an attacker or a misconfigured identity provider would build it;
the JWKS endpoint is a local HTTP server that counts its requests, so the promise that
a flood of unknown key ids costs at most one fetch per cooldown is measured, not assumed.

Over 400 lines because each refusal is its own test, all on the same key sources and
key set server.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import hashlib
import hmac
import json
import random
import socket
import stat
import time
from collections.abc import AsyncIterator
from concurrent.futures import ThreadPoolExecutor
from functools import cache
from pathlib import Path
from typing import Any

import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat
from jwt.algorithms import ECAlgorithm, OKPAlgorithm, RSAAlgorithm

from collab.access.errors import Unauthenticated
from collab.access.issuing import generate_secret, issue, load_or_create_secret
from collab.access.tokens import TokenSettings, TokenVerifier

PrivateKey = rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey | ed25519.Ed25519PrivateKey

ASYMMETRIC = ("RS256", "ES256", "EdDSA")


# -- keys and tokens --------------------------------------------------------------------


def new_key(algorithm: str) -> PrivateKey:
    if algorithm == "RS256":
        return rsa.generate_private_key(public_exponent=65537, key_size=2048)
    if algorithm == "ES256":
        return ec.generate_private_key(ec.SECP256R1())
    return ed25519.Ed25519PrivateKey.generate()


@cache
def key_for(algorithm: str, which: str = "main") -> PrivateKey:
    """One key per algorithm and name for the whole module: RSA generation is slow."""
    return new_key(algorithm)


def pem(key: PrivateKey) -> bytes:
    return key.public_key().public_bytes(Encoding.PEM, PublicFormat.SubjectPublicKeyInfo)


def jwk(key: PrivateKey, kid: str | None) -> dict[str, Any]:
    public = key.public_key()
    if isinstance(public, rsa.RSAPublicKey):
        data = RSAAlgorithm.to_jwk(public, as_dict=True)
    elif isinstance(public, ec.EllipticCurvePublicKey):
        data = ECAlgorithm.to_jwk(public, as_dict=True)
    else:
        data = OKPAlgorithm.to_jwk(public, as_dict=True)
    if kid is not None:
        data["kid"] = kid
    data["use"] = "sig"
    return data


def sign(key: PrivateKey, algorithm: str, claims: dict[str, Any], kid: str | None = None) -> str:
    headers = {"kid": kid} if kid is not None else None
    return jwt.encode(claims, key, algorithm=algorithm, headers=headers)


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def compact(header: dict[str, Any], claims: dict[str, Any], signature: bytes = b"") -> str:
    """A token assembled by hand, for the ones PyJWT refuses to make."""
    head = b64url(json.dumps(header).encode()) + "." + b64url(json.dumps(claims).encode())
    return head + "." + b64url(signature)


def hs256_by_hand(secret: bytes, claims: dict[str, Any]) -> str:
    unsigned = compact({"alg": "HS256", "typ": "JWT"}, claims).rsplit(".", 1)[0]
    signature = hmac.new(secret, unsigned.encode(), hashlib.sha256).digest()
    return unsigned + "." + b64url(signature)


def claims(**extra: Any) -> dict[str, Any]:
    now = int(time.time())
    return {"sub": "ana", "iat": now, "exp": now + 600, **extra}


@contextlib.asynccontextmanager
async def running(settings: TokenSettings) -> AsyncIterator[TokenVerifier]:
    verifier = TokenVerifier(settings)
    await verifier.start()
    try:
        yield verifier
    finally:
        await verifier.close()


async def refused(verifier: TokenVerifier, token: str, reason: str) -> str:
    with pytest.raises(Unauthenticated) as caught:
        await verifier.verify(token)
    assert reason in caught.value.message, caught.value.message
    return caught.value.message


def write_jwks(path: Path, keys: list[dict[str, Any]]) -> None:
    # replaced whole, as an operator's deploy would, so a reader never sees half a file
    partial = path.with_name(path.name + ".new")
    partial.write_text(json.dumps({"keys": keys}))
    partial.replace(path)


# -- the key set server -----------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


async def wait_until(deadline: float) -> None:
    await asyncio.sleep(max(0.0, deadline - time.monotonic()))


# -- HS256 ------------------------------------------------------------------------------


@pytest.fixture
def secret() -> bytes:
    return generate_secret()


async def test_hs256_token_gives_a_verified_user(secret):
    async with running(TokenSettings(secret=secret)) as verifier:
        principal = await verifier.verify(issue(secret, user="ana", roles=["admin"]))
    assert principal.actor == "ana"
    assert principal.agent_id is None
    assert principal.roles == frozenset({"admin"})
    assert principal.verified
    assert principal.expires_at is not None
    assert abs(principal.expires_at - (time.time() + 3600)) < 5


async def test_a_token_without_exp_never_expires(secret):
    async with running(TokenSettings(secret=secret)) as verifier:
        principal = await verifier.verify(issue(secret, user="ana", ttl=None))
    assert principal.expires_at is None
    assert principal.roles == frozenset()


async def test_expired_token(secret):
    async with running(TokenSettings(secret=secret)) as verifier:
        await refused(verifier, issue(secret, user="ana", ttl=-120), "token expired")


async def test_leeway_accepts_a_token_just_past_exp(secret):
    token = issue(secret, user="ana", ttl=-5)
    async with running(TokenSettings(secret=secret, leeway=30)) as verifier:
        assert (await verifier.verify(token)).actor == "ana"
    async with running(TokenSettings(secret=secret, leeway=0)) as verifier:
        await refused(verifier, token, "token expired")


async def test_nbf_in_the_future(secret):
    token = jwt.encode(claims(nbf=int(time.time()) + 600), secret, algorithm="HS256")
    async with running(TokenSettings(secret=secret)) as verifier:
        await refused(verifier, token, "not valid yet (nbf")


async def test_wrong_signature(secret):
    async with running(TokenSettings(secret=secret)) as verifier:
        await refused(verifier, issue(generate_secret(), user="ana"), "signature does not verify")
        # a payload swapped under a genuine signature
        genuine = issue(secret, user="ana").split(".")
        forged = issue(generate_secret(), user="root", roles=["admin"]).split(".")
        await refused(
            verifier, f"{genuine[0]}.{forged[1]}.{genuine[2]}", "signature does not verify"
        )


async def test_audience(secret):
    settings = TokenSettings(secret=secret, audience="collab")
    async with running(settings) as verifier:
        assert (await verifier.verify(issue(secret, user="ana", audience="collab"))).actor == "ana"
        await refused(
            verifier, issue(secret, user="ana", audience="billing"), "wrong token audience"
        )
        await refused(verifier, issue(secret, user="ana"), "lacks the 'aud' claim")
    # a token meant for someone else is refused even where no audience is configured
    async with running(TokenSettings(secret=secret)) as verifier:
        await refused(verifier, issue(secret, user="ana", audience="billing"), "expected none")


async def test_issuer(secret):
    settings = TokenSettings(secret=secret, issuer="https://id.example")
    async with running(settings) as verifier:
        good = issue(secret, user="ana", issuer="https://id.example")
        assert (await verifier.verify(good)).actor == "ana"
        await refused(
            verifier, issue(secret, user="ana", issuer="https://evil"), "wrong token issuer"
        )
        await refused(verifier, issue(secret, user="ana"), "lacks the 'iss' claim")


async def test_alg_none_is_refused(secret, tmp_path):
    unsigned = compact({"alg": "none", "typ": "JWT"}, claims(roles=["admin"]))
    async with running(TokenSettings(secret=secret)) as verifier:
        await refused(verifier, unsigned, "token algorithm 'none' is not allowed")
    key_file = tmp_path / "key.pem"
    key_file.write_bytes(pem(key_for("RS256")))
    async with running(TokenSettings(public_key_file=key_file)) as verifier:
        await refused(verifier, unsigned, "token algorithm 'none' is not allowed")
        for spelling in ("None", "NONE", ""):
            await refused(verifier, compact({"alg": spelling}, claims()), "is not allowed")


async def test_hs256_signed_with_the_public_key_is_refused(secret, tmp_path):
    public_pem = pem(key_for("RS256"))
    key_file = tmp_path / "key.pem"
    key_file.write_bytes(public_pem)
    confused = hs256_by_hand(public_pem, claims(roles=["admin"]))
    async with running(TokenSettings(public_key_file=key_file)) as verifier:
        await refused(verifier, confused, "token algorithm 'HS256' is not allowed")
    # with a secret configured too, HS256 is checked with the secret, never the key's bytes
    async with running(TokenSettings(secret=secret, public_key_file=key_file)) as verifier:
        await refused(verifier, confused, "signature does not verify")
        rs256 = sign(key_for("RS256"), "RS256", claims())
        assert (await verifier.verify(rs256)).actor == "ana"
    # and an RS256 token is never checked against the secret
    async with running(TokenSettings(secret=secret)) as verifier:
        await refused(verifier, sign(key_for("RS256"), "RS256", claims()), "'RS256' is not allowed")


async def test_malformed_tokens(secret):
    async with running(TokenSettings(secret=secret)) as verifier:
        await refused(verifier, "", "no token")
        for token in ("abc", "a.b.c", "a.b", "....", "é.é.é"):
            await refused(verifier, token, "malformed token")
        await refused(verifier, "x" * 20_000, "malformed token: longer than")
        not_json = b64url(b"{not json") + "." + b64url(b"{}") + "." + b64url(b"")
        await refused(verifier, not_json, "malformed token")


async def test_exp_beyond_any_clock(secret):
    async with running(TokenSettings(secret=secret)) as verifier:
        await refused(verifier, hs256_by_hand(secret, claims(exp=10**400)), "'exp' is out of range")
        # far but representable: accepted, with that expiry
        far = await verifier.verify(hs256_by_hand(secret, claims(exp=10**15)))
        assert far.expires_at == 1e15


async def test_subject_checks(secret):
    async with running(TokenSettings(secret=secret)) as verifier:
        now = int(time.time())
        no_one = jwt.encode({"iat": now, "exp": now + 60}, secret, algorithm="HS256")
        await refused(verifier, no_one, "neither 'sub' nor 'agent_id'")
        await refused(verifier, issue(secret, user="a" * 201), "longer than 200")
        assert (await verifier.verify(issue(secret, user="a" * 200))).actor == "a" * 200
        await refused(verifier, issue(secret, user="ana\x00root"), "NUL")
        empty = jwt.encode(claims(sub=""), secret, algorithm="HS256")
        await refused(verifier, empty, "non-empty string")
        number = hs256_by_hand(secret, claims(sub=42))
        await refused(verifier, number, "Subject must be a string")
        bad_agent = jwt.encode(claims(agent_id=["x"]), secret, algorithm="HS256")
        await refused(verifier, bad_agent, "'agent_id' must be a non-empty string")


async def test_service_token(secret):
    async with running(TokenSettings(secret=secret)) as verifier:
        token = issue(secret, user="ops@example", agent_id="mixer-bot", roles=["auditor"])
        principal = await verifier.verify(token)
    assert principal.actor == "mixer-bot"
    assert principal.agent_id == "mixer-bot"
    assert principal.agent == "mixer-bot"
    assert principal.roles == frozenset({"auditor"})


async def test_roles(secret):
    def token(payload: dict[str, Any]) -> str:
        return jwt.encode(claims(**payload), secret, algorithm="HS256")

    async with running(TokenSettings(secret=secret)) as verifier:
        listed = await verifier.verify(token({"roles": ["admin", "owner", 7, "auditor"]}))
        assert listed.roles == frozenset({"admin", "auditor"})
        spaced = await verifier.verify(token({"roles": "editor  auditor"}))
        assert spaced.roles == frozenset({"auditor"})
        assert (await verifier.verify(token({"roles": {"admin": True}}))).roles == frozenset()
        assert (await verifier.verify(token({"roles": "administrator"}))).roles == frozenset()
        unknown_only = issue(secret, user="ana", roles=["superuser", "root"])
        assert (await verifier.verify(unknown_only)).roles == frozenset()

    nested = TokenSettings(secret=secret, roles_claim="realm_access.roles")
    async with running(nested) as verifier:
        deep = token({"realm_access": {"roles": ["offline_access", "admin"]}, "roles": ["auditor"]})
        assert (await verifier.verify(deep)).roles == frozenset({"admin"})
        assert (await verifier.verify(token({"realm_access": "admin"}))).roles == frozenset()
        issued = issue(secret, user="ana", roles=["auditor"], roles_claim="realm_access.roles")
        assert (await verifier.verify(issued)).roles == frozenset({"auditor"})
        # a top-level claim literally named with the dot is read as it is
        flat = token({"realm_access.roles": "admin auditor"})
        assert (await verifier.verify(flat)).roles == frozenset({"admin", "auditor"})


# -- public keys: PEM file, JWKS file, JWKS URL -----------------------------------------


@pytest.mark.parametrize("algorithm", ASYMMETRIC)
@pytest.mark.parametrize("source", ["pem", "jwks_file", "jwks_url"])
async def test_public_key_sources(algorithm, source, tmp_path, jwks_server):
    key = key_for(algorithm)
    kid = None if source == "pem" else f"{algorithm}-1"
    if source == "pem":
        (tmp_path / "key.pem").write_bytes(pem(key))
        settings = TokenSettings(public_key_file=tmp_path / "key.pem")
    elif source == "jwks_file":
        # the other algorithms' keys sit in the same set, as in a real provider's
        write_jwks(tmp_path / "jwks.json", [jwk(key_for(a), f"{a}-1") for a in ASYMMETRIC])
        settings = TokenSettings(jwks_file=tmp_path / "jwks.json")
    else:
        jwks_server.keys = [jwk(key_for(a), f"{a}-1") for a in ASYMMETRIC]
        settings = TokenSettings(jwks_url=jwks_server.url)
    async with running(settings) as verifier:
        principal = await verifier.verify(sign(key, algorithm, claims(roles="admin"), kid=kid))
        assert principal.actor == "ana"
        assert principal.roles == frozenset({"admin"})
        # same algorithm, same key id, another key: the signature gives it away
        impostor = sign(key_for(algorithm, "impostor"), algorithm, claims(), kid=kid)
        await refused(verifier, impostor, "signature does not verify")
        await refused(
            verifier, sign(key, algorithm, claims(exp=int(time.time()) - 300), kid=kid), "expired"
        )
        # a token claiming another algorithm than its key's is refused before any check
        other = "ES256" if algorithm != "ES256" else "RS256"
        mismatched = sign(key_for(other), other, claims(), kid=kid)
        if source == "pem":
            await refused(verifier, mismatched, "does not fit the configured")
        else:
            await refused(verifier, mismatched, f"is for {algorithm}, the token says {other}")
        if source != "pem":
            await refused(verifier, sign(key, algorithm, claims(), kid="nobody"), "unknown key id")
    if source == "jwks_url":
        assert verifier.fetches == jwks_server.requests == 1


async def test_key_set_without_kid_uses_its_one_key(tmp_path):
    write_jwks(tmp_path / "jwks.json", [jwk(key_for("EdDSA"), None)])
    async with running(TokenSettings(jwks_file=tmp_path / "jwks.json")) as verifier:
        assert (await verifier.verify(sign(key_for("EdDSA"), "EdDSA", claims()))).actor == "ana"
    two = [jwk(key_for("EdDSA"), "a"), jwk(key_for("EdDSA", "other"), "b")]
    write_jwks(tmp_path / "jwks.json", two)
    async with running(TokenSettings(jwks_file=tmp_path / "jwks.json")) as verifier:
        await refused(verifier, sign(key_for("EdDSA"), "EdDSA", claims()), "names no key id")


async def test_explicit_algorithms_narrow_what_is_accepted(tmp_path):
    (tmp_path / "key.pem").write_bytes(pem(key_for("RS256")))
    settings = TokenSettings(public_key_file=tmp_path / "key.pem", algorithms=("ES256",))
    async with running(settings) as verifier:
        await refused(verifier, sign(key_for("RS256"), "RS256", claims()), "'RS256' is not allowed")
        await refused(verifier, sign(key_for("ES256"), "ES256", claims()), "does not fit")


async def test_unusable_key_sets_and_files(tmp_path):
    p384 = ec.generate_private_key(ec.SECP384R1())
    (tmp_path / "p384.pem").write_bytes(pem(p384))
    with pytest.raises(ValueError, match="RSA, EC P-256 or Ed25519"):
        await TokenVerifier(TokenSettings(public_key_file=tmp_path / "p384.pem")).start()
    (tmp_path / "junk.pem").write_text("not a key")
    with pytest.raises(ValueError, match="not a PEM public key"):
        await TokenVerifier(TokenSettings(public_key_file=tmp_path / "junk.pem")).start()
    with pytest.raises(ValueError, match="no such JWKS file"):
        await TokenVerifier(TokenSettings(jwks_file=tmp_path / "missing.json")).start()
    # a set of only symmetric, encryption, mislabelled or other-curve keys has nothing to use
    oct_key = {"kty": "oct", "k": b64url(generate_secret()), "kid": "s"}
    encryption = {**jwk(key_for("RS256"), "e"), "use": "enc"}
    mislabelled = {**jwk(key_for("RS256"), "m"), "alg": "ES256"}
    write_jwks(tmp_path / "jwks.json", [oct_key, encryption, mislabelled, jwk(p384, "p")])
    with pytest.raises(ValueError, match="no RS256, ES256 or EdDSA signing key"):
        await TokenVerifier(TokenSettings(jwks_file=tmp_path / "jwks.json")).start()


async def test_jwks_file_is_read_again_when_it_changes(tmp_path):
    path = tmp_path / "jwks.json"
    write_jwks(path, [jwk(key_for("ES256"), "old")])
    rotated = sign(key_for("ES256", "new"), "ES256", claims(), kid="new")
    async with running(TokenSettings(jwks_file=path)) as verifier:
        await refused(verifier, rotated, "unknown key id 'new'")
        write_jwks(path, [jwk(key_for("ES256"), "old"), jwk(key_for("ES256", "new"), "new")])
        assert (await verifier.verify(rotated)).actor == "ana"
        # a broken file keeps the keys read last in use
        path.write_text("{")
        assert (await verifier.verify(rotated)).actor == "ana"
        path.unlink()
        assert (await verifier.verify(rotated)).actor == "ana"


# -- JWKS URL: cooldown, lifetime, failures ---------------------------------------------


async def test_unknown_kid_flood_costs_one_fetch_per_cooldown(jwks_server):
    cooldown = 2.0
    jwks_server.keys = [jwk(key_for("RS256"), "k1")]
    rng = random.Random(7)
    flood = [
        sign(key_for("EdDSA"), "EdDSA", claims(), kid=f"{rng.getrandbits(64):016x}")
        for _ in range(200)
    ]
    known = sign(key_for("RS256"), "RS256", claims(), kid="k1")
    rotated = sign(key_for("RS256", "next"), "RS256", claims(), kid="k2")

    async def flood_all() -> None:
        results = await asyncio.gather(
            *(verifier.verify(token) for token in flood), return_exceptions=True
        )
        for result in results:
            assert isinstance(result, Unauthenticated), result
            assert "unknown key id" in result.message

    async with running(TokenSettings(jwks_url=jwks_server.url, jwks_cooldown=cooldown)) as verifier:
        started = time.monotonic()
        assert verifier.fetches == jwks_server.requests == 1
        assert (await verifier.verify(known)).actor == "ana"
        # within the cooldown of the first fetch: refused at once, nothing fetched
        await flood_all()
        assert verifier.fetches == 1

        await wait_until(started + cooldown + 0.1)
        # past it: the first unknown id fetches, the other 199 wait for that fetch
        refreshed = time.monotonic()
        await flood_all()
        for token in flood:
            await refused(verifier, token, "unknown key id")
        assert verifier.fetches == jwks_server.requests == 2

        # a key the provider adds is not fetched before the cooldown has passed...
        jwks_server.keys.append(jwk(key_for("RS256", "next"), "k2"))
        await refused(verifier, rotated, "unknown key id 'k2'")
        assert time.monotonic() - refreshed < cooldown, "the machine was too slow to tell"
        assert verifier.fetches == 2
        # ...and is picked up by the first token naming it after
        await wait_until(refreshed + cooldown + 0.1)
        assert (await verifier.verify(rotated)).actor == "ana"
        assert (await verifier.verify(known)).actor == "ana"
    assert verifier.fetches == jwks_server.requests == 3


async def test_key_set_is_fetched_again_after_its_lifetime(jwks_server):
    jwks_server.keys = [jwk(key_for("EdDSA"), "k1")]
    settings = TokenSettings(jwks_url=jwks_server.url, jwks_lifetime=0.5, jwks_cooldown=0)
    async with running(settings) as verifier:
        first = sign(key_for("EdDSA"), "EdDSA", claims(), kid="k1")
        assert (await verifier.verify(first)).actor == "ana"
        assert verifier.fetches == 1
        # the provider withdraws k1: once the set is stale it is fetched and k1 is gone
        jwks_server.keys = [jwk(key_for("EdDSA", "next"), "k2")]
        await asyncio.sleep(0.6)
        await refused(verifier, first, "unknown key id 'k1'")
        assert verifier.fetches == 2
        second = sign(key_for("EdDSA", "next"), "EdDSA", claims(), kid="k2")
        assert (await verifier.verify(second)).actor == "ana"
        assert verifier.fetches == jwks_server.requests == 2


async def test_key_set_server_down():
    url = f"http://127.0.0.1:{free_port()}/jwks.json"
    token = sign(key_for("RS256"), "RS256", claims(), kid="k1")
    async with running(TokenSettings(jwks_url=url, jwks_timeout=2)) as verifier:
        message = await refused(verifier, token, "unknown key id 'k1'")
        assert "keys could not be fetched; the server log says why" in message
        assert url not in message  # the caller is not told where or why
        assert "unreachable (ConnectError" in (verifier.fetch_error or "")
        no_kid = sign(key_for("RS256"), "RS256", claims())
        await refused(verifier, no_kid, "could not be fetched")
        for _ in range(50):
            await refused(verifier, token, "could not be fetched")
        # the failed fetch at start counts towards the cooldown: no retry storm
        assert verifier.fetches == 1


async def test_key_set_server_answering_badly(jwks_server):
    jwks_server.keys = [jwk(key_for("ES256"), "k1")]
    token = sign(key_for("ES256"), "ES256", claims(), kid="k1")
    jwks_server.mode = "garbage"
    async with running(TokenSettings(jwks_url=jwks_server.url, jwks_cooldown=0)) as verifier:
        await refused(verifier, token, "could not be fetched")
        assert "not a JSON document" in (verifier.fetch_error or "")
        jwks_server.mode = "error"
        await refused(verifier, token, "could not be fetched")
        assert "HTTP 500" in (verifier.fetch_error or "")
        jwks_server.mode = "ok"
        assert (await verifier.verify(token)).actor == "ana"
        # a failed refresh keeps the keys fetched before
        jwks_server.mode = "error"
        k9 = sign(key_for("ES256"), "ES256", claims(), kid="k9")
        await refused(verifier, k9, "could not be fetched")
        assert "HTTP 500" in (verifier.fetch_error or "")
        assert (await verifier.verify(token)).actor == "ana"
        # at start, then one per verification needing a fetch (the cooldown is 0)
        assert verifier.fetches == jwks_server.requests == 5


async def test_key_set_server_that_never_answers(jwks_server):
    jwks_server.mode = "hang"
    settings = TokenSettings(jwks_url=jwks_server.url, jwks_timeout=0.5, jwks_cooldown=0)
    token = sign(key_for("EdDSA"), "EdDSA", claims(), kid="k1")
    async with running(settings) as verifier:
        assert verifier.fetches == 1
        async with asyncio.timeout(10):
            results = await asyncio.gather(
                *(verifier.verify(token) for _ in range(20)), return_exceptions=True
            )
        for result in results:
            assert isinstance(result, Unauthenticated), result
            assert "could not be fetched" in result.message
        assert "no complete answer within 0.5 s" in (verifier.fetch_error or "")
        # twenty waiting verifications shared one fetch
        assert verifier.fetches == jwks_server.requests == 2


# -- settings ---------------------------------------------------------------------------


def test_settings_refuse_what_cannot_be_safe(secret):
    with pytest.raises(ValueError, match="'none' is never allowed"):
        TokenSettings(secret=secret, algorithms=("none",))
    with pytest.raises(ValueError, match="unknown token algorithm 'HS512'"):
        TokenSettings(secret=secret, algorithms=("HS512",))
    with pytest.raises(ValueError, match="at least 32 bytes"):
        TokenSettings(secret=b"short")
    with pytest.raises(ValueError, match="http or https"):
        TokenSettings(jwks_url="file:///etc/jwks.json")
    with pytest.raises(ValueError, match="no key to verify tokens with"):
        TokenVerifier(TokenSettings())
    with pytest.raises(ValueError, match="has a configured key"):
        TokenVerifier(TokenSettings(secret=secret, algorithms=("RS256",)))
    assert TokenSettings(secret=secret).effective_algorithms == {"HS256"}
    both = TokenSettings(secret=secret, jwks_url="https://id.example/jwks")
    assert both.effective_algorithms == {"HS256", "RS256", "ES256", "EdDSA"}
    narrowed = TokenSettings(jwks_url="https://id.example/jwks", algorithms=("EdDSA", "HS256"))
    assert narrowed.effective_algorithms == {"EdDSA"}


async def test_verify_before_start_is_a_programming_error(secret):
    with pytest.raises(RuntimeError, match=r"before TokenVerifier\.start"):
        await TokenVerifier(TokenSettings(secret=secret)).verify(issue(secret, user="ana"))


# -- issuing and the secret file --------------------------------------------------------


def test_issue_refuses_a_short_secret():
    with pytest.raises(ValueError, match="at least 32 bytes"):
        issue(b"short", user="ana")


def test_generate_secret():
    first, second = generate_secret(), generate_secret()
    assert len(first) == 32
    assert first != second


def test_load_or_create_secret(tmp_path):
    path = tmp_path / "state" / "auth" / "token.secret"
    created = load_or_create_secret(path)
    assert len(created) == 32
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert path.read_text() == created.hex() + "\n"
    assert load_or_create_secret(path) == created
    assert [entry.name for entry in path.parent.iterdir()] == ["token.secret"]


def test_load_or_create_secret_under_a_race(tmp_path):
    path = tmp_path / "token.secret"
    with ThreadPoolExecutor(max_workers=8) as pool:
        secrets = list(pool.map(lambda _: load_or_create_secret(path), range(16)))
    assert len(set(secrets)) == 1
    # the losers' partial files are gone
    assert [entry.name for entry in tmp_path.iterdir()] == ["token.secret"]


@pytest.mark.parametrize(
    "content",
    [b"", b"abc", b"00" * 31, b"00" * 33, b"zz" * 32, b"\xff" * 64, b"00" * 16 + b" " + b"00" * 16],
)
def test_load_or_create_secret_refuses_a_foreign_file(tmp_path, content):
    path = tmp_path / "token.secret"
    path.write_bytes(content)
    with pytest.raises(ValueError, match="expected 64 hex characters"):
        load_or_create_secret(path)
