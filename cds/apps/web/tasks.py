"""What the case pages ask of a worker process (`cds.apps.http.work` hands every ``web-*`` task here).

The engine lives only in the workers; the pages' server process never loads it. Every
function takes the worker's state (the compiled rule folder and sites) and a task dict of
plain data, and returns plain data (it crosses a pipe):

    web-vocabulary  the drug names, regimen labels (with their agents) and cytogenetic abnormalities
    web-evaluate    a profile dict -> every problem (field, problem), or the summary, expansions and the record to store
    web-import      an uploaded profile or FHIR Bundle (text) -> the profile dict to prefill, notes, problems
    web-summary     a stored evaluation -> the page-1 summary again (same input, same rule set: same output)
    web-recheck     stored cases -> their ranking under the running rule set, and what changed
    web-board       stored profiles -> the printable board (cds.cohort.board, the same table as `cds board`)
"""

from __future__ import annotations

import dataclasses
import json
import tempfile
from pathlib import Path
from typing import Any


def handle(state: Any, task: dict[str, Any]) -> dict[str, Any]:
    kind = task["kind"]
    fn = {
        "web-vocabulary": vocabulary,
        "web-evaluate": evaluate,
        "web-import": import_input,
        "web-summary": summary,
        "web-recheck": recheck,
        "web-board": board,
    }[kind]
    return fn(state, task)


def vocabulary(state: Any, task: dict[str, Any]) -> dict[str, Any]:
    v = state.evaluator.vocabulary
    return {
        "drugs": [d.name for d in v.drugs],
        "names": v.names(),
        "regimens": v.regimen_items(),
        "cytogenetics": list(v.cytogenetic_names),
        "classes": sorted(v.classes.items()),
    }


def _site(state: Any, key: str | None) -> Any:
    return state.sites[key] if key else None


def _summary_view(report: Any) -> dict[str, Any]:
    from cds.api import summarize, summary_view

    return summary_view(summarize(report))


def evaluate(state: Any, task: dict[str, Any]) -> dict[str, Any]:
    """Validate with the model the CLI uses (every problem at once); evaluate a valid profile."""
    from cds.apps.http.work import _record

    cds = state.cds
    try:
        evaluation = cds.evaluate(task["profile"], rules=state.rules, evaluated_at=task.get("evaluated_at"))
    except cds.ProfileError as exc:
        return {"problems": [list(p) for p in exc.problems]}
    report = cds.build_report(evaluation, None, _site(state, task.get("site")))  # stamped with the evaluation's time
    expanded = [
        {"line": i, "regimen": line.regimen, "agents": [str(a) for a in line.agent_list]}
        for i, line in enumerate(evaluation.profile.prior_lines)
        if line.agents_from_regimen
    ]
    return {
        "problems": [],
        "summary": _summary_view(report),
        "expanded": expanded,
        "record": _record(evaluation, report.to_dict(), "profile"),
    }


def import_input(state: Any, task: dict[str, Any]) -> dict[str, Any]:
    """An uploaded file: a profile is taken as it is; a FHIR Bundle through the FHIR import (with what it could not give)."""
    cds = state.cds
    from cds.api import decode_json, is_fhir

    try:
        data = decode_json(task["text"])
    except cds.ProfileError as exc:
        return {"error": str(exc)}
    notes: list[str] = []
    kind = "profile"
    if is_fhir(data):
        from cds.api import import_bundle

        kind = "fhir-bundle"
        try:
            result = import_bundle(data, state.evaluator.vocabulary)
        except cds.InputError as exc:
            return {"error": f"the FHIR Bundle cannot be imported: {exc}"}
        profile = result.profile
        notes = [f"{f.field}: {f.how}" for f in result.facts if f.status == "unknown" and f.how]
        notes += [f"warning: {w}" for w in result.warnings]
    elif isinstance(data, dict):
        profile = data
    else:
        return {"error": f"(file): the profile must be a JSON object, got {type(data).__name__}"}
    problems: list[list[str]] = []
    try:
        state.evaluator.parse(profile)
    except cds.ProfileError as exc:
        problems = [list(p) for p in exc.problems]
    return {"profile": profile, "kind": kind, "notes": notes, "problems": problems}


def summary(state: Any, task: dict[str, Any]) -> dict[str, Any]:
    """The page-1 summary of a stored evaluation, rebuilt from its validated profile at its time and site."""
    cds = state.cds
    stored = task["stored"]
    profile = state.evaluator.parse(json.loads(stored["profile_json"]))
    site_key = next((k for k, s in state.sites.items() if s.digest == stored.get("site_hash")), None)
    at = stored["evaluated_at"]  # the stored time: the same evaluation date as the stored summary
    report = cds.build_report(cds.evaluate(profile, rules=state.rules, evaluated_at=at), at, _site(state, site_key))
    return {"summary": _summary_view(report), "ruleset_hash": state.evaluator.ruleset.digest}


def recheck(state: Any, task: dict[str, Any]) -> dict[str, Any]:
    """Each stored case under the running rule set: does its ranking change? (as `cds diff-rules` compares them)."""
    cds = state.cds
    rows = []
    for case in task["cases"]:
        old = case["ranking"]
        try:
            # at the stored time: a changed ranking is the rules', not the months gone by since
            profile = state.evaluator.parse(json.loads(case["profile_json"]))
            ev = cds.evaluate(profile, rules=state.rules, evaluated_at=case.get("evaluated_at"))
        except cds.InputError as exc:
            rows.append({"case_id": case["case_id"], "status": "invalid", "error": str(exc)})
            continue
        new = list(ev.decision.order)
        rows.append(
            {
                "case_id": case["case_id"],
                "status": "evaluated",
                "old": {"top_option": old[0] if old else None, "ranking": old},
                "new": {"top_option": ev.decision.top, "ranking": new},
                "top_changed": (old[0] if old else None) != ev.decision.top,
                "ranking_changed": old != new,
            }
        )
    return {"rows": rows, "ruleset_hash": state.evaluator.ruleset.digest}


def board(state: Any, task: dict[str, Any]) -> dict[str, Any]:
    """The printable board of the listed cases: their stored profiles through `cds.cohort.board.build_board`."""
    from cds.api import build_board, evaluation_time, render_board

    with tempfile.TemporaryDirectory(prefix="cds-board-") as tmp:
        source = Path(tmp) / "board.jsonl"
        source.write_text("".join(p.strip() + "\n" for p in task["profiles"]), encoding="utf-8")
        b = build_board(source, state.evaluator, evaluation_time(task.get("evaluated_at")))
    b = dataclasses.replace(b, input=task.get("title") or "the case store")
    return {"html": render_board(b, "html")}
