"""`cds serve`: check the bind/auth rule, bind the socket, start the workers, run uvicorn until SIGTERM.

The checks come first and fail in one line (exit 2): a non-loopback address without
authentication, `--no-auth` off loopback, no authentication and no `--no-auth`, a port that
cannot be bound, a rule folder or site file the workers cannot load. When the service is
ready it prints ``cds serve: ready on <URL> (...)`` on stderr. SIGTERM (or Ctrl-C) stops it
gracefully: no new connections, requests in progress finish, then the workers stop.
"""

from __future__ import annotations

import asyncio
import logging
import socket
import sys

from cds.errors import InputError

from .settings import Settings, is_loopback

log = logging.getLogger("cds.serve")


def check(settings: Settings) -> None:
    """The bind/auth rule (InputError, exit 2)."""
    loopback = is_loopback(settings.host)
    if settings.no_auth and settings.auth_configured:
        raise InputError("--no-auth: contradicts --jwks/--trusted-jku; give one or the other")
    if settings.no_auth and not loopback:
        raise InputError(f"--no-auth: only on a loopback address (127.0.0.1, ::1), not {settings.host}")
    if not loopback and not settings.auth_configured:
        raise InputError(
            f"refusing to bind {settings.host}: not a loopback address and no authentication configured (--jwks FILE or --trusted-jku URL)"
        )
    if not settings.no_auth and not settings.auth_configured:
        raise InputError(
            "no authentication configured: give --jwks FILE (or --trusted-jku URL) for an EHR, or --no-auth on loopback for local use"
        )
    if settings.workers < 1:
        raise InputError("--workers: at least 1")
    for key, path in settings.sites.items():
        if not key:
            raise InputError(f"--site {path}: empty site name")


def bind(host: str, port: int) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host.strip("[]"), port))
    except OSError as exc:
        sock.close()
        raise InputError(f"cannot listen on {host}:{port} ({exc.strerror or exc})") from None
    sock.set_inheritable(False)
    sock.listen(2048)  # connections queue from now on: a client told "ready" is never refused
    return sock


def _logging() -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    for name in ("cds.serve", "uvicorn"):
        logger = logging.getLogger(name)
        logger.handlers[:] = [handler]
        logger.setLevel(logging.INFO)
        logger.propagate = False


def serve(settings: Settings) -> None:
    """Run the service until stopped. InputError for every problem found before it is ready."""
    import uvicorn

    from cds.errors import StoreError

    from .app import create_app
    from .auth import AuthConfigError
    from .pool import WorkerStartError

    check(settings)
    if settings.no_auth:
        print(
            f"warning: --no-auth: no authentication; anyone who can reach {settings.host} on this machine can read patient data",
            file=sys.stderr,
        )
    sock = bind(settings.host, settings.port)
    _logging()
    try:
        app = create_app(settings)
    except AuthConfigError as exc:
        sock.close()
        raise InputError(str(exc)) from None
    service = app.state.service
    service.bound_port = sock.getsockname()[1]
    config = uvicorn.Config(
        app,
        log_config=None,
        access_log=False,
        lifespan="on",
        server_header=False,
        timeout_graceful_shutdown=10,
        proxy_headers=False,
        date_header=False,
        http="httptools",  # the C parser: h11 (pure Python) cost ~2 ms of the server's CPU per request
    )
    server = uvicorn.Server(config)

    async def main() -> None:
        try:
            await service.start()
        except (WorkerStartError, StoreError) as exc:
            await service.stop()
            raise InputError(str(exc)) from None
        log.info("ready on %s (%d workers, store %s)", service.base_url, settings.workers, service.store.url)
        print(f"cds serve: ready on {service.base_url}", file=sys.stderr, flush=True)
        await server.serve(sockets=[sock])  # the lifespan's shutdown stops the workers

    import uvloop

    # uvloop: a libuv event loop, cheaper per request than asyncio's (the pool's add_reader works on both)
    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        runner.run(main())
