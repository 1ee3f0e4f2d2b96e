"""CDS Hooks 2.0.1 authentication against the real server: every token failure is 401, with nothing that helps an attacker."""

from __future__ import annotations

import base64
import json
import signal
import time

import jwt
import pytest
from live_server import Keys, Server

SERVICE = "/cds-services/mm-treatment-sequencing"
ISSUER = "https://ehr.example.org"


@pytest.fixture(scope="module")
def keys(tmp_path_factory):
    return Keys(tmp_path_factory.mktemp("keys"))


@pytest.fixture(scope="module")
def server(tmp_path_factory, keys):
    s = Server(tmp_path_factory.mktemp("serve-auth"), "--workers", "1", "--jwks", str(keys.jwks_path), "--trusted-issuer", ISSUER)
    yield s
    assert s.stop() in (0, -signal.SIGTERM, 128 + signal.SIGTERM)


def call(server, path: str, token: str | None, method: str = "GET", **kw):
    headers = {"Authorization": f"Bearer {token}"} if token is not None else {}
    return server.client.request(method, path, headers=headers, **kw)


def aud(server, path: str) -> str:
    return server.url + path


def b64(data: dict) -> str:
    return base64.urlsafe_b64encode(json.dumps(data).encode()).rstrip(b"=").decode()


@pytest.mark.parametrize("alg", ["ES384", "RS384"])
def test_valid_tokens_are_accepted(server, keys, alg):
    r = call(server, "/cds-services", keys.token(aud(server, "/cds-services"), alg=alg))
    assert r.status_code == 200 and r.json()["services"][0]["id"] == "mm-treatment-sequencing"
    r = call(
        server,
        SERVICE + "/feedback",
        keys.token(aud(server, SERVICE + "/feedback"), alg=alg),
        "POST",
        json={"feedback": [{"card": "c", "outcome": "accepted", "outcomeTimestamp": "2026-01-01T00:00:00Z"}]},
    )
    assert r.status_code == 200


def bad_tokens(server, keys) -> dict[str, str | None]:
    url = aud(server, "/cds-services")
    now = int(time.time())
    claims = {"iss": ISSUER, "aud": url, "exp": now + 300, "iat": now, "jti": "x"}
    replayed = keys.token(url, jti="replayed-once")
    assert call(server, "/cds-services", replayed).status_code == 200  # first use is fine
    return {
        "no token": None,
        "empty": "-",
        "not a JWT": "abc.def",
        "alg none": f"{b64({'alg': 'none', 'typ': 'JWT', 'kid': 'ec-1'})}.{b64(claims)}.",
        "HS256": jwt.encode(claims, "a-shared-secret-of-sufficient-length-123", algorithm="HS256", headers={"kid": "ec-1"}),
        "HS384 with the public key as secret": jwt.encode(claims, "x" * 64, algorithm="HS384", headers={"kid": "rsa-1"}),
        "ES256": jwt.encode(
            claims,
            __import__("cryptography.hazmat.primitives.asymmetric.ec", fromlist=["ec"]).generate_private_key(
                __import__("cryptography.hazmat.primitives.asymmetric.ec", fromlist=["ec"]).SECP256R1()
            ),
            algorithm="ES256",
            headers={"kid": "ec-1"},
        ),
        "wrong key": keys.token(url, key=keys.other_ec),
        "unknown kid": keys.token(url, kid="nobody"),
        "RSA key id with EC alg": keys.token(url, kid="rsa-1"),
        "wrong aud": keys.token(aud(server, SERVICE)),
        "aud of another host": keys.token("https://other.example.org/cds-services"),
        "expired": keys.token(url, exp_in=-120),
        "iat in the future": keys.token(url, iat_offset=600, exp_in=900),
        "lifetime over an hour": keys.token(url, exp_in=7200),
        "untrusted issuer": keys.token(url, iss="https://evil.example.com"),
        "replayed jti": replayed,
        "no jti": jwt.encode(
            {k: v for k, v in claims.items() if k != "jti"}, keys.ec, algorithm="ES384", headers={"kid": "ec-1"}
        ),
        "no exp": jwt.encode(
            {k: v for k, v in claims.items() if k != "exp"}, keys.ec, algorithm="ES384", headers={"kid": "ec-1"}
        ),
        "not typ JWT": jwt.encode(claims | {"jti": "t"}, keys.ec, algorithm="ES384", headers={"kid": "ec-1", "typ": "at+jwt"}),
        "untrusted jku": jwt.encode(
            claims | {"jti": "j"}, keys.ec, algorithm="ES384", headers={"kid": "ec-1", "jku": "https://evil.example.com/jwks"}
        ),
        "basic scheme": "Basic dXNlcjpwYXNz",
    }


def test_every_token_failure_is_401_without_detail(server, keys):
    for name, token in bad_tokens(server, keys).items():
        if name == "basic scheme":
            r = server.client.get("/cds-services", headers={"Authorization": token})
        else:
            r = call(server, "/cds-services", token)
        assert r.status_code == 401, name
        assert r.json() == {"error": "unauthorized", "field": None}, name
        assert r.headers["www-authenticate"] == "Bearer", name


def test_every_route_with_patient_data_needs_a_token(server, keys):
    body = {
        "hook": "patient-view",
        "hookInstance": "d1577c69-dfbe-44ad-ba6d-3e05e953b2ea",
        "context": {"userId": "Practitioner/1", "patientId": "1"},
        "prefetch": {},
    }
    assert call(server, SERVICE, None, "POST", json=body).status_code == 401
    assert call(server, SERVICE + "/feedback", None, "POST", json={"feedback": []}).status_code == 401
    assert call(server, "/api/evaluate", None, "POST", content=b"{}").status_code == 401
    # with a token for that exact URL the same request gets through to validation (412: no prefetch)
    assert call(server, SERVICE, keys.token(aud(server, SERVICE)), "POST", json=body).status_code == 412
    assert server.client.get("/healthz").status_code == 200  # no patient data: no token


def test_refused_tokens_are_logged_by_reason_only(server, keys):
    token = keys.token(aud(server, "/cds-services"), key=keys.other_ec)
    assert call(server, "/cds-services", token).status_code == 401
    log = server.log()
    assert "401 on /cds-services" in log and token not in log
