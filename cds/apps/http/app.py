"""The FastAPI application: `create_app(settings)`; no globals, no clinical logic.

Routes (every one but /healthz and /reports/{token} behind the configured authentication):

    GET  /healthz                                      {status, engine_version, ruleset_hash, site, ...}
    POST /api/evaluate?format=&site=                   the CLI's document for a profile
    GET  /cds-services                                 CDS Hooks discovery
    POST /cds-services/mm-treatment-sequencing         patient-view -> {"cards": [...]}
    POST /cds-services/mm-treatment-sequencing/feedback
    GET  /reports/{token}?format=html|json|markdown    the full report of one evaluation, for `report_ttl`

Evaluation runs in the worker pool (`pool.py`, `work.py`); the store (`cds.store`) is written
from a thread, never on the event loop. Errors are JSON `{"error": <one line>, "field": <path or null>}`.
"""

from __future__ import annotations

import datetime as _dt
import functools
import json
import logging
import secrets
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from enum import StrEnum
from typing import TYPE_CHECKING, Annotated, Any, TypeVar

from fastapi import FastAPI, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from pydantic import BaseModel, ValidationError
from pydantic_core import to_json
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException as StarletteHTTPException

from cds.api import error_field, error_text

from . import hooks, responses
from .auth import Authenticator, AuthError, load_jwks
from .middleware import ServiceMiddleware
from .pool import WorkerPool, WorkerUnavailable, settle_heap
from .settings import Settings
from .work import report_task, worker_main

if TYPE_CHECKING:
    from cds.store import Store, StoredEvaluation

log = logging.getLogger("cds.serve")

_M = TypeVar("_M", bound=BaseModel)

MEDIA = {"json": "application/json", "html": "text/html; charset=utf-8", "markdown": "text/markdown; charset=utf-8"}


class Format(StrEnum):
    json = "json"
    html = "html"
    markdown = "markdown"


class ApiError(Exception):
    def __init__(
        self,
        status: int,
        message: str,
        field: str | None = None,
        headers: dict[str, str] | None = None,
        problems: list[dict[str, Any]] | None = None,
    ):
        super().__init__(message)
        self.status, self.message, self.field, self.headers, self.problems = status, message, field, headers, problems


def _error(
    status: int,
    message: str,
    field: str | None = None,
    headers: dict[str, str] | None = None,
    problems: list[dict[str, Any]] | None = None,
) -> JSONResponse:
    """`{"error", "field"}`; an invalid profile adds `problems`: every one, as the CLI lists them."""
    body: dict[str, Any] = {"error": message, "field": field}
    if problems is not None:
        body["problems"] = problems
    return JSONResponse(body, status_code=status, headers=headers)


def _json(body: dict[str, Any]) -> Response:
    """A JSON response of `body` (its shape is in `responses`): the bytes FastAPI sent for the dict, serialized
    at once (pydantic-core's JSON, compact, UTF-8) instead of validated as a dict and then serialized."""
    return Response(to_json(body), media_type="application/json")


