"""The JSON Schemas committed under ``schemas/``: generated from the types that define each format.

    profile.schema.json       a patient profile (cds.model.profile.PatientProfile)
    rule-file.schema.json     a rule file rules/<family>.yaml (cds.knowledge.rulefiles.RuleFile)
    rule-tests.schema.json    the fixtures of a rule file, rules/tests/<family>.yaml (cds.knowledge.rulefiles.FixtureFile)
    site.schema.json          a site file, --site (cds.knowledge.site.SiteFile)
    report.schema.json        `cds evaluate --format json` (cds.report.model.Report)
    batch-result.schema.json  one line of `cds batch` output (cds.cohort.batch.ResultLine)
    cases-export.schema.json  one line of `cds cases export` (cds.store.exchange.Line)
    feedback-export.schema.json  one line of `cds feedback export` (cds.store.store.FeedbackLine)

``cds schemas`` regenerates them; ``tests/test_schemas.py`` fails when a
committed one is stale (as ruff does with its ``ruff.schema.json``) and
validates the suite's JSON outputs against them. Pydantic generates every
schema; it is imported here only, never on the evaluation path.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

DIALECT = "https://json-schema.org/draft/2020-12/schema"
REGENERATE_COMMAND = "cds schemas  (from the checkout root; or: python -m cds schemas)"


def _profile() -> dict[str, Any]:
    from cds.model.profile import PatientProfile

    return PatientProfile.model_json_schema()


def _rule_file() -> dict[str, Any]:
    from cds.knowledge.rulefiles import RuleFile

    return RuleFile.model_json_schema()


def _rule_tests() -> dict[str, Any]:
    from cds.knowledge.rulefiles import FixtureFile

    return FixtureFile.model_json_schema()


def _site() -> dict[str, Any]:
    from cds.knowledge.site import SiteFile

    return SiteFile.model_json_schema()


def _report() -> dict[str, Any]:
    from pydantic import TypeAdapter

    from cds.report.model import Report

    schema = TypeAdapter(Report).json_schema(mode="serialization")
    # the one field whose JSON name is a Python keyword (see Report.to_dict)
    ref = schema["$defs"]["EvidenceConflictRef"]
    ref["properties"] = {("with" if k == "with_" else k): v for k, v in ref["properties"].items()}
    ref["required"] = [("with" if k == "with_" else k) for k in ref["required"]]
    ref["properties"]["with"]["title"] = "With"
    return schema


def _batch_result() -> dict[str, Any]:
    from pydantic import TypeAdapter

    from cds.cohort.batch import ResultLine

    schema = TypeAdapter(ResultLine).json_schema()
    for definition in schema["$defs"].values():  # a record has exactly these keys
        definition["additionalProperties"] = False
    return schema


def _cases_export() -> dict[str, Any]:
    from cds.store.exchange import Line

    return Line.model_json_schema()


def _feedback_export() -> dict[str, Any]:
    from cds.store.store import FeedbackLine

    return FeedbackLine.model_json_schema()


SCHEMAS: dict[str, tuple[str, Callable[[], dict[str, Any]]]] = {
    "profile.schema.json": ("A patient profile (cds evaluate PATH)", _profile),
    "rule-file.schema.json": ("A rule file (rules/<family>.yaml)", _rule_file),
    "rule-tests.schema.json": ("The fixtures of a rule file (rules/tests/<family>.yaml)", _rule_tests),
    "site.schema.json": ("Site settings (cds evaluate --site FILE)", _site),
    "report.schema.json": ("The report (cds evaluate --format json)", _report),
    "batch-result.schema.json": ("One line of cds batch output (JSONL)", _batch_result),
    "cases-export.schema.json": ("One line of cds cases export (JSONL)", _cases_export),
    "feedback-export.schema.json": ("One line of cds feedback export (JSONL)", _feedback_export),
}


SCHEMA_FILES = tuple(SCHEMAS)


def generate() -> dict[str, str]:
    """File name -> exact text of every schema."""
    out = {}
    for name, (title, make) in SCHEMAS.items():
        schema = {"$schema": DIALECT, **make()}
        schema["title"] = title
        out[name] = json.dumps(schema, indent=2, ensure_ascii=False, sort_keys=False) + "\n"
    return out


def stale(folder: Path, expected: dict[str, str]) -> list[str]:
    from cds.report.examples import stale as stale_files

    return stale_files(folder, expected, "cds schemas")


def write(folder: Path, expected: dict[str, str]) -> list[Path]:
    from cds.report.examples import write_examples

    return write_examples(folder, expected, "cds schemas")
