"""Auth as api.md says: HS256 JWTs and an identity provider's RS256/ES256 ones (keys from its
JWKS), 401 for a missing/bad/expired token, 503 when the provider's keys cannot be had, dev
mode."""

from __future__ import annotations

import asyncio
import socket
import time
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any

import jwt
import pytest
from asgi_lifespan import LifespanManager
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from httpx import ASGITransport, AsyncClient

from session_service import auth as auth_module
from session_service.config import Settings
from session_service.main import create_app
from tests.conftest import serve_app
from tests.fakes.jwks import AUDIENCE, ISSUER, FakeIdentityProvider, hs256_signed_with
from tests.helpers import JWT_SECRET, auth


@pytest.mark.parametrize(
    "headers",
    [
        {},
        {"Authorization": "Bearer"},
        {"Authorization": "Basic dXNlcjpwYXNz"},
        {"Authorization": "Bearer not-a-jwt"},
        {
            "Authorization": "Bearer "
            + jwt.encode({"sub": "eve"}, "another-secret-" + "y" * 32, "HS256")
        },
        {"Authorization": "Bearer " + jwt.encode({"scope": "admin"}, JWT_SECRET, "HS256")},
        {"Authorization": "Bearer " + jwt.encode({"sub": ""}, JWT_SECRET, "HS256")},
        {"Authorization": "Bearer " + jwt.encode({"sub": 42}, JWT_SECRET, "HS256")},
        # a user id UTF-8 cannot encode could not be stored
        {
            "Authorization": "Bearer "
            + jwt.encode({"sub": "\ud800", "exp": int(time.time()) + 60}, JWT_SECRET, "HS256")
        },
        {
            "Authorization": "Bearer "
            + jwt.encode({"sub": "eve", "exp": int(time.time()) - 60}, JWT_SECRET, "HS256")
        },
        # a valid signature does not make up for a missing `exp`
        {"Authorization": "Bearer " + jwt.encode({"sub": "eve"}, JWT_SECRET, "HS256")},
        # "none" algorithm tokens must never pass
        {"Authorization": "Bearer " + jwt.encode({"sub": "eve"}, None, "none")},
    ],
)
async def test_requests_without_a_valid_token_get_401(
    client: AsyncClient, headers: dict[str, str]
) -> None:
    for method, path in [
        ("GET", "/api/sessions"),
        ("POST", "/api/sessions"),
        ("GET", "/api/sessions/x"),
    ]:
        response = await client.request(
            method, path, headers=headers, json={} if method == "POST" else None
        )
        assert response.status_code == 401, (method, path, response.text)
        assert response.json()["detail"]
        assert response.headers["www-authenticate"] == "Bearer"


async def test_expired_token_says_so(client: AsyncClient) -> None:
    response = await client.get("/api/sessions", headers=auth("eve", ttl=-10))
    assert response.status_code == 401
    assert response.json() == {"detail": "token expired", "code": "unauthorized"}


async def test_token_subject_is_the_user(client: AsyncClient) -> None:
    created = await client.post("/api/sessions", json={}, headers=auth("carol-42"))
    assert created.json()["user_id"] == "carol-42"


async def test_health_needs_no_token(client: AsyncClient) -> None:
    assert (await client.get("/health/live")).status_code == 200
    assert (await client.get("/health/ready")).status_code == 200


async def test_development_mode_acts_as_admin_dev(
    make_settings: Callable[..., Settings], caplog: pytest.LogCaptureFixture
) -> None:
    app = create_app(make_settings(auth_jwt_secret=None))
    async with (
        LifespanManager(app) as manager,
        AsyncClient(transport=ASGITransport(app=manager.app), base_url="http://test") as client,
    ):
        created = await client.post(
            "/api/sessions", json={}, headers={"Authorization": "Bearer junk"}
        )
        assert created.status_code == 201
        assert created.json()["user_id"] == "dev"
    assert any("DEVELOPMENT MODE" in record.getMessage() for record in caplog.records)


