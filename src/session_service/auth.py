"""HS256 JWTs: `sub` is the user id, `exp` is honoured, `scope` may hold `admin`."""

from __future__ import annotations

import time
from dataclasses import dataclass

import jwt

from session_service.errors import Unauthorized

ALGORITHM = "HS256"
ADMIN_SCOPE = "admin"
DEV_USER_ID = "dev"
MAX_USER_ID_LENGTH = 255


@dataclass(frozen=True, slots=True)
class User:
    id: str
    is_admin: bool


DEV_USER = User(id=DEV_USER_ID, is_admin=True)


def mint_token(secret: str, user_id: str, *, admin: bool = False, ttl_seconds: int = 3600) -> str:
    now = int(time.time())
    claims: dict[str, object] = {"sub": user_id, "iat": now, "exp": now + ttl_seconds}
    if admin:
        claims["scope"] = ADMIN_SCOPE
    return jwt.encode(claims, secret, algorithm=ALGORITHM)


def user_from_token(secret: str, token: str) -> User:
    try:
        claims = jwt.decode(token, secret, algorithms=[ALGORITHM], options={"require": ["sub"]})
    except jwt.ExpiredSignatureError:
        raise Unauthorized("token expired") from None
    except jwt.InvalidTokenError as exc:
        raise Unauthorized(f"invalid token: {exc}") from None
    subject = claims["sub"]
    if not isinstance(subject, str) or not 0 < len(subject) <= MAX_USER_ID_LENGTH:
        raise Unauthorized(
            f"invalid token: `sub` must be a string of 1-{MAX_USER_ID_LENGTH} characters"
        )
    scope = claims.get("scope", "")
    scopes = scope.split() if isinstance(scope, str) else []
    return User(id=subject, is_admin=ADMIN_SCOPE in scopes)
