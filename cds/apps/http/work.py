"""What a worker process does: evaluate, build the report, render it; all through the public API.

Runs only in the worker processes of `cds.apps.http.pool` (the parent never loads the rules
engine). Every task gets one reply, never an exception across the pipe:

    ("ok", {...})                       the result
    ("invalid", {"error", "field"[, "problems"]})  bad input: the CLI's message in one line, the (first) field
                                        path and, for a profile, every problem as {field, problem}
    ("no_myeloma", None)                a CDS Hooks patient without a myeloma diagnosis
    ("gone", message)                   a stored report that this rule set can no longer reproduce
    ("error", message)                  an internal error (500), logged by the server
"""

from __future__ import annotations

import json
import logging
import os
from multiprocessing.connection import Connection
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from cds.api import Evaluation, Evaluator, Report, Site
    from cds.errors import ProfileError
    from cds.store import StoredEvaluation

log = logging.getLogger("cds.serve.worker")


class NoMyeloma(Exception):
    """The chart has no multiple-myeloma diagnosis: the hook answers with no cards."""


class Gone(Exception):
    """A stored report that the running rule set (or site files) cannot reproduce."""


class WorkerState:
    """The compiled rule folder and the configured sites of one worker process."""

    def __init__(self, rules: str | None, sites: dict[str, str]):
        import cds

        self.cds = cds
        self.rules = rules
        self.evaluator: Evaluator = cds.load_rules(rules)
        self.sites: dict[str, Site] = {key: cds.load_site(Path(path), self.evaluator.ruleset) for key, path in sites.items()}

    def ready_info(self) -> dict[str, Any]:
        from cds.api import default_site

        default = default_site(self.evaluator.ruleset)
        return {
            "engine_version": _engine_version(self.cds.__version__),
            "ruleset_hash": self.evaluator.ruleset.digest,
            "default_site": _site_info(default),
            "sites": {key: _site_info(site) for key, site in self.sites.items()},
        }

    # ------------------------------------------------------------------ tasks

    def handle(self, task: dict[str, Any]) -> tuple[str, Any]:
        try:
            kind = task["kind"]
            if kind == "evaluate":
                return "ok", self.evaluate_text(task)
            if kind == "hook":
                return "ok", self.hook(task)
            if kind == "report":
                return "ok", self.report(task)
            if kind.startswith("web-"):  # the case pages (cds.apps.web)
                from cds.apps.web.tasks import handle

                return "ok", handle(self, task)
            raise ValueError(f"unknown task {kind!r}")
        except NoMyeloma:
            return "no_myeloma", None
        except Gone as exc:
            return "gone", str(exc)
        except self.cds.ProfileError as exc:
            return "invalid", _invalid(exc)
        except self.cds.InputError as exc:  # e.g. a FHIR Bundle that cannot be imported (every problem, naming the entry)
            return "invalid", {"error": str(exc), "field": getattr(exc, "field", None)}
        except Exception as exc:
            if os.environ.get("CDS_DEBUG"):
                log.exception("internal error")
            return "error", f"internal error ({type(exc).__name__})"

    def _from_text(self, text: str, evaluated_at: str | None) -> tuple[Evaluation, str]:
        """The body: a profile or a FHIR Bundle, decoded as strictly as the CLI reads a file; (evaluation, input kind)."""
        from cds.api import decode_json, is_fhir

        data = decode_json(text)
        evaluation: Evaluation = self.cds.evaluate(data, rules=self.rules, evaluated_at=evaluated_at)
        return evaluation, "fhir-bundle" if is_fhir(data) else "profile"

    def _report(self, evaluation: Evaluation, site_key: str | None, evaluated_at: str | None = None) -> Report:
        """The report of `evaluation`, stamped with the instant it was evaluated at (`evaluated_at`: the same)."""
        site = self.sites[site_key] if site_key else None
        report: Report = self.cds.build_report(evaluation, evaluated_at, site)
        return report

    def evaluate_text(self, task: dict[str, Any]) -> dict[str, Any]:
        """POST /api/evaluate: the body (JSON text) -> the document in the format asked, and the record to store."""
        evaluation, kind = self._from_text(task["text"], task.get("evaluated_at"))
        report = self._report(evaluation, task.get("site"))
        fmt = task["format"]
        document: str = self.cds.render(report, fmt)
        return {"document": document, "record": _record(evaluation, report.to_dict(), kind)}

    def hook(self, task: dict[str, Any]) -> dict[str, Any]:
        """patient-view: the Bundle built from the prefetch -> the card and the record to store."""
        from .card import build_card

        evaluation = self._evaluate_bundle(task["bundle"], task.get("evaluated_at"))
        # the card's part of the report only: the report (nearly half of this task's time when built) is made
        # again from the stored profile when the card's link is opened (`report`)
        site_key = task.get("site")
        data: dict[str, Any] = self.cds.build_card_data(evaluation, None, self.sites[site_key] if site_key else None)
        card = build_card(data, card_uuid=task["card_uuid"], report_url=task["report_url"], version=self.cds.__version__)
        return {"card": card, "record": _record(evaluation, data, "cds-hooks", full=False)}

    def report(self, task: dict[str, Any]) -> str:
        """GET /reports/{token}: the stored evaluation's report in the format asked.

        JSON is the stored output itself, where the report was stored (POST /api/evaluate, the case
        pages). Everything else (HTML, Markdown, and every format of a CDS Hooks evaluation, which
        stores only its card's data) is made again from the stored validated profile at the stored
        time and site: same input, same rule set, same output (principle 4; the JSON is byte for
        byte what storing it would have kept, tested against the CLI). A report made under another
        rule set or site file cannot be reproduced here: ("gone", ...), and a stored JSON stays
        available.
        """
        stored = task["stored"]
        if task["format"] == "json" and stored["output_json"] is not None:
            return json.dumps(json.loads(stored["output_json"]), indent=2, ensure_ascii=False) + "\n"
        site_key = next((k for k, site in self.sites.items() if site.digest == stored["site_hash"]), None)
        default = self.ready_info()["default_site"]
        same_site = site_key is not None or stored["site_hash"] == (default or {}).get("hash")
        if stored["ruleset_hash"] != self.evaluator.ruleset.digest or not same_site:
            kept = "; its JSON is still available (?format=json)" if stored["output_json"] is not None else ""
            raise Gone(f"this report was made under another rule set or site file{kept}")
        profile = self.evaluator.parse(json.loads(stored["profile_json"]))
        at = stored["evaluated_at"]  # the stored time: the same evaluation date as the stored report
        report = self._report(self.cds.evaluate(profile, rules=self.rules, evaluated_at=at), site_key, at)
        document: str = self.cds.render(report, task["format"])
        return document

    def _evaluate_bundle(self, bundle: dict[str, Any], evaluated_at: str | None) -> Evaluation:
        """prefetch Bundle -> evaluation, or NoMyeloma: the FHIR importer (issue 14) decides both."""
        from cds.errors import NoMyelomaDiagnosis

        try:
            evaluation: Evaluation = self.cds.evaluate(bundle, rules=self.rules, evaluated_at=evaluated_at)
        except NoMyelomaDiagnosis:
            raise NoMyeloma() from None
        return evaluation


