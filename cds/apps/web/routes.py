"""The case pages on `cds serve`: new case, upload, summary, full report, edit, the case list and the board.

    GET  /                          a new case: the form (every profile field)
    POST /                          add/remove a line or an agent row, expand a regimen label, or evaluate
    POST /upload                    a profile or FHIR Bundle file -> the form prefilled (imported values marked)
    GET  /cases?date=YYYY-MM-DD     the case list of a tumor-board date (&recheck=1: re-evaluate under the running rules)
    GET  /cases/board?date=...      the printable board (`cds board`'s table) of those cases
    GET  /cases/{id}                the one-page summary of a case's latest evaluation (?version=N: an older one)
    GET  /cases/{id}/edit           the form filled with the case as entered; submitting adds a version
    GET  /cases/{id}/report?format=html|json|markdown|pdf    the full report of that evaluation
    GET  /static/cds.css            the pages' only style sheet

Server-rendered HTML that works without JavaScript (there is none: the CSP forbids scripts).
Evaluation runs in the service's worker processes; the store is written from a thread.
Authentication and the bind rule are the service's (`Service.caller`).
"""

from __future__ import annotations

import datetime as _dt
import json
import logging
from pathlib import Path
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from starlette.concurrency import run_in_threadpool

from cds.apps.http.work import report_task

from . import form as f
from .security import CSRF_FIELD, DOCUMENT_CSP, csrf_ok, csrf_token, finish

log = logging.getLogger("cds.serve.web")

HERE = Path(__file__).resolve().parent
UPLOAD_LIMIT = 1024 * 1024  # the CLI's limit for a profile or Bundle file
REPORT_MEDIA = {
    "html": "text/html; charset=utf-8",
    "json": "application/json",
    "markdown": "text/markdown; charset=utf-8",
    "pdf": "application/pdf",
}
_ENV: Any = None


def environment() -> Any:
    global _ENV
    if _ENV is None:
        from jinja2 import Environment, FileSystemLoader, StrictUndefined

        _ENV = Environment(
            loader=FileSystemLoader(str(HERE / "templates")),
            autoescape=True,
            undefined=StrictUndefined,
            trim_blocks=True,
            lstrip_blocks=True,
        )
        _ENV.globals.update(input_id=f.input_id, line_name=f.line_name, agent_name=f.agent_name, TOP=f.TOP, LINE=f.LINE)
    return _ENV


def add_routes(app: FastAPI, service: Any) -> None:
    """Register the case pages on the service's app (`create_app`)."""
    pages = Pages(service)
    app.add_api_route("/", pages.new_case, methods=["GET"], include_in_schema=False)
    app.add_api_route("/", pages.submit, methods=["POST"], include_in_schema=False)
    app.add_api_route("/upload", pages.upload, methods=["POST"], include_in_schema=False)
    app.add_api_route("/cases", pages.cases, methods=["GET"], include_in_schema=False)
    app.add_api_route("/cases/board", pages.board, methods=["GET"], include_in_schema=False)
    app.add_api_route("/cases/{case_id}", pages.case, methods=["GET"], include_in_schema=False)
    app.add_api_route("/cases/{case_id}/edit", pages.edit, methods=["GET"], include_in_schema=False)
    app.add_api_route("/cases/{case_id}/report", pages.report, methods=["GET"], include_in_schema=False)
    app.add_api_route("/static/cds.css", pages.css, methods=["GET"], include_in_schema=False)
    app.add_api_route("/favicon.ico", pages.favicon, methods=["GET"], include_in_schema=False)


