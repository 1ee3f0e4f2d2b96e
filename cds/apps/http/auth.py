"""Bearer JWT verification for CDS Hooks 2.0.1 (PyJWT + cryptography).

Accepted: alg ES384 or RS384 only (never `none`, never HMAC), `typ` JWT and a `kid` in the
header; the signature checked against a key of the JWK Set file (``--jwks``) or of an
allowlisted JWK Set URL named by the token's `jku` (``--trusted-jku``); `iss` in the
allowlist when one is given (``--trusted-issuer``); `aud` equal to the URL called; `exp`
and `iat` within a small skew, a lifetime of at most `max_lifetime`; a `jti` never seen
before from that issuer while the token is valid (kept in memory: one server process).

Every failure is `AuthError`: the caller answers 401 with no detail and logs the reason.
"""

from __future__ import annotations

import json
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import jwt

ALGORITHMS = ("ES384", "RS384")
KEY_TYPE = {"ES384": "EC", "RS384": "RSA"}
REQUIRED_CLAIMS = ("iss", "aud", "exp", "iat", "jti")


class AuthError(Exception):
    """Why a token was refused (logged, never sent to the caller)."""


class AuthConfigError(Exception):
    """A --jwks file that cannot be used (exit 2 at start)."""


def load_jwks(path: Path) -> dict[str, jwt.PyJWK]:
    """Public keys by `kid` from a JWK Set file; only EC and RSA keys are kept (an `oct` secret is refused)."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise AuthConfigError(f"--jwks {path}: cannot be read ({exc.strerror or exc})") from None
    except ValueError as exc:
        raise AuthConfigError(f"--jwks {path}: not a JWK Set (JSON: {exc})") from None
    keys = data.get("keys") if isinstance(data, dict) else None
    if not isinstance(keys, list) or not keys:
        raise AuthConfigError(f'--jwks {path}: not a JWK Set (no "keys" list)')
    out: dict[str, jwt.PyJWK] = {}
    for i, k in enumerate(keys):
        if not isinstance(k, dict) or k.get("kty") not in ("EC", "RSA"):
            raise AuthConfigError(f"--jwks {path}: keys[{i}]: only EC (ES384) and RSA (RS384) public keys are accepted")
        if "d" in k:
            raise AuthConfigError(f"--jwks {path}: keys[{i}]: is a private key; give the public key only")
        if not k.get("kid"):
            raise AuthConfigError(f'--jwks {path}: keys[{i}]: has no "kid"')
        try:
            out[k["kid"]] = jwt.PyJWK(k)
        except jwt.PyJWTError as exc:
            raise AuthConfigError(f"--jwks {path}: keys[{i}]: {exc}") from None
    return out


@dataclass
class Authenticator:
    keys: dict[str, jwt.PyJWK] = field(default_factory=dict)
    trusted_issuers: tuple[str, ...] = ()
    trusted_jkus: tuple[str, ...] = ()
    skew_s: int = 60
    max_lifetime_s: int = 3600
    _seen: dict[tuple[str, str], float] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _clients: dict[str, jwt.PyJWKClient] = field(default_factory=dict)

    def needs_fetch(self, token: str) -> bool:
        """True when verifying will fetch a JWK Set (run it off the event loop)."""
        try:
            return bool(jwt.get_unverified_header(token).get("jku"))
        except jwt.PyJWTError:
            return False

    def _key(self, header: dict[str, Any]) -> jwt.PyJWK:
        kid = header.get("kid")
        if not isinstance(kid, str) or not kid:
            raise AuthError("no kid in the header")
        jku = header.get("jku")
        if jku is not None:
            if jku not in self.trusted_jkus:
                raise AuthError("jku not in the allowlist")
            with self._lock:
                client = self._clients.setdefault(jku, jwt.PyJWKClient(jku, cache_keys=True, lifespan=300, timeout=5))
            try:
                return client.get_signing_key(kid)
            except jwt.PyJWTError as exc:
                raise AuthError(f"jku key: {type(exc).__name__}") from None
        key = self.keys.get(kid)
        if key is None:
            raise AuthError("unknown kid")
        return key

    def verify(self, authorization: str | None, audience: str) -> dict[str, Any]:
        """The token's claims, or AuthError."""
        if not authorization:
            raise AuthError("no Authorization header")
        scheme, _, token = authorization.partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            raise AuthError("not a Bearer token")
        token = token.strip()
        try:
            header = jwt.get_unverified_header(token)
        except jwt.PyJWTError as exc:
            raise AuthError(f"malformed token ({type(exc).__name__})") from None
        alg = header.get("alg")
        if alg not in ALGORITHMS:
            raise AuthError(f"alg {alg!r} refused")
        if str(header.get("typ", "")).upper() != "JWT":
            raise AuthError("typ is not JWT")
        key = self._key(header)
        if key.key_type != KEY_TYPE[alg]:
            raise AuthError(f"the key {header.get('kid')!r} is not a {KEY_TYPE[alg]} key ({alg})")
        try:
            claims = jwt.decode(
                token,
                key.key,
                algorithms=[alg],
                audience=audience,
                leeway=self.skew_s,
                options={"require": list(REQUIRED_CLAIMS), "verify_signature": True},
            )
        except (jwt.PyJWTError, ValueError, TypeError) as exc:  # whatever the token holds: 401, never 500
            raise AuthError(f"{type(exc).__name__}") from None
        now = time.time()
        if self.trusted_issuers and claims["iss"] not in self.trusted_issuers:
            raise AuthError("issuer not in the allowlist")
        if not isinstance(claims["iat"], (int, float)) or claims["iat"] > now + self.skew_s:
            raise AuthError("iat in the future")
        if claims["exp"] - now > self.max_lifetime_s:
            raise AuthError("lifetime too long")
        if not isinstance(claims["jti"], str) or not claims["jti"]:
            raise AuthError("jti missing")
        self._once(str(claims["iss"]), claims["jti"], float(claims["exp"]) + self.skew_s, now)
        return claims

    def _once(self, iss: str, jti: str, until: float, now: float) -> None:
        with self._lock:
            if len(self._seen) > 1000:
                for k in [k for k, t in self._seen.items() if t < now]:
                    del self._seen[k]
            seen = self._seen.get((iss, jti))
            if seen is not None and seen >= now:
                raise AuthError("jti replayed")
            self._seen[(iss, jti)] = until
