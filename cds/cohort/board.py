"""`cds board`: the week's tumor-board list on one table, one row per patient, in input order.

Each row: patient ID, synopsis, the top option with its availability at the
site, the runner-up, the facts to obtain, and a link to the patient's full
report when ``--reports DIR`` is given. A record that cannot be evaluated is a
row with its error (nothing is dropped). The records are evaluated in this
process, one after another (a week's list is tens of patients; `cds batch`
is for cohorts).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cds.cohort.batch import _load, read_records
from cds.cohort.reports import PdfStage, ReportOptions, site_for, write_report
from cds.errors import CdsError, ProfileError
from cds.report.summary import FactToObtain, TopOption, summarize

BOARD_VERSION = "cds-board/1"


@dataclass(frozen=True, slots=True)
class BoardRow:
    record: str  # "line 3" or the file name
    patient_id: str | None
    status: str  # "evaluated" or "invalid"
    synopsis: list[str]
    top: TopOption | None
    runner_up: TopOption | None
    best_available: str | None  # when the top option is not available here or needs referral
    facts_to_obtain: list[FactToObtain]
    excluded: int
    report: str | None  # link to the patient's report, relative to the board file
    error: str | None


@dataclass(frozen=True, slots=True)
class Board:
    input: str
    evaluated_at: str
    engine_version: str | None
    ruleset_hash: str
    site_name: str | None
    rows: list[BoardRow]


def build_board(
    source: Path,
    evaluator: Any,
    evaluated_at: str,
    site: str | None = None,
    reports: ReportOptions | None = None,
    board_file: str | None = None,
) -> Board:
    """Evaluate every record of `source` (JSONL or folder) and build the board; with `reports`, write each report."""
    from cds.report.build import build_report

    rows: list[BoardRow] = []
    site_obj = site_for(site, evaluator.ruleset)
    link_base = Path(board_file).resolve().parent if board_file else Path.cwd()
    engine_version = None
    site_name = None
    stage = PdfStage(reports.directory, evaluated_at) if reports is not None and reports.fmt == "pdf" else None
    if stage is not None:
        stage.__enter__()
    try:
        for _, key, payload in read_records(source):
            where = f"line {key[1]}" if key[0] == "line" else str(key[1])
            try:
                ev = evaluator.evaluate(_load(evaluator, key, payload, evaluated_at), evaluated_at)
            except (ProfileError, CdsError) as exc:
                message = f"invalid patient profile: {exc}" if isinstance(exc, ProfileError) else str(exc)
                rows.append(BoardRow(where, None, "invalid", [], None, None, None, [], 0, None, message))
                continue
            report = build_report(ev, evaluated_at, site_obj)
            engine_version, site_name = report.engine_version, report.site_name
            s = summarize(report)
            link = None
            if reports is not None:
                name = write_report(ev, reports, key, evaluated_at)
                if stage is not None:
                    stage.print(name)
                link = os.path.relpath(Path(reports.directory) / name, link_base)
            rows.append(
                BoardRow(
                    record=where,
                    patient_id=s.patient_id,
                    status="evaluated",
                    synopsis=s.synopsis,
                    top=s.options[0] if s.options else None,
                    runner_up=s.options[1] if len(s.options) > 1 else None,
                    best_available=s.best_available.short_title if s.best_available else None,
                    facts_to_obtain=s.facts_to_obtain,
                    excluded=len(s.excluded),
                    report=link,
                    error=None,
                )
            )
    finally:
        if stage is not None:
            stage.__exit__(None, None, None)
    return Board(
        input=str(source),
        evaluated_at=evaluated_at,
        engine_version=engine_version,
        ruleset_hash=evaluator.ruleset.digest,
        site_name=site_name,
        rows=rows,
    )