class Pages:
    def __init__(self, service: Any):
        self.service = service
        self._vocabulary: dict[str, Any] | None = None

    # ------------------------------------------------------------------ helpers

    @property
    def secure(self) -> bool:
        return str(self.service.base_url).startswith("https://")

    async def vocabulary(self) -> dict[str, Any]:
        if self._vocabulary is None:
            _, self._vocabulary = await self.service.run({"kind": "web-vocabulary"})
        return self._vocabulary

    def page(self, request: Request, template: str, status: int = 200, **context: Any) -> Response:
        token, new = csrf_token(request)
        html = environment().get_template(template).render(csrf=token, csrf_field=CSRF_FIELD, info=self.service.info, **context)
        return finish(HTMLResponse(html, status_code=status), token, new, self.secure)

    def message(self, request: Request, status: int, title: str, text: str) -> Response:
        return self.page(request, "message.html", status, title=title, text=text)

    async def form_page(self, request: Request, form: f.Form, status: int = 200, **extra: Any) -> Response:
        vocab = await self.vocabulary()
        return self.page(
            request,
            "form.html",
            status,
            form=form,
            groups=f.GROUPS,
            vocab=vocab,
            sites=sorted(self.service.settings.sites),
            bool_choices=f.BOOL_CHOICES,
            refractory_choices=f.REFRACTORY_CHOICES,
            **extra,
        )

    async def _posted(self, request: Request) -> tuple[Any, bool]:
        data = await request.form(max_files=1, max_fields=20_000, max_part_size=UPLOAD_LIMIT + 1)
        token = data.get(CSRF_FIELD)
        return data, csrf_ok(request, token if isinstance(token, str) else None)

    # ------------------------------------------------------------------ new case, submit, upload

    async def new_case(self, request: Request) -> Response:
        await self.service.caller(request)
        return await self.form_page(request, f.Form.empty())

    async def submit(self, request: Request) -> Response:
        caller = await self.service.caller(request)
        data, ok = await self._posted(request)
        if not ok:
            return self.message(
                request,
                403,
                "Form expired",
                "This form's security token does not match: reload the page and enter the case again.",
            )
        items = [(k, v) for k, v in data.multi_items() if isinstance(v, str)]
        form, action = f.from_submission(items)
        if action.startswith("expand:"):
            await self._expand(form, action)
            return await self.form_page(request, form)
        if f.apply_action(form, action):
            return await self.form_page(request, form)
        return await self._evaluate(request, form, caller)

    async def _expand(self, form: f.Form, action: str) -> None:
        """Fill a line's agent rows with the agents its regimen label stands for (the label is kept)."""
        try:
            i = int(action.split(":", 1)[1])
        except ValueError:
            return
        if not 0 <= i < len(form.lines):
            return
        line = form.lines[i]
        label = line.values.get("regimen", "").strip()
        if not label:
            form.errors.setdefault(f.input_id(f.line_name(i, "regimen")), []).append("give a regimen label to expand")
            return
        _, result = await self.service.run({"kind": "web-evaluate", "profile": _probe_line(label)})
        lines = [x for x in result.get("expanded", []) if x["line"] == 0]
        if not lines:
            form.errors.setdefault(f.input_id(f.line_name(i, "regimen")), []).append(
                f"{label!r} is not a known regimen label: list its agents"
            )
            return
        kept = [a for a in line.agents if a.name.strip()]
        names = {a.name.strip().lower() for a in kept}
        line.agents = kept + [f.Agent(name=a) for a in lines[0]["agents"] if a.lower() not in names]
        line.expanded = list(lines[0]["agents"])

    async def _evaluate(self, request: Request, form: f.Form, caller: dict[str, Any]) -> Response:
        converted = f.to_profile(form)
        board_date = _board_date(form)
        site = form.site if form.site in self.service.settings.sites else None
        _, result = await self.service.run({"kind": "web-evaluate", "profile": converted.profile, "site": site})
        problems = [tuple(p) for p in result["problems"]]
        if isinstance(board_date, str):
            converted.problems.append(("board_date", board_date))
        existing = None
        if form.case_id:
            existing = await run_in_threadpool(self.service.store.case, form.case_id)
            if existing is None:
                return self.message(request, 404, "No such case", "The case this form edits does not exist.")
        if problems or converted.problems:
            f.place_problems(form, converted, problems)
            return await self.form_page(request, form, 422)
        when = board_date if isinstance(board_date, _dt.date) else None
        if existing is not None and existing.board_date != when:
            await run_in_threadpool(lambda: self.service.store.set_case(existing.case_id, board_date=when))
        stored = await self.service.store_evaluation(
            result["record"],
            user=caller["user"],
            client=caller["client"],
            channel="web",
            input_json=json.dumps(converted.profile, ensure_ascii=False, sort_keys=True),
            case_id=existing.case_id if existing is not None else None,
            board_date=when,
        )
        case_id = stored.case_id
        log.info("web: case %s version %d stored", case_id, stored.version)
        return finish(RedirectResponse(f"/cases/{case_id}?version={stored.version}", status_code=303), None, False, self.secure)

    async def upload(self, request: Request) -> Response:
        await self.service.caller(request)
        data, ok = await self._posted(request)
        if not ok:
            return self.message(
                request, 403, "Form expired", "This form's security token does not match: reload the page and upload again."
            )
        upload = data.get("file")
        raw = await upload.read(UPLOAD_LIMIT + 1) if upload is not None and hasattr(upload, "read") else b""
        name = getattr(upload, "filename", None) or "the file"
        if not raw:
            return await self.form_page(
                request, f.Form.empty(), 422, upload_error="Choose a profile (JSON) or FHIR Bundle file to upload."
            )
        if len(raw) > UPLOAD_LIMIT:
            return await self.form_page(
                request, f.Form.empty(), 413, upload_error=f"{name}: larger than 1 MiB, the limit for a patient profile"
            )
        try:
            text = raw.decode("utf-8-sig")
        except UnicodeDecodeError as exc:
            return await self.form_page(request, f.Form.empty(), 422, upload_error=f"{name}: not UTF-8 text (byte {exc.start})")
        _, result = await self.service.run({"kind": "web-import", "text": text})
        if "error" in result:
            return await self.form_page(request, f.Form.empty(), 422, upload_error=f"{name}: {result['error']}")
        form = f.from_profile(result["profile"], imported=True)
        what = "FHIR Bundle" if result["kind"] == "fhir-bundle" else "profile"
        form.import_note = f"Prefilled from the {what} {name}: imported values are marked \u201cimported\u201d. Check them, complete the rest, then evaluate."
        converted = f.to_profile(form)
        f.place_problems(form, converted, [tuple(p) for p in result["problems"]])
        return await self.form_page(request, form, import_notes=result["notes"])

    # ------------------------------------------------------------------ a case

    async def _latest(self, case_id: str, version: int | None) -> Any:
        history = await run_in_threadpool(self.service.store.case_history, case_id)
        if not history:
            return None, []
        if version is None:
            return history[-1], history
        return next((h for h in history if h.version == version), None), history

    async def case(self, request: Request, case_id: str, version: int | None = None) -> Response:
        await self.service.caller(request)
        stored, history = await self._latest(case_id, version)
        if stored is None:
            return self.message(request, 404, "No such case", "There is no case (or no such version of it) with this address.")
        row = stored.row
        _, result = await self.service.run(
            {
                "kind": "web-summary",
                "stored": {
                    "profile_json": row["profile_json"],
                    "evaluated_at": row["evaluated_at"],
                    "site_hash": row["site_hash"],
                },
            }
        )
        case_row = await run_in_threadpool(self.service.store.case, case_id)
        return self.page(
            request,
            "summary.html",
            s=result["summary"],
            stored=row,
            case=case_row,
            history=[{"version": h.version, "created_at": h.created_at, "top_option": h.row["top_option"]} for h in history],
            expanded=_expanded(row),
            rules_changed=result["ruleset_hash"] != row["ruleset_hash"],
            current_hash=result["ruleset_hash"],
        )

    async def edit(self, request: Request, case_id: str) -> Response:
        await self.service.caller(request)
        stored, _ = await self._latest(case_id, None)
        if stored is None:
            return self.message(request, 404, "No such case", "There is no case with this address.")
        form = f.from_profile(_as_entered(stored.row))
        case_row = await run_in_threadpool(self.service.store.case, case_id)
        form.case_id = case_id
        form.board_date = case_row.board_date.isoformat() if case_row and case_row.board_date else ""
        form.site = next((k for k in self.service.settings.sites if k == stored.row["site_name"]), "")
        return await self.form_page(request, form)

    async def report(self, request: Request, case_id: str, format: str = "html", version: int | None = None) -> Response:
        await self.service.caller(request)
        if format not in REPORT_MEDIA:
            return self.message(request, 422, "Unknown format", "format: one of html, json, markdown, pdf")
        stored, _ = await self._latest(case_id, version)
        if stored is None:
            return self.message(request, 404, "No such case", "There is no case (or no such version of it) with this address.")
        row = stored.row
        task = report_task(stored, "html" if format == "pdf" else format)
        kind, document = await self.service.run(task)
        if kind == "gone":
            return self.message(request, 410, "Made under another rule set", document)
        if format == "pdf":
            from cds.api import html_to_pdf

            body: str | bytes = await run_in_threadpool(html_to_pdf, document, row["evaluated_at"])
        else:
            body = document
        headers = {
            "Content-Disposition": f'inline; filename="case-{case_id[:8]}-v{stored.version}.{ {"markdown": "md"}.get(format, format) }"'
        }
        return finish(Response(body, media_type=REPORT_MEDIA[format], headers=headers), None, False, self.secure, DOCUMENT_CSP)

    # ------------------------------------------------------------------ the list and the board

    async def cases(self, request: Request, date: str | None = None, recheck: int = 0) -> Response:
        await self.service.caller(request)
        day, date_error = _parse_day(date)
        listed = [] if date_error else await self._listed(day)
        every = await run_in_threadpool(self.service.store.list_cases, None)
        dates = sorted({c.board_date for c in every if c.board_date is not None and c.latest is not None}, reverse=True)
        diffs: dict[str, Any] = {}
        if recheck and listed:
            _, result = await self.service.run(
                {
                    "kind": "web-recheck",
                    "cases": [
                        {
                            "case_id": r["case_id"],
                            "profile_json": r["profile_json"],
                            "ranking": r["ranking"],
                            "evaluated_at": r["evaluated_at"],  # rechecked at its time: only the rules differ
                        }
                        for r in listed
                    ],
                }
            )
            diffs = {d["case_id"]: d for d in result["rows"]}
        return self.page(
            request,
            "cases.html",
            422 if date_error else 200,
            rows=listed,
            dates=dates,
            date=date or "",
            date_error=date_error,
            diffs=diffs,
            rechecked=bool(recheck),
            current_hash=self.service.info.get("ruleset_hash") or "",
        )

    async def board(self, request: Request, date: str | None = None) -> Response:
        await self.service.caller(request)
        day, date_error = _parse_day(date)
        if date_error:
            return self.message(request, 422, "Bad date", date_error)
        rows = await self._listed(day)
        if not rows:
            return self.message(request, 404, "No cases", "No case is listed for this tumor-board date.")
        title = f"the cases of the tumor board of {day.isoformat()}" if day else "every case in the store"
        _, result = await self.service.run({"kind": "web-board", "profiles": [r["profile_json"] for r in rows], "title": title})
        return finish(HTMLResponse(result["html"]), None, False, self.secure, DOCUMENT_CSP)

    async def favicon(self) -> Response:
        return Response(status_code=204)  # no icon: a browser's automatic request is answered, not a 404

    async def _listed(self, day: _dt.date | None) -> list[dict[str, Any]]:
        """The cases of a board date with an evaluation, in the order they were entered (the board's order)."""
        found = await run_in_threadpool(self.service.store.list_cases, day)
        return [_list_row(c) for c in sorted(found, key=lambda c: (c.created_at, c.case_id)) if c.latest is not None]

    async def css(self) -> Response:
        return Response(
            (HERE / "static" / "cds.css").read_text(encoding="utf-8"),
            media_type="text/css; charset=utf-8",
            headers={"Cache-Control": "no-cache"},
        )


