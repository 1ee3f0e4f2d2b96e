"""Validating JSON outputs against the committed schemas in schemas/ (jsonschema, Draft 2020-12).

`validate(name, data)` raises jsonschema.ValidationError; `conftest.py` calls it on
every JSON report and every batch result line the suite produces in-process.
"""

from __future__ import annotations

import functools
import json
import re
from pathlib import Path
from typing import Any

from jsonschema import Draft202012Validator

SCHEMAS = Path(__file__).resolve().parents[1] / "schemas"
REPORT = "report.schema.json"
BATCH_RESULT = "batch-result.schema.json"
PROFILE = "profile.schema.json"
RULE_FILE = "rule-file.schema.json"
SITE = "site.schema.json"
CASES_EXPORT = "cases-export.schema.json"
FEEDBACK_EXPORT = "feedback-export.schema.json"


@functools.cache
def validator(name: str) -> Draft202012Validator:
    schema = json.loads((SCHEMAS / name).read_text(encoding="utf-8"))
    Draft202012Validator.check_schema(schema)
    return Draft202012Validator(schema)


def validate(name: str, data: Any) -> Any:
    validator(name).validate(data)
    return data


def validate_jsonl(name: str, text: str) -> None:
    for line in text.splitlines():
        if line:
            validate(name, json.loads(line))


# ---------------------------------------------------------------------------- the HTTP service's responses

OPENAPI = "openapi.json"
#: where a 200 application/json body is a report (report.schema.json): POST /api/evaluate and GET /reports/{token}
#: ("the document `cds evaluate` produces"), and the case pages' report
REPORT_PATHS = (re.compile(r"^/api/evaluate$"), re.compile(r"^/reports/[^/]+$"), re.compile(r"^/cases/[^/]+/report$"))


@functools.cache
def _openapi() -> dict[str, Any]:
    document: dict[str, Any] = json.loads((SCHEMAS / OPENAPI).read_text(encoding="utf-8"))
    return document


def component(name: str) -> dict[str, Any]:
    """A schema of the OpenAPI document's components (``Card``, ``ErrorBody``, ...), its references resolvable."""
    return {"$ref": f"#/components/schemas/{name}", "components": _openapi()["components"]}


def validate_component(name: str, data: Any) -> Any:
    Draft202012Validator(component(name)).validate(data)
    return data


def response_schema(method: str, path: str, status: int) -> dict[str, Any] | None:
    """The committed schema of a JSON response, or None when none describes it: every error (4xx, 5xx) is an
    ``ErrorBody``; a report is a report; else what the OpenAPI document gives for the path, method and status."""
    if status >= 400:
        return component("ErrorBody")
    if status == 200 and any(p.match(path) for p in REPORT_PATHS):
        return validator(REPORT).schema
    for template, operations in _openapi()["paths"].items():
        if re.match("^" + re.sub(r"\\\{[^}]+\\\}", "[^/]+", re.escape(template)) + "$", path):
            entry = operations.get(method.lower(), {}).get("responses", {}).get(str(status), {})
            schema = entry.get("content", {}).get("application/json", {}).get("schema")
            return {**schema, "components": _openapi()["components"]} if schema else None
    return None


def validate_response(method: str, path: str, status: int, data: Any) -> bool:
    """Validate a JSON response body against its committed schema; False when none describes it."""
    schema = response_schema(method, path, status)
    if schema is None:
        return False
    Draft202012Validator(schema).validate(data)
    return True