class Service:
    """Everything one running app holds: settings, worker pool, store, authenticator."""

    def __init__(self, settings: Settings):
        self.settings = settings
        self.pool: WorkerPool | None = None
        self._store: Store | None = None
        self.info: dict[str, Any] = {}
        self.bound_port: int | None = None
        self.auth: Authenticator | None = None
        self.started = False
        self.settled = False
        if settings.auth_configured:
            keys = load_jwks(settings.jwks) if settings.jwks else {}
            self.auth = Authenticator(
                keys=keys,
                trusted_issuers=settings.trusted_issuers,
                trusted_jkus=settings.trusted_jkus,
                skew_s=settings.clock_skew_s,
            )

    async def start(self) -> None:
        from cds.store import open_store

        # SQLite's checkpoints (an fsync each) in the store's own thread, not in the commit of a request
        self._store = await run_in_threadpool(functools.partial(open_store, self.settings.db, checkpoint_in_background=True))
        self.pool = WorkerPool(
            self.settings.workers,
            worker_main,
            (self.settings.rules, dict(self.settings.sites)),
            task_timeout=self.settings.task_timeout_s,
            queue_timeout=self.settings.queue_timeout_s,
        )
        self.info = await self.pool.start()
        self.started = True
        settle_heap()  # the server's start-up heap, out of every later full collection (see settle_heap)
        log.info(
            "%d worker(s) ready: %s, rules %s", self.settings.workers, self.info["engine_version"], self.info["ruleset_hash"][:12]
        )

    async def stop(self) -> None:
        if self.pool is not None:
            await self.pool.stop()
        if self._store is not None:
            self._store.close()

    @property
    def store(self) -> Store:
        """The case store (opened by `start`)."""
        if self._store is None:
            raise RuntimeError("the service is not started")
        return self._store

    @property
    def base_url(self) -> str:
        return self.settings.base_url(self.bound_port)

    async def caller(self, request: Request) -> dict[str, Any]:
        """Who is calling: the token's claims, or the local user on loopback without authentication."""
        if self.auth is None:
            return {"user": "local", "client": None, "claims": None}
        header = request.headers.get("authorization")
        audience = self.base_url + request.url.path
        try:
            if header and self.auth.needs_fetch(header.partition(" ")[2].strip()):
                claims = await run_in_threadpool(self.auth.verify, header, audience)
            else:
                claims = self.auth.verify(header, audience)
        except AuthError as exc:
            log.warning("401 on %s: %s", request.url.path, exc)
            raise ApiError(401, "unauthorized", None, {"WWW-Authenticate": "Bearer"}) from None
        return {"user": str(claims["iss"]), "client": str(claims["iss"]), "claims": claims}

    async def run(self, task: dict[str, Any]) -> tuple[str, Any]:
        assert self.pool is not None
        try:
            kind, value = await self.pool.run(task)
        except WorkerUnavailable as exc:
            raise ApiError(503, f"service unavailable: {exc}; retry", None, {"Retry-After": "1"}) from None
        if not self.settled:  # the first request's lazy imports are start-up too
            self.settled = True
            settle_heap()
        if kind == "invalid":
            raise ApiError(422, value["error"], value["field"], problems=value.get("problems"))
        if kind == "error":
            log.error("worker: %s", value)
            raise ApiError(500, "internal error", None)
        return kind, value

    def site_key(self, site: str | None) -> str | None:
        if site is None or site == "":
            return None
        if site not in self.settings.sites:
            known = ", ".join(sorted(self.settings.sites)) or "none"
            raise ApiError(422, f"site: unknown site {site!r} (configured: {known})", "site")
        return site

    async def store_evaluation(self, record: dict[str, Any], **fields: Any) -> StoredEvaluation:
        from cds.store import NewEvaluation

        return await run_in_threadpool(self.store.add_evaluation, NewEvaluation(**record, **fields))

    async def evaluate_and_store(
        self,
        text: str,
        *,
        user: str,
        client: str | None = None,
        channel: str = "web",
        case_id: str | None = None,
        site: str | None = None,
        format: str = "json",
        board_date: _dt.date | None = None,
        label: str | None = None,
    ) -> tuple[StoredEvaluation, str]:
        """Evaluate a profile or FHIR Bundle (JSON text, as entered) in a worker and store it as a new version.

        -> (StoredEvaluation, document in `format`). Bad input: ApiError 422 with the CLI's message
        and the field, nothing stored. A new case unless `case_id` names one; `board_date` and
        `label` are those of a new case (set_case changes an existing one's).
        """
        _, result = await self.run({"kind": "evaluate", "text": text, "format": format, "site": self.site_key(site)})
        stored = await self.store_evaluation(
            result["record"],
            user=user,
            client=client,
            channel=channel,
            input_json=text,
            case_id=case_id,
            board_date=board_date,
            label=label,
        )
        return stored, result["document"]


def _text(body: bytes, what: str = "") -> str:
    """The body as text; `what` prefixes the message as the CLI does ("invalid patient profile: ")."""
    try:
        text = body.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise ApiError(422, f"{what}(body): not UTF-8 text (byte {exc.start})", "(body)") from None
    if not text.strip():
        raise ApiError(422, f"{what}(body): the request body is empty", "(body)")
    return text


def _json_body(body: bytes) -> Any:
    return _json_text(_text(body))


def _json_text(text: str) -> Any:
    try:
        return json.loads(text)
    except RecursionError:
        raise ApiError(422, "(body): not valid JSON: nested too deeply", "(body)") from None
    except ValueError as exc:
        from cds.api import json_problem

        raise ApiError(422, f"(body): not valid JSON: {json_problem(exc)}", "(body)") from None


