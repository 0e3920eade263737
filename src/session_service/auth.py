"""Bearer JWTs: HS256 signed with AUTH_JWT_SECRET, and RS256/ES256 issued by an identity
provider whose public keys are published at AUTH_JWKS_URL. `sub` is the user id, `exp` is
required, `scope` (or `scp`) may hold `admin`."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import jwt
from jwt import PyJWK, PyJWKClient, PyJWKClientConnectionError, PyJWKClientError

from session_service.config import Settings
from session_service.errors import ServiceError, Unauthorized

log = logging.getLogger(__name__)

SECRET_ALGORITHM = "HS256"
PROVIDER_ALGORITHMS = ("RS256", "ES256")
ADMIN_SCOPE = "admin"
DEV_USER_ID = "dev"
MAX_USER_ID_LENGTH = 255

# A provider that hangs holds a worker thread, and the requests waiting on its keys, this long.
JWKS_TIMEOUT_SECONDS = 5.0
# How long a fetched key set is trusted: a key the provider withdraws is refused after this.
JWKS_CACHE_SECONDS = 300.0
# An unknown `kid` refetches the keys at most once in this interval, so tokens with made-up
# `kid`s cannot make us hammer the provider; a key rotated in is accepted after this at most.
JWKS_REFETCH_COOLDOWN_SECONDS = 30.0
# The provider's clock and ours differ a little; without this a token minted "now" on a clock
# a second ahead is refused as not yet valid (`iat`, `nbf`).
PROVIDER_CLOCK_SKEW_SECONDS = 30.0


class IdentityProviderUnavailable(ServiceError):
    """The provider's keys cannot be had: the token may be fine, so not a 401."""

    status_code = 503
    code = "identity_provider_unavailable"


@dataclass(frozen=True, slots=True)
class User:
    id: str
    is_admin: bool


DEV_USER = User(id=DEV_USER_ID, is_admin=True)


def is_valid_user_id(value: object) -> bool:
    """1-255 characters that UTF-8 can encode (a lone surrogate cannot be stored)."""
    if not isinstance(value, str) or not 0 < len(value) <= MAX_USER_ID_LENGTH:
        return False
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def mint_token(secret: str, user_id: str, *, admin: bool = False, ttl_seconds: int = 3600) -> str:
    now = int(time.time())
    claims: dict[str, object] = {"sub": user_id, "iat": now, "exp": now + ttl_seconds}
    if admin:
        claims["scope"] = ADMIN_SCOPE
    return jwt.encode(claims, secret, algorithm=SECRET_ALGORITHM)


@dataclass(frozen=True, slots=True)
class Provider:
    """The identity provider: its keys (fetched and cached by PyJWT) and who must sign for whom."""

    keys: PyJWKClient
    issuer: str
    audience: str


