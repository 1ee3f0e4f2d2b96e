"""Shared fixtures. Every test uses the real rule files and the real durable-rules engine."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from cds.decide.pipeline import Evaluator, default_evaluator

pytest.register_assert_rewrite("schemas")

ROOT = Path(__file__).resolve().parents[1]
PROFILES = ROOT / "patient_profiles"
RULES = ROOT / "rules"


def seeds_dir() -> Path:
    env = os.environ.get("CDS_SEEDS_DIR")
    return Path(env) if env else ROOT.parent / "shared" / "seeds"


@pytest.fixture(scope="session")
def evaluator() -> Evaluator:
    """The rule set of this checkout, compiled once for the whole session."""
    return default_evaluator(str(RULES))


@pytest.fixture(scope="session")
def ruleset(evaluator):
    return evaluator.ruleset


@pytest.fixture(scope="session")
def rules_with_fixtures():
    """The active rules with their fixtures (rules/tests/; evaluating never reads them)."""
    from cds.knowledge.ruleset import load_ruleset

    return load_ruleset(RULES, fixtures=True).rules


def load_case(name: str) -> dict:
    return json.loads((PROFILES / f"{name}.json").read_text(encoding="utf-8"))


def case_names() -> list[str]:
    return sorted(p.stem for p in PROFILES.glob("*.json"))


@pytest.fixture(autouse=True, scope="session")
def _json_outputs_match_their_schemas():
    """Every JSON report and batch result line produced in this process (CliRunner included) is
    validated against its committed schema in schemas/; a mismatch fails the test that produced it.
    Forked batch workers inherit the check; a failure there ends the batch with an error."""
    import functools

    import schemas
    from cds.cohort import batch
    from cds.report import render

    to_json, evaluate_chunk = render.to_json, batch.evaluate_chunk

    @functools.wraps(to_json)
    def checked_to_json(report):
        text = to_json(report)
        schemas.validate(schemas.REPORT, json.loads(text))
        return text

    @functools.wraps(evaluate_chunk)
    def checked_chunk(task):
        text, stats = evaluate_chunk(task)
        schemas.validate_jsonl(schemas.BATCH_RESULT, text)
        return text, stats

    render.to_json, batch.evaluate_chunk = checked_to_json, checked_chunk
    yield
    render.to_json, batch.evaluate_chunk = to_json, evaluate_chunk