def _validated(model: type[_M], data: Any) -> _M:
    if not isinstance(data, dict):
        raise ApiError(422, f"(body): must be a JSON object, got {type(data).__name__}", "(body)")
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        field, message = hooks.first_problem(exc)
        raise ApiError(422, message, field) from None


def request_problem(exc: RequestValidationError) -> tuple[str, str]:
    """(field, one-line message) for FastAPI's own validation of a query or path parameter (the first problem)."""
    err = exc.errors()[0]
    field = error_field(p for p in err["loc"] if p not in ("query", "path", "body")) or "(request)"
    return field, f"{field}: {error_text(err['msg'])}"


def create_app(settings: Settings) -> FastAPI:
    service = Service(settings)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        if not service.started:  # `cds serve` starts it before uvicorn, to fail in one line
            await service.start()
        try:
            yield
        finally:
            await service.stop()

    from cds import __version__

    app = FastAPI(
        title="cds: treatment-sequencing decision support for relapsed/refractory multiple myeloma",
        version=__version__,
        description="Decision support, not decision making. CDS Hooks 2.0.1 service and evaluation API.",
        lifespan=lifespan,
        docs_url=None,
        redoc_url=None,
        # described for the OpenAPI document (schemas/openapi.json) only: the routes send the dicts they build
        responses={"4XX": {"model": responses.ErrorBody}, "5XX": {"model": responses.ErrorBody}},
    )
    app.state.service = service

    @app.exception_handler(ApiError)
    async def on_api_error(request: Request, exc: ApiError) -> JSONResponse:
        return _error(exc.status, exc.message, exc.field, exc.headers, exc.problems)

    @app.exception_handler(RequestValidationError)
    async def on_validation(request: Request, exc: RequestValidationError) -> JSONResponse:
        field, message = request_problem(exc)
        return _error(422, message, field)

    @app.exception_handler(StarletteHTTPException)
    async def on_http(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        return _error(
            exc.status_code,
            str(exc.detail).lower() if exc.status_code == 404 else str(exc.detail),
            None,
            getattr(exc, "headers", None),
        )

    @app.exception_handler(Exception)
    async def on_internal(request: Request, exc: Exception) -> JSONResponse:
        log.error("internal error on %s: %s", request.url.path, type(exc).__name__)
        return _error(500, "internal error")

    @app.get(
        "/healthz",
        summary="Service health, engine version and rule-set hash",
        response_model=None,
        responses={200: {"model": responses.Health}},
    )
    async def healthz() -> Response:
        info = service.info
        return _json(
            {
                "status": "ok",
                "engine_version": info.get("engine_version"),
                "ruleset_hash": info.get("ruleset_hash"),
                "site": info.get("default_site"),
                "sites": {k: v for k, v in (info.get("sites") or {}).items()},
                "workers": service.pool.stats() if service.pool else None,
            }
        )

    @app.post(
        "/api/evaluate",
        summary="Evaluate one patient profile: the document `cds evaluate` produces",
        openapi_extra={
            "requestBody": {
                "required": True,
                "content": {
                    "application/json": {
                        "schema": {"type": "object", "description": "A patient profile (see the README's profile table)"}
                    }
                },
            }
        },
        responses={
            200: {"content": {m: {} for m in MEDIA.values()}},
            422: {"description": "Bad input: {error, field}"},
            413: {"description": "Body over the size cap"},
            401: {"description": "Missing or invalid token"},
        },
    )
    async def api_evaluate(
        request: Request, format: Annotated[Format, Query()] = Format.json, site: Annotated[str | None, Query()] = None
    ) -> Response:
        caller = await service.caller(request)
        service.site_key(site)  # an unknown site before reading the body
        text = _text(await request.body(), "invalid patient profile: ")
        stored, document = await service.evaluate_and_store(
            text, user=caller["user"], client=caller["client"], channel="api", site=site, format=format.value
        )
        report_url = f"{service.base_url}/reports/{stored.report_token}"
        return Response(
            document,
            media_type=MEDIA[format.value],
            headers={"X-CDS-Evaluation-Id": stored.id, "Link": f'<{report_url}>; rel="alternate"'},
        )

    @app.get("/cds-services", summary="CDS Hooks discovery", response_model=None, responses={200: {"model": responses.Discovery}})
    async def discovery(request: Request) -> Response:
        await service.caller(request)
        return _json(hooks.discovery())

    @app.post(
        f"/cds-services/{hooks.SERVICE_ID}",
        summary="CDS Hooks patient-view: one card with the ranked options, or none without a myeloma diagnosis",
        response_model=None,
        responses={200: {"model": responses.Cards}},
        openapi_extra={
            "requestBody": {"required": True, "content": {"application/json": {"schema": hooks.HookRequest.model_json_schema()}}}
        },
    )
    async def patient_view(request: Request) -> Response:
        caller = await service.caller(request)
        text = _text(await request.body())
        data = _json_text(text)
        req = _validated(hooks.HookRequest, data)
        if req.fhirServer:
            log.info("fhirServer given; fetching from it is not supported yet: only the prefetch is read")
        try:
            bundle = hooks.bundle_from_prefetch(req.prefetch)
        except hooks.PrefetchMissing as exc:
            raise ApiError(412, f"{exc}; this service needs every prefetch key of its discovery entry", "prefetch") from None
        card_uuid, token = str(uuid.uuid4()), secrets.token_urlsafe(32)
        report_url = f"{service.base_url}/reports/{token}"
        kind, result = await service.run({"kind": "hook", "bundle": bundle, "card_uuid": card_uuid, "report_url": report_url})
        if kind == "no_myeloma":
            return _json({"cards": []})
        # the request as received, but never an access token: the body's text itself when it has none
        # (re-serializing the prefetch was about a tenth of this process's CPU per call)
        if "fhirAuthorization" in data:
            text = json.dumps({k: v for k, v in data.items() if k != "fhirAuthorization"}, ensure_ascii=False)
        await service.store_evaluation(
            result["record"],
            user=req.context.userId,
            client=caller["client"],
            channel="cds-hooks",
            input_json=text,
            hook_instance=str(req.hookInstance),
            card_uuid=card_uuid,
            report_token=token,
            external_key=f"cds-hooks {caller['client'] or 'local'} {req.context.patientId}",
        )
        return _json({"cards": [result["card"]]})

    @app.post(
        f"/cds-services/{hooks.SERVICE_ID}/feedback",
        summary="CDS Hooks feedback on a card (stored with its evaluation, append-only)",
        response_model=None,
        responses={200: {"model": responses.FeedbackStored}},
        openapi_extra={
            "requestBody": {
                "required": True,
                "content": {"application/json": {"schema": hooks.FeedbackRequest.model_json_schema()}},
            }
        },
    )
    async def feedback(request: Request) -> Response:
        caller = await service.caller(request)
        req = _validated(hooks.FeedbackRequest, _json_body(await request.body()))
        items = [item.model_dump(mode="json", exclude_none=True) for item in req.feedback]
        stored = await run_in_threadpool(service.store.add_feedback, items, service_id=hooks.SERVICE_ID, client=caller["client"])
        return _json({"stored": stored})

    @app.get(
        "/reports/{token}",
        summary="The full report of one evaluation (kept for the configured time, then 404)",
        responses={200: {"content": {m: {} for m in MEDIA.values()}}, 404: {"description": "Unknown or expired"}},
    )
    async def report(token: str, format: Annotated[Format, Query()] = Format.html) -> Response:
        stored = await run_in_threadpool(service.store.evaluation_by_report_token, token, settings.report_ttl)
        if stored is None:
            raise ApiError(404, "no such report (unknown, or older than the time reports are kept)")
        kind, document = await service.run(report_task(stored, format.value))
        if kind == "gone":
            raise ApiError(410, document)
        return Response(document, media_type=MEDIA[format.value])

    from cds.apps.web import add_routes

    add_routes(app, service)  # the case pages (issue 16)

    if settings.cors_origins:
        from starlette.middleware.cors import CORSMiddleware

        app.add_middleware(
            CORSMiddleware,
            allow_origins=list(settings.cors_origins),
            allow_methods=["GET", "POST"],
            allow_headers=["Authorization", "Content-Type"],
            max_age=600,
        )
    app.add_middleware(ServiceMiddleware, max_body_bytes=settings.max_body_bytes)  # outermost: every response
    return app
