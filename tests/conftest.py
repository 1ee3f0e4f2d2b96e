"""Shared fixtures. Every test uses the real rule files and the real durable-rules engine."""

from __future__ import annotations

import atexit
import json
import os
import shutil
import tempfile
from pathlib import Path

import pytest

from cds.api import Evaluator, load_rules

pytest.register_assert_rewrite("schemas")

# The suite never writes into the user's own cache folder (~/.cache/cds): the rule-set caches of the
# many temporary rule folders the tests load would evict the user's entries, and a second suite
# running beside this one would share them. One private folder per test session (mode 0700, removed
# at exit), inherited by every cds subprocess the tests start; a test that studies the cache sets
# its own. A CDS_CACHE_DIR given by the caller is kept.
if "CDS_CACHE_DIR" not in os.environ:
    _SESSION_CACHE = tempfile.mkdtemp(prefix="cds-test-cache-")
    os.environ["CDS_CACHE_DIR"] = _SESSION_CACHE
    atexit.register(shutil.rmtree, _SESSION_CACHE, True)

ROOT = Path(__file__).resolve().parents[1]
PROFILES = ROOT / "patient_profiles"
RULES = ROOT / "rules"


def seeds_dir() -> Path:
    env = os.environ.get("CDS_SEEDS_DIR")
    return Path(env) if env else ROOT.parent / "shared" / "seeds"


@pytest.fixture(scope="session")
def evaluator() -> Evaluator:
    """The rule set of this checkout, compiled once for the whole session."""
    return load_rules(RULES)


@pytest.fixture(scope="session")
def ruleset(evaluator):
    return evaluator.ruleset


@pytest.fixture(scope="session")
def rules_with_fixtures():
    """The active rules with their fixtures (rules/tests/; evaluating never reads them)."""
    from cds.api import load_ruleset

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

    from cds.store import Store

    export_lines, iter_feedback = Store.export_lines, Store.iter_feedback

    @functools.wraps(export_lines)
    def checked_export_lines(self, since=None):
        for line in export_lines(self, since):
            schemas.validate(schemas.CASES_EXPORT, json.loads(line))
            yield line

    @functools.wraps(iter_feedback)
    def checked_iter_feedback(self, since=None):
        for row in iter_feedback(self, since):
            schemas.validate(schemas.FEEDBACK_EXPORT, json.loads(json.dumps(row)))
            yield row

    render.to_json, batch.evaluate_chunk = checked_to_json, checked_chunk
    Store.export_lines, Store.iter_feedback = checked_export_lines, checked_iter_feedback
    yield
    render.to_json, batch.evaluate_chunk = to_json, evaluate_chunk
    Store.export_lines, Store.iter_feedback = export_lines, iter_feedback