async def test_token_without_exp_is_refused(client: AsyncClient) -> None:
    token = jwt.encode({"sub": "eve", "iat": int(time.time())}, JWT_SECRET, "HS256")
    response = await client.get("/api/sessions", headers=bearer(token))
    assert response.status_code == 401
    assert response.json() == {
        "detail": 'invalid token: Token is missing the "exp" claim',
        "code": "unauthorized",
    }


# Tokens from an identity provider, its keys served over HTTP by a fake one.

PROVIDER_DOWN = "identity provider unavailable: cannot fetch its signing keys, try again later"


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


@pytest.fixture
def idp() -> Iterator[FakeIdentityProvider]:
    provider = FakeIdentityProvider().start()
    provider.new_key("rsa-1", "RSA")
    provider.new_key("ec-1", "EC")
    provider.publish("rsa-1", "ec-1")
    try:
        yield provider
    finally:
        provider.stop()


@pytest.fixture
def idp_settings(
    make_settings: Callable[..., Settings], idp: FakeIdentityProvider
) -> Callable[..., Settings]:
    """Settings trusting the fake provider only (no HS256 secret), unless overridden."""

    def make(**overrides: Any) -> Settings:
        values: dict[str, Any] = {
            "auth_jwt_secret": None,
            "auth_jwks_url": idp.jwks_url,
            "auth_issuer": ISSUER,
            "auth_audience": AUDIENCE,
        }
        values.update(overrides)
        return make_settings(**values)

    return make


@pytest.fixture
async def idp_client(idp_settings: Callable[..., Settings]) -> AsyncIterator[AsyncClient]:
    async with serve_app(idp_settings()) as client:
        yield client


@pytest.mark.parametrize(
    ("kid", "algorithm", "admin_grant"),
    [
        ("rsa-1", "RS256", {"scope": "openid admin"}),  # Keycloak, Auth0
        ("ec-1", "ES256", {"scp": "admin profile"}),  # Entra ID's name for it
    ],
)
async def test_provider_tokens_are_accepted(
    idp: FakeIdentityProvider,
    idp_client: AsyncClient,
    kid: str,
    algorithm: str,
    admin_grant: dict[str, str],
) -> None:
    user_id = f"idp-user-{uuid.uuid4().hex[:8]}"
    token = idp.token(kid, user_id)
    assert jwt.get_unverified_header(token)["alg"] == algorithm
    created = await idp_client.post("/api/sessions", json={}, headers=bearer(token))
    assert created.status_code == 201, created.text
    assert created.json()["user_id"] == user_id
    status = await idp_client.get("/api/sessions/status", headers=bearer(token))
    assert status.status_code == 403
    admin = bearer(idp.token(kid, user_id, **admin_grant))
    assert (await idp_client.get("/api/sessions/status", headers=admin)).status_code == 200


async def test_provider_mode_is_not_development_mode(idp_client: AsyncClient) -> None:
    response = await idp_client.get("/api/sessions")
    assert response.status_code == 401
    assert response.json() == {"detail": "missing bearer token", "code": "unauthorized"}


@pytest.mark.parametrize(
    ("claims", "omit", "detail"),
    [
        ({"iss": "https://other-idp.example.test/"}, (), "invalid token: Invalid issuer"),
        ({"aud": "another-service"}, (), "invalid token: Audience doesn't match"),
        ({"exp": int(time.time()) - 300}, (), "token expired"),
        ({"nbf": int(time.time()) + 300}, (), "invalid token: The token is not yet valid (nbf)"),
        ({}, ("exp",), 'invalid token: Token is missing the "exp" claim'),
        ({}, ("iss",), 'invalid token: Token is missing the "iss" claim'),
        ({}, ("aud",), 'invalid token: Token is missing the "aud" claim'),
        ({}, ("sub",), 'invalid token: Token is missing the "sub" claim'),
    ],
)
async def test_provider_token_claims_are_checked(
    idp: FakeIdentityProvider,
    idp_client: AsyncClient,
    claims: dict[str, Any],
    omit: tuple[str, ...],
    detail: str,
) -> None:
    for kid in ("rsa-1", "ec-1"):
        token = idp.token(kid, omit=omit, **claims)
        response = await idp_client.get("/api/sessions", headers=bearer(token))
        assert response.status_code == 401, kid
        assert response.json() == {"detail": detail, "code": "unauthorized"}, kid


