"""Cases as JSON Lines: `cds cases export --since DATE` writes them, `cds cases import` restores them.

One line per stored evaluation, oldest first, with the case it belongs to:

    {"format": "cds-cases/2", "case": {id, created_at, created_by, channel, external_key, patient_id,
     board_date, label}, "evaluation": {id, case_id, version, created_at, user, ..., "output_json": "<report>"}}

The report JSON is kept as the text the engine produced (byte for byte); it is null for a CDS Hooks
evaluation, which stores only what its card showed (`summary_json`; the report is reproducible
from `profile_json` at `evaluated_at` under the same rule set and site). Importing is one
transaction: every line is checked first (every problem named by line and field, at most
`PROBLEMS_SHOWN` spelled out), then each evaluation is added unless the store already holds it
(the same id with the same content: skipped, so importing twice adds nothing). A line that
contradicts the store (an id with other content, a version of a case taken by another
evaluation) refuses the whole file: nothing is overwritten, nothing half-imported.
"""

from __future__ import annotations

import datetime as _dt
import json
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import IO, Any

from pydantic import ValidationError
from pydantic_core import ErrorDetails
from sqlalchemy import Column, insert, select
from sqlalchemy.engine import Connection

from cds.errors import PROBLEMS_SHOWN, InputError, printable
from cds.model.base import Strict, error_field

from .schema import EvaluationFields, cases, evaluations, output_text, output_zlib

# 2: `summary_json` (the card's part of a report that was not stored) and `output_json` null for such an
# evaluation. A line of format 1 (before either) still reads: it has no summary_json, and its report.
FORMAT = "cds-cases/2"
READABLE = {"cds-cases/1": frozenset({"summary_json"}), FORMAT: frozenset()}  # format -> fields its lines may lack
MAX_LINE_BYTES = 64 * 1024 * 1024  # one evaluation: its input (at most the body cap) and its report


class CaseRecord(Strict):
    id: str
    created_at: _dt.datetime
    created_by: str
    channel: str
    external_key: str | None
    patient_id: str | None
    board_date: _dt.date | None
    label: str | None


class EvaluationRecord(EvaluationFields):
    """The evaluation of one line: the caller-given fields of the row (`EvaluationFields`, the
    definition the store adds with) and what the store added. Every field is required (the export
    writes them all; `read_lines` names a missing one), strictly typed, and no other."""

    id: str
    case_id: str
    version: int
    created_at: _dt.datetime
    report_token: str


class Line(Strict):
    format: str
    case: CaseRecord
    evaluation: EvaluationRecord


@dataclass(frozen=True)
class ImportResult:
    added: int
    already_present: int


def _iso(moment: _dt.datetime) -> str:
    return moment.astimezone(_dt.UTC).isoformat().replace("+00:00", "Z")


def export_lines(conn: Connection, since: _dt.datetime | None = None) -> Iterator[str]:
    """Every evaluation stored at or after `since` (all when None), oldest first, as JSON lines."""
    query = (
        select(evaluations, cases.c.created_at.label("case_created_at"), *(c.label(f"case_{c.name}") for c in _case_columns()))
        .select_from(evaluations.join(cases, cases.c.id == evaluations.c.case_id))
        .order_by(evaluations.c.created_at, evaluations.c.case_id, evaluations.c.version)
    )
    if since is not None:
        query = query.where(evaluations.c.created_at >= since)
    for row in conn.execute(query).mappings():
        case = {"id": row["case_id"], "created_at": _iso(row["case_created_at"])}
        case.update({c.name: row[f"case_{c.name}"] for c in _case_columns()})
        if case["board_date"] is not None:
            case["board_date"] = case["board_date"].isoformat()
        evaluation = {c.name: row[c.name] for c in evaluations.columns if c.name != "output_zlib"}
        evaluation["created_at"] = _iso(row["created_at"])
        evaluation["output_json"] = output_text(row["output_zlib"])
        yield json.dumps({"format": FORMAT, "case": case, "evaluation": evaluation}, ensure_ascii=False, sort_keys=True) + "\n"


def _case_columns() -> list[Column[Any]]:
    return [c for c in cases.columns if c.name not in ("id", "created_at")]