def _probe_line(label: str) -> dict[str, Any]:
    """A minimal profile whose only line is `label`: the worker expands the label as the model does."""
    return {"patient_id": "expand", "age": 60, "ecog": 0, "prior_lines": [{"regimen": label}]}


def _board_date(form: f.Form) -> _dt.date | str | None:
    if not form.board_date:
        return None
    day, error = _parse_day(form.board_date)
    return error if error else day


def _parse_day(text: str | None) -> tuple[_dt.date | None, str | None]:
    if not text:
        return None, None
    try:
        return _dt.date.fromisoformat(text.strip()), None
    except ValueError:
        return None, f"{text!r} is not a date: write YYYY-MM-DD"


def _as_entered(row: dict[str, Any]) -> dict[str, Any]:
    """The profile to edit: as entered on the form; for a case from the API or CDS Hooks (whose input is a
    request or a Bundle), the validated profile."""
    if row["channel"] == "web":
        data = json.loads(row["input_json"])
        if isinstance(data, dict):
            return data
    loaded = json.loads(row["profile_json"])
    return loaded if isinstance(loaded, dict) else {}


def _expanded(row: dict[str, Any]) -> list[dict[str, Any]]:
    """Lines entered by a regimen label alone, with the agents the label stood for."""
    if row["channel"] != "web":
        return []
    entered = _as_entered(row).get("prior_lines") or []
    validated = json.loads(row["profile_json"]).get("prior_lines") or []
    out = []
    for i, (a, b) in enumerate(zip(entered, validated)):
        if isinstance(a, dict) and a.get("agents") is None and a.get("regimen"):
            out.append({"line": i + 1, "regimen": a["regimen"], "agents": [str(x) for x in b.get("agents") or []]})
    return out


def _list_row(c: Any) -> dict[str, Any]:
    """One row of the case list, from the stored report JSON or card summary (what was shown when it was evaluated)."""
    latest = c.latest
    out = latest.summary()
    row = latest.row
    options = out.get("options") or []
    top = options[0] if options else None
    availability = (top or {}).get("availability") or {}
    facts = [u.get("description") or u.get("field") for u in out.get("unknown_facts_that_matter") or []]
    return {
        "case_id": c.case_id,
        "board_date": c.board_date,
        "patient_id": row["patient_id"],
        "synopsis": out.get("synopsis") or [],
        "top_title": (top or {}).get("title"),
        "availability": availability.get("status"),
        "availability_note": availability.get("marker"),
        "facts": facts,
        "evaluated_at": row["evaluated_at"],
        "created_at": latest.created_at,
        "version": latest.version,
        "ruleset_hash": row["ruleset_hash"],
        "profile_json": row["profile_json"],
        "ranking": [o["id"] for o in options],
    }
