"""Settings of the HTTP service: from `cds serve`'s flags (and CDS_* environment variables), no globals."""

from __future__ import annotations

import datetime as _dt
import ipaddress
import os
from dataclasses import dataclass, field
from pathlib import Path


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def default_workers() -> int:
    try:
        return len(os.sched_getaffinity(0)) or 1
    except (AttributeError, OSError):
        return os.cpu_count() or 1


@dataclass(frozen=True)
class Settings:
    host: str = "127.0.0.1"
    port: int = 8040
    workers: int = field(default_factory=default_workers)
    rules: str | None = None  # rule folder (default: the packaged rules)
    sites: dict[str, str] = field(default_factory=dict)  # ?site=KEY -> site file
    db: str | None = None  # --db: path or URL; None: the user's data directory
    public_url: str | None = None  # the URL the EHR calls (aud, report links); default http://host:port
    jwks: Path | None = None
    trusted_issuers: tuple[str, ...] = ()
    trusted_jkus: tuple[str, ...] = ()
    no_auth: bool = False
    cors_origins: tuple[str, ...] = ()
    max_body_bytes: int = 5 * 1024 * 1024
    report_ttl: _dt.timedelta = _dt.timedelta(hours=24)
    task_timeout_s: float = 60.0
    queue_timeout_s: float = 30.0
    clock_skew_s: int = 60

    @property
    def auth_configured(self) -> bool:
        return self.jwks is not None or bool(self.trusted_jkus)

    def base_url(self, bound_port: int | None = None) -> str:
        if self.public_url:
            return self.public_url.rstrip("/")
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{bound_port or self.port}"
