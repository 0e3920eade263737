"""A fake identity provider: RSA and EC signing keys, their public halves served as a JWKS
over real HTTP (as Keycloak, Auth0 and Entra ID publish them), and tokens signed with them.

`publish` changes what the JWKS serves (key rotation); `trouble` makes it answer the way a
provider in trouble does: 500, an HTML page, or only after `slow_seconds`.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import json
import time
from typing import Any, Literal

import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from jwt.algorithms import ECAlgorithm, RSAAlgorithm

from tests.fakes.http import FakeServer, Reply, Request

ISSUER = "https://idp.example.test/realms/chat"
AUDIENCE = "session-service"
JWKS_PATH = "/protocol/openid-connect/certs"

Trouble = Literal["http-500", "not-json", "slow"]
SigningKey = rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey


class FakeIdentityProvider:
    def __init__(self) -> None:
        self.keys: dict[str, SigningKey] = {}
        self.published: list[str] = []
        self.trouble: Trouble | None = None
        self.slow_seconds = 0.0
        # Keycloak also publishes an encryption key: it must be passed over, not break the set.
        self._encryption_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        self.server = FakeServer(self._handle)

    def start(self) -> FakeIdentityProvider:
        self.server.start()
        return self

    def stop(self) -> None:
        self.server.stop()

    @property
    def jwks_url(self) -> str:
        return self.server.url + JWKS_PATH

    @property
    def fetches(self) -> int:
        return sum(request.path == JWKS_PATH for request in self.server.requests)

    def new_key(self, kid: str, kind: Literal["RSA", "EC"]) -> str:
        """A new signing key, not yet published."""
        if kind == "RSA":
            self.keys[kid] = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        else:
            self.keys[kid] = ec.generate_private_key(ec.SECP256R1())
        return kid

    def publish(self, *kids: str) -> None:
        self.published = list(kids)

    def token(
        self,
        kid: str,
        subject: str = "alice",
        *,
        algorithm: str | None = None,
        omit: tuple[str, ...] = (),
        **claims: Any,
    ) -> str:
        """A token as the provider issues it (valid for an hour), signed with key `kid`;
        `claims` override or add to the usual ones, `omit` leaves some out."""
        key = self.keys[kid]
        if algorithm is None:
            algorithm = "RS256" if isinstance(key, rsa.RSAPrivateKey) else "ES256"
        now = int(time.time())
        payload: dict[str, Any] = {
            "iss": ISSUER,
            "aud": AUDIENCE,
            "sub": subject,
            "iat": now,
            "exp": now + 3600,
            "scope": "openid profile",
        }
        payload.update(claims)
        for name in omit:
            del payload[name]
        return jwt.encode(payload, key, algorithm=algorithm, headers={"kid": kid})

    def public_pem(self, kid: str) -> bytes:
        return (
            self.keys[kid]
            .public_key()
            .public_bytes(
                serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
            )
        )

    def jwks(self) -> dict[str, Any]:
        keys: list[dict[str, Any]] = []
        for kid in self.published:
            key = self.keys[kid]
            if isinstance(key, rsa.RSAPrivateKey):
                # Entra ID leaves `alg` out of its RSA keys; PyJWT infers RS256 from `kty`.
                jwk = RSAAlgorithm.to_jwk(key.public_key(), as_dict=True)
            else:
                jwk = ECAlgorithm.to_jwk(key.public_key(), as_dict=True) | {"alg": "ES256"}
            keys.append(jwk | {"kid": kid, "use": "sig"})
        keys.append(
            RSAAlgorithm.to_jwk(self._encryption_key.public_key(), as_dict=True)
            | {"kid": "enc-1", "use": "enc", "alg": "RSA-OAEP"}
        )
        return {"keys": keys}

    async def _handle(self, request: Request) -> Reply:
        if request.path != JWKS_PATH:
            return Reply(404, {"error": "not found"})
        if self.trouble == "slow":
            await asyncio.sleep(self.slow_seconds)
        if self.trouble == "http-500":
            return Reply(500, {"error": "internal"})
        if self.trouble == "not-json":
            return Reply(200, b"<html>maintenance</html>", content_type="text/html")
        return Reply(200, self.jwks())


def hs256_signed_with(secret: bytes, claims: dict[str, Any], kid: str) -> str:
    """An HS256 token made by hand: PyJWT refuses to use a public key as an HMAC secret, an
    attacker's own code does not (the algorithm-confusion attack)."""

    def segment(data: bytes) -> bytes:
        return base64.urlsafe_b64encode(data).rstrip(b"=")

    header = {"alg": "HS256", "typ": "JWT", "kid": kid}
    signing_input = (
        segment(json.dumps(header).encode()) + b"." + segment(json.dumps(claims).encode())
    )
    signature = hmac.new(secret, signing_input, hashlib.sha256).digest()
    return (signing_input + b"." + segment(signature)).decode()