class TokenVerifier:
    """Checks a bearer token against what the settings trust. Made once per process: the JWKS
    client in it caches the provider's keys across requests."""

    def __init__(self, secret: str | None, provider: Provider | None) -> None:
        self._secret = secret
        self._provider = provider

    @classmethod
    def from_settings(cls, settings: Settings) -> TokenVerifier:
        secret = settings.auth_jwt_secret
        provider = None
        if settings.auth_jwks_url:
            # Settings refuse a JWKS URL without these two.
            assert settings.auth_issuer is not None
            assert settings.auth_audience is not None
            keys = PyJWKClient(
                settings.auth_jwks_url,
                # No per-`kid` cache: PyJWT keeps those forever, so a key the provider withdraws
                # (say, a leaked one) would be trusted until restart. The set cache expires.
                cache_keys=False,
                lifespan=JWKS_CACHE_SECONDS,
                timeout=JWKS_TIMEOUT_SECONDS,
                cooldown_duration=JWKS_REFETCH_COOLDOWN_SECONDS,
            )
            provider = Provider(keys, settings.auth_issuer, settings.auth_audience)
        return cls(secret.get_secret_value() if secret else None, provider)

    async def user(self, token: str) -> User:
        """The token's user, or Unauthorized; IdentityProviderUnavailable if its keys cannot
        be fetched."""
        try:
            header = jwt.get_unverified_header(token)
        except jwt.InvalidTokenError as exc:
            raise Unauthorized(f"invalid token: {exc}") from None
        # The header picks the key, and each key takes only its own algorithms: an HS256 token
        # is never checked against a public key (algorithm confusion), and `none` never passes.
        algorithm = header.get("alg")
        if algorithm == SECRET_ALGORITHM and self._secret is not None:
            claims = _decode(token, self._secret, [SECRET_ALGORITHM])
        elif algorithm in PROVIDER_ALGORITHMS and self._provider is not None:
            provider = self._provider
            kid = header.get("kid")  # PyJWT has checked that it is a string, if there
            if not kid:
                raise Unauthorized("invalid token: its header names no key (`kid`)")
            # PyJWKClient fetches with urllib, which blocks: keep the event loop free.
            key = await asyncio.to_thread(_signing_key, provider.keys, kid)
            claims = _decode(
                token,
                key,
                [str(algorithm)],
                issuer=provider.issuer,
                audience=provider.audience,
                leeway=PROVIDER_CLOCK_SKEW_SECONDS,
            )
        else:
            raise Unauthorized(f"invalid token: algorithm {algorithm!r} is not accepted")
        return _user(claims)


def _signing_key(keys: PyJWKClient, kid: str) -> PyJWK:
    """The provider's key named `kid` (runs in a worker thread). Keys that cannot be fetched
    are the provider's fault (503); a `kid` it does not publish is the token's (401)."""
    try:
        keys.get_signing_keys()  # the cached set, fetched when missing or expired
    except (jwt.PyJWTError, ValueError) as exc:  # ValueError: a body that is not JSON
        raise _unavailable(exc) from None
    try:
        # Refetches once for a `kid` not in the set (key rotation), cooldown permitting.
        return keys.get_signing_key(kid)
    except PyJWKClientConnectionError as exc:
        raise _unavailable(exc) from None
    except PyJWKClientError:
        raise Unauthorized(
            f"invalid token: key {kid!r} is not among the identity provider's keys"
        ) from None
    except (jwt.PyJWTError, ValueError) as exc:
        raise _unavailable(exc) from None


def _unavailable(exc: Exception) -> IdentityProviderUnavailable:
    log.warning("identity provider keys unavailable: %s", exc)
    return IdentityProviderUnavailable(
        "identity provider unavailable: cannot fetch its signing keys, try again later"
    )


def _decode(
    token: str, key: str | PyJWK, algorithms: Sequence[str], **checks: Any
) -> dict[str, Any]:
    try:
        claims: dict[str, Any] = jwt.decode(
            token, key, algorithms=algorithms, options={"require": ["exp", "sub"]}, **checks
        )
    except jwt.ExpiredSignatureError:
        raise Unauthorized("token expired") from None
    except jwt.InvalidTokenError as exc:
        raise Unauthorized(f"invalid token: {exc}") from None
    return claims


def _user(claims: Mapping[str, Any]) -> User:
    subject = claims["sub"]
    if not is_valid_user_id(subject):
        raise Unauthorized(
            f"invalid token: `sub` must be a string of 1-{MAX_USER_ID_LENGTH} characters"
        )
    return User(id=subject, is_admin=ADMIN_SCOPE in _scopes(claims))


def _scopes(claims: Mapping[str, Any]) -> set[str]:
    """`scope` as OAuth 2 writes it (space-separated); `scp` is the same grant under Entra ID's
    and Okta's name, where it may also be a list."""
    granted: set[str] = set()
    for name in ("scope", "scp"):
        value = claims.get(name)
        if isinstance(value, str):
            granted.update(value.split())
        elif isinstance(value, list):
            granted.update(item for item in value if isinstance(item, str))
    return granted
