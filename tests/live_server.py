"""A real `cds serve` for the tests: a subprocess on an ephemeral 127.0.0.1 port, stopped by PID.

Every wait is on a condition with a deadline that only bounds a hang (these machines have
2 cores shared by several agents): the ready line, a health field, a process exit.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path
from typing import Any

import httpx
import jwt
from cryptography.hazmat.primitives.asymmetric import ec, rsa

import schemas

ROOT = Path(__file__).resolve().parents[1]
CDS = str(Path(sys.executable).with_name("cds"))
START_DEADLINE_S = 180.0
REQUEST_TIMEOUT_S = 60.0


def wait_for(condition, deadline_s: float = 60.0, what: str = "condition", interval: float = 0.02):
    end = time.monotonic() + deadline_s
    while time.monotonic() < end:
        value = condition()
        if value:
            return value
        time.sleep(interval)
    raise AssertionError(f"timed out after {deadline_s:.0f} s waiting for {what}")


def children(pid: int) -> list[int]:
    """Direct child processes of `pid` (from /proc)."""
    out = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            stat = Path(f"/proc/{entry}/stat").read_text()
        except OSError:
            continue
        ppid = int(stat.rsplit(")", 1)[1].split()[1])
        if ppid == pid:
            out.append(int(entry))
    return out


def alive(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


def check_json(response: httpx.Response) -> None:
    """Every JSON response a test gets from the service is validated against its committed schema (the report's,
    or the one schemas/openapi.json gives for its path, method and status); one that none describes fails."""
    if response.headers.get("content-type", "").split(";")[0].strip() != "application/json":
        return
    response.read()
    request = response.request
    if request.url.path == "/openapi.json":  # the document itself (compared with the committed one by its test)
        return
    described = schemas.validate_response(request.method, request.url.path, response.status_code, response.json())
    assert described, f"no committed schema describes {request.method} {request.url.path} -> {response.status_code}"


def client(base_url: str, **options: Any) -> httpx.Client:
    """An HTTP client whose JSON responses are checked against their committed schemas (`check_json`)."""
    return httpx.Client(base_url=base_url, event_hooks={"response": [check_json]}, **options)


class Server:
    """`cds serve --port 0 ...`; `.url` once ready; `.stop()` sends SIGTERM and waits for the exit."""

    def __init__(self, tmp: Path, *args: str, env: dict[str, str] | None = None):
        self.tmp = tmp
        self.db = tmp / "cases.db"
        cmd = [CDS, "serve", "--port", "0", "--db", str(self.db), *args]
        self.proc = subprocess.Popen(
            cmd,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
            cwd=tmp,
            env={**os.environ, **(env or {})},
            start_new_session=True,
        )
        self.lines: list[str] = []
        self.url: str | None = None
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()
        try:
            wait_for(lambda: self.url or self.proc.poll() is not None, START_DEADLINE_S, "the server's ready line")
        except AssertionError:
            self.kill()
            raise
        if self.url is None:
            self._reader.join(10)
            raise AssertionError(f"cds serve exited with {self.proc.returncode}:\n" + "".join(self.lines))
        self.client = client(self.url, timeout=REQUEST_TIMEOUT_S)

    def _read(self) -> None:
        assert self.proc.stderr is not None
        for line in self.proc.stderr:
            self.lines.append(line)
            if line.startswith("cds serve: ready on "):
                self.url = line.split("ready on ", 1)[1].strip()

    @property
    def pid(self) -> int:
        return self.proc.pid

    def workers(self) -> list[int]:
        """The worker processes (spawned children running the worker entry point)."""
        out = []
        for child in children(self.pid):
            try:
                cmdline = Path(f"/proc/{child}/cmdline").read_bytes()
            except OSError:
                continue
            if b"multiprocessing.spawn" in cmdline or b"spawn_main" in cmdline:
                out.append(child)
        return out

    def health(self) -> dict:
        return self.client.get("/healthz").json()

    def stop(self, deadline_s: float = 60.0) -> int:
        """SIGTERM by PID, wait for the exit; every worker must be gone too."""
        if self.proc.poll() is None:
            pids = self.workers()
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(deadline_s)
            except subprocess.TimeoutExpired:
                self.kill()
                raise AssertionError("cds serve did not stop within the deadline after SIGTERM") from None
            wait_for(lambda: not any(alive(p) for p in pids), 30, "the workers to exit")
        self._reader.join(10)
        if hasattr(self, "client"):
            self.client.close()
        return self.proc.returncode

    def kill(self) -> None:
        if self.proc.poll() is None:
            pids = self.workers()
            self.proc.kill()
            self.proc.wait(30)
            for p in pids:
                if alive(p):
                    os.kill(p, signal.SIGKILL)

    def log(self) -> str:
        return "".join(self.lines)


# ---------------------------------------------------------------------- keys and tokens


class Keys:
    """An EHR's signing keys (made per test session, never committed) and the JWK Set of their public halves."""

    def __init__(self, tmp: Path):
        self.ec = ec.generate_private_key(ec.SECP384R1())
        self.rsa = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        self.other_ec = ec.generate_private_key(ec.SECP384R1())  # an attacker's key
        self.jwks_path = tmp / "jwks.json"
        keys = [self._jwk(self.ec.public_key(), "ec-1", "ES384"), self._jwk(self.rsa.public_key(), "rsa-1", "RS384")]
        self.jwks_path.write_text(json.dumps({"keys": keys}))

    @staticmethod
    def _jwk(public_key, kid: str, alg: str) -> dict:
        algorithm = jwt.algorithms.ECAlgorithm if alg.startswith("ES") else jwt.algorithms.RSAAlgorithm
        jwk = json.loads(algorithm.to_jwk(public_key))
        return {**jwk, "kid": kid, "alg": alg, "use": "sig"}

    def token(
        self,
        aud: str,
        *,
        iss: str = "https://ehr.example.org",
        alg: str = "ES384",
        kid: str | None = None,
        key=None,
        exp_in: float = 300,
        iat_offset: float = 0,
        jti: str | None = None,
        **extra,
    ) -> str:
        now = int(time.time())
        claims = {
            "iss": iss,
            "aud": aud,
            "exp": now + int(exp_in),
            "iat": now + int(iat_offset),
            "jti": jti or str(uuid.uuid4()),
            **extra,
        }
        if key is None:
            key = self.ec if alg == "ES384" else self.rsa
        kid = kid or ("ec-1" if alg == "ES384" else "rsa-1")
        return jwt.encode(claims, key, algorithm=alg, headers={"kid": kid, "typ": "JWT"})