async def test_provider_clock_may_differ_a_little(
    idp: FakeIdentityProvider, idp_client: AsyncClient
) -> None:
    now = int(time.time())
    ahead = idp.token("rsa-1", iat=now + 10, nbf=now + 10)
    assert (await idp_client.get("/api/sessions", headers=bearer(ahead))).status_code == 200
    just_expired = idp.token("rsa-1", exp=now - 10)
    assert (await idp_client.get("/api/sessions", headers=bearer(just_expired))).status_code == 200


async def test_a_rotated_key_is_fetched_without_a_restart(
    idp: FakeIdentityProvider,
    idp_settings: Callable[..., Settings],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(auth_module, "JWKS_REFETCH_COOLDOWN_SECONDS", 1.0)
    async with serve_app(idp_settings()) as client:
        old = bearer(idp.token("rsa-1"))
        assert (await client.get("/api/sessions", headers=old)).status_code == 200
        assert idp.fetches == 1

        idp.new_key("rsa-2", "RSA")
        idp.publish("rsa-2", "ec-1")  # rsa-1 withdrawn
        new = bearer(idp.token("rsa-2"))
        # Within the cooldown of the last fetch, an unknown `kid` does not refetch.
        refused = await client.get("/api/sessions", headers=new)
        assert refused.status_code == 401
        assert refused.json() == {
            "detail": "invalid token: key 'rsa-2' is not among the identity provider's keys",
            "code": "unauthorized",
        }
        assert idp.fetches == 1

        await asyncio.sleep(1.2)
        assert (await client.get("/api/sessions", headers=new)).status_code == 200
        assert idp.fetches == 2
        assert (await client.get("/api/sessions", headers=old)).status_code == 401


async def test_unknown_kids_do_not_hammer_the_provider(
    idp: FakeIdentityProvider, idp_client: AsyncClient
) -> None:
    genuine = bearer(idp.token("rsa-1"))
    assert (await idp_client.get("/api/sessions", headers=genuine)).status_code == 200
    forger = ec.generate_private_key(ec.SECP256R1())
    claims = {"iss": ISSUER, "aud": AUDIENCE, "sub": "mallory", "exp": int(time.time()) + 60}
    for number in range(20):
        token = jwt.encode(claims, forger, "ES256", headers={"kid": f"made-up-{number}"})
        response = await idp_client.get("/api/sessions", headers=bearer(token))
        assert response.status_code == 401
    assert idp.fetches == 1


async def test_a_token_naming_no_key_is_refused_without_a_fetch(
    idp: FakeIdentityProvider, idp_client: AsyncClient
) -> None:
    claims = {"iss": ISSUER, "aud": AUDIENCE, "sub": "eve", "exp": int(time.time()) + 60}
    token = jwt.encode(claims, idp.keys["rsa-1"], "RS256")
    response = await idp_client.get("/api/sessions", headers=bearer(token))
    assert response.status_code == 401
    assert response.json() == {
        "detail": "invalid token: its header names no key (`kid`)",
        "code": "unauthorized",
    }
    assert idp.fetches == 0


def _closed_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
    return port


@pytest.mark.parametrize("trouble", ["refused", "http-500", "not-json", "slow"])
async def test_provider_down_answers_503(
    idp: FakeIdentityProvider,
    idp_settings: Callable[..., Settings],
    monkeypatch: pytest.MonkeyPatch,
    trouble: str,
) -> None:
    monkeypatch.setattr(auth_module, "JWKS_TIMEOUT_SECONDS", 0.5)
    url = idp.jwks_url
    if trouble == "refused":
        url = f"http://127.0.0.1:{_closed_port()}/certs"
    else:
        idp.trouble = trouble  # type: ignore[assignment]
        idp.slow_seconds = 3
    async with serve_app(idp_settings(auth_jwks_url=url)) as client:
        response = await client.get("/api/sessions", headers=bearer(idp.token("rsa-1")))
    assert response.status_code == 503
    assert response.json() == {"detail": PROVIDER_DOWN, "code": "identity_provider_unavailable"}


async def test_known_keys_outlive_a_provider_outage(
    idp: FakeIdentityProvider, idp_client: AsyncClient
) -> None:
    assert (await idp_client.get("/api/sessions", headers=bearer(idp.token("rsa-1")))).is_success
    idp.trouble = "http-500"
    response = await idp_client.get("/api/sessions", headers=bearer(idp.token("ec-1")))
    assert response.status_code == 200
    assert idp.fetches == 1


async def test_fetching_keys_leaves_the_event_loop_free(
    idp: FakeIdentityProvider, idp_client: AsyncClient
) -> None:
    idp.trouble = "slow"
    idp.slow_seconds = 1.0
    token = bearer(idp.token("rsa-1"))
    started = time.monotonic()
    waiting = asyncio.create_task(idp_client.get("/api/sessions", headers=token))
    await asyncio.sleep(0.1)  # the request is now waiting for the keys
    assert (await idp_client.get("/health/live")).status_code == 200
    assert time.monotonic() - started < 0.6
    assert not waiting.done()
    assert (await waiting).status_code == 200


@pytest.mark.parametrize("secret", [None, JWT_SECRET], ids=["provider-only", "with-secret"])
async def test_unsigned_and_confused_tokens_are_refused(
    idp: FakeIdentityProvider, idp_settings: Callable[..., Settings], secret: str | None
) -> None:
    claims = {"iss": ISSUER, "aud": AUDIENCE, "sub": "mallory", "exp": int(time.time()) + 60}
    stranger = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    forged = {
        "alg none": jwt.encode(claims, None, "none", headers={"kid": "rsa-1"}),
        # the provider's public key, which anyone can fetch, used as an HMAC secret
        "HS256 with the public key": hs256_signed_with(idp.public_pem("rsa-1"), claims, "rsa-1"),
        # an RSA signature presented under the provider's EC key
        "RS256 on an EC key": jwt.encode(claims, stranger, "RS256", headers={"kid": "ec-1"}),
        "someone else's key": jwt.encode(claims, stranger, "RS256", headers={"kid": "rsa-1"}),
    }
    async with serve_app(idp_settings(auth_jwt_secret=secret)) as client:
        genuine = bearer(idp.token("rsa-1", "mallory"))
        assert (await client.get("/api/sessions", headers=genuine)).status_code == 200
        for name, token in forged.items():
            response = await client.get("/api/sessions", headers=bearer(token))
            assert response.status_code == 401, name
            assert response.json()["detail"].startswith("invalid token: "), name


@pytest.mark.parametrize(
    ("secret", "hs256_status"), [(None, 401), (JWT_SECRET, 201)], ids=["provider-only", "both"]
)
async def test_hs256_tokens_need_the_secret_beside_the_provider(
    idp: FakeIdentityProvider,
    idp_settings: Callable[..., Settings],
    secret: str | None,
    hs256_status: int,
) -> None:
    user_id = f"hs-user-{uuid.uuid4().hex[:8]}"
    async with serve_app(idp_settings(auth_jwt_secret=secret)) as client:
        from_provider = await client.post(
            "/api/sessions", json={}, headers=bearer(idp.token("ec-1", "idp-user"))
        )
        assert from_provider.status_code == 201
        assert from_provider.json()["user_id"] == "idp-user"
        from_secret = await client.post("/api/sessions", json={}, headers=auth(user_id))
        assert from_secret.status_code == hs256_status
        if hs256_status == 201:
            assert from_secret.json()["user_id"] == user_id
        else:
            assert from_secret.json() == {
                "detail": "invalid token: algorithm 'HS256' is not accepted",
                "code": "unauthorized",
            }