def read_lines(fh: IO[bytes], name: str) -> list[Line]:
    """Every line of an export, checked; InputError naming each problem by line and field."""
    problems: list[str] = []
    records: list[Line] = []
    number = 0
    while True:
        raw = fh.readline(MAX_LINE_BYTES + 1)
        if not raw:
            break
        number += 1
        if len(raw) > MAX_LINE_BYTES:
            raise InputError(f"{name}: line {number}: longer than {MAX_LINE_BYTES} bytes, the limit for one evaluation")
        if not raw.strip():
            continue
        try:
            record = Line.model_validate_json(raw)
        except ValidationError as exc:
            for err in exc.errors():
                where = error_field(err["loc"]) or "(line)"
                problems.append(f"line {number}: {where}: {_message(err)}")
            continue
        if record.format not in READABLE:
            problems.append(f"line {number}: format: {record.format!r} is not {FORMAT!r}")
        elif record.evaluation.case_id != record.case.id:
            problems.append(f"line {number}: evaluation.case_id: {record.evaluation.case_id!r} is not case.id {record.case.id!r}")
        elif record.case.created_at.tzinfo is None or record.evaluation.created_at.tzinfo is None:
            problems.append(f"line {number}: created_at: a time without a zone (the export writes UTC, ending in Z)")
        elif missing := sorted(
            EvaluationRecord.model_fields.keys() - record.evaluation.model_fields_set - READABLE[record.format]
        ):
            problems.extend(f"line {number}: evaluation.{field}: missing" for field in missing)
        elif record.evaluation.version < 1:
            problems.append(f"line {number}: evaluation.version: must be 1 or more")
        else:
            records.append(record)
    if problems:
        shown = "\n".join(f"  {p}" for p in problems[:PROBLEMS_SHOWN])
        more = f"\n  ... and {len(problems) - PROBLEMS_SHOWN} more problems" if len(problems) > PROBLEMS_SHOWN else ""
        raise InputError(f"{name}: not a cases export ({len(problems)} problems):\n{shown}{more}")
    return records


def _message(err: ErrorDetails) -> str:
    if err["type"] == "json_invalid":
        return "not valid JSON"
    if err["type"] == "missing":
        return "missing"
    if err["type"] == "extra_forbidden":
        return "not a field of a cases export"
    return printable(err["msg"], None)


def import_lines(conn: Connection, records: Iterable[Line]) -> ImportResult:
    """Add what the store lacks, in the caller's transaction; InputError (nothing added) on a contradiction."""
    added = present = 0
    for n, record in enumerate(records, 1):
        case, ev = record.case, record.evaluation
        _case(conn, case, n)
        row = ev.model_dump()
        output = row.pop("output_json")
        existing = conn.execute(select(evaluations).where(evaluations.c.id == ev.id)).mappings().first()
        if existing is not None:
            same = {k: existing[k] for k in row} == row and output_text(existing["output_zlib"]) == output
            if not same:
                raise InputError(
                    f"evaluation {ev.id} (record {n}): the store holds another evaluation under this id; nothing imported"
                )
            present += 1
            continue
        taken = conn.execute(
            select(evaluations.c.id).where(evaluations.c.case_id == ev.case_id, evaluations.c.version == ev.version)
        ).scalar()
        if taken is not None:
            raise InputError(
                f"evaluation {ev.id} (record {n}): version {ev.version} of case {ev.case_id} is already evaluation {taken}; nothing imported"
            )
        conn.execute(insert(evaluations).values(**row, output_zlib=output_zlib(output)))
        added += 1
    return ImportResult(added, present)


def _case(conn: Connection, case: CaseRecord, n: int) -> None:
    """The case row: added when missing; an existing one keeps its own (board date, label may have changed)."""
    found = conn.execute(select(cases.c.id, cases.c.external_key).where(cases.c.id == case.id)).mappings().first()
    if found is not None:
        return
    if case.external_key is not None:
        other = conn.execute(select(cases.c.id).where(cases.c.external_key == case.external_key)).scalar()
        if other is not None:
            raise InputError(
                f"case {case.id} (record {n}): its external key belongs to case {other} in the store; nothing imported"
            )
    conn.execute(insert(cases).values(**case.model_dump()))
