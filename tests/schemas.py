"""Validating JSON outputs against the committed schemas in schemas/ (jsonschema, Draft 2020-12).

`validate(name, data)` raises jsonschema.ValidationError; `conftest.py` calls it on
every JSON report and every batch result line the suite produces in-process.
"""

from __future__ import annotations

import functools
import json
from pathlib import Path
from typing import Any

from jsonschema import Draft202012Validator

SCHEMAS = Path(__file__).resolve().parents[1] / "schemas"
REPORT = "report.schema.json"
BATCH_RESULT = "batch-result.schema.json"
PROFILE = "profile.schema.json"
RULE_FILE = "rule-file.schema.json"
SITE = "site.schema.json"


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