def report_task(stored: StoredEvaluation, fmt: str) -> dict[str, Any]:
    """The "report" task for a stored evaluation (`cds.store.StoredEvaluation`): its report JSON, or rendered again."""
    row = stored.row
    return {
        "kind": "report",
        "format": fmt,
        "stored": {
            "output_json": stored.output_text(),
            "profile_json": row["profile_json"],
            "evaluated_at": row["evaluated_at"],
            "ruleset_hash": row["ruleset_hash"],
            "site_hash": row["site_hash"],
        },
    }


def _engine_version(version: str) -> str:
    """The stamp every report carries: cds and durable-rules versions."""
    from importlib.metadata import version as installed

    return f"cds {version} (durable-rules {installed('durable_rules')})"


def _site_info(site: Site | None) -> dict[str, Any] | None:
    return None if site is None else {"name": site.name, "hash": site.digest}


def _invalid(exc: ProfileError) -> dict[str, Any]:
    """The CLI's message (`error: invalid patient profile: <field>: <problem>`), for a body instead of a file;
    with more than one problem (the CLI prints them one per line) every one, in one line and as a list."""

    def body(field: str) -> str:
        return "(body)" if field == "(file)" else field

    problems: list[dict[str, Any]] = [{"field": body(f) or None, "problem": p} for f, p in exc.problems]
    if len(problems) == 1:
        field, problem = body(exc.field), exc.problem
        error = f"invalid patient profile: {field}: {problem}" if field else f"invalid patient profile: {problem}"
    else:
        listed = "; ".join(f"{p['field']}: {p['problem']}" if p["field"] else p["problem"] for p in problems)
        error = f"invalid patient profile: {len(problems)} problems: {listed}"
    return {"error": error, "field": body(exc.field) or None, "problems": problems}


def _record(evaluation: Evaluation, report: dict[str, Any], input_kind: str, *, full: bool = True) -> dict[str, Any]:
    """What the store keeps of an evaluation (the input text is added by the server, which has it).

    `report`: the report JSON (stored, `full`), or only its card's part (`card.card_data`: stored
    as the summary, and the report is rebuilt from the profile when asked for).
    """
    profile = evaluation.profile.model_dump(mode="json")
    options = report["options"]
    text = json.dumps(report, separators=(",", ":"), ensure_ascii=False)
    return {
        "input_kind": input_kind,
        "profile_json": json.dumps(profile, sort_keys=True, separators=(",", ":"), ensure_ascii=False),
        "output_json": text if full else None,
        "summary_json": None if full else text,
        "engine_version": report["engine_version"],
        "ruleset_hash": report["ruleset_hash"],
        "input_hash": report["input_hash"],
        "evaluated_at": report["evaluated_at"],
        "patient_id": report["patient_id"],
        "top_option": options[0]["id"] if options else None,
        "site_name": report.get("site_name"),
        "site_hash": report.get("site_hash"),
    }


def worker_main(conn: Connection, rules: str | None, sites: dict[str, str]) -> None:
    """Entry point of a worker process (spawned): compile once, then serve tasks until the pipe closes."""
    from .pool import worker_loop, worker_signals

    worker_signals()
    try:
        state = WorkerState(rules, sites)
    except Exception as exc:  # noqa: BLE001 - reported by the server as one line, exit 2
        message = str(exc)
        problems = getattr(exc, "problems", None)
        if problems:
            message = "the rule set is invalid:\n" + "\n".join(f"  {p}" for p in problems)
        conn.send(("failed", message))
        return
    worker_loop(conn, state.handle, state.ready_info())
