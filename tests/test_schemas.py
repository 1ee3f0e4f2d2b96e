"""The JSON Schemas in schemas/: up to date with the types they come from, valid Draft 2020-12, and
matched by the files and outputs they describe (the suite's own outputs are checked in conftest.py)."""

from __future__ import annotations

import copy
import json

import pytest
import yaml
from conftest import ROOT, RULES, case_names, load_case
from jsonschema import Draft202012Validator, ValidationError

from cds.apps.schemas import REGENERATE_COMMAND, SCHEMA_FILES, generate, stale
from cds.report.model import SCHEMA_VERSION
from schemas import BATCH_RESULT, PROFILE, REPORT, RULE_FILE, SCHEMAS, SITE, validate, validator


def test_committed_schemas_are_up_to_date():
    problems = stale(SCHEMAS, generate())
    assert not problems, "stale schemas:\n  " + "\n  ".join(problems) + f"\nregenerate them with: {REGENERATE_COMMAND}"


def test_stale_detects_a_changed_schema(tmp_path):
    from cds.apps.schemas import write
    from cds.report.examples import MANIFEST

    expected = generate()
    write(tmp_path, expected)
    assert stale(tmp_path, expected) == []
    (tmp_path / REPORT).write_text(expected[REPORT].replace('"schema_version"', '"format"', 1), encoding="utf-8")
    (tmp_path / SITE).unlink()
    (tmp_path / "retired.schema.json").write_text("{}", encoding="utf-8")
    with (tmp_path / MANIFEST).open("a", encoding="utf-8") as fh:
        fh.write("retired.schema.json\n")  # written by an earlier version
    (tmp_path / "mine.schema.json").write_text("{}", encoding="utf-8")  # not written by cds schemas: left alone
    (tmp_path / "openapi.json").write_text("{}", encoding="utf-8")  # not generated here: left alone
    assert sorted(stale(tmp_path, expected)) == sorted(
        [
            f"{tmp_path / REPORT}: out of date",
            f"{tmp_path / SITE}: missing",
            f"{tmp_path / 'retired.schema.json'}: not generated any more",
            f"{tmp_path / MANIFEST}: out of date",
        ]
    )


def test_schemas_check_exits_with_the_findings_code_when_a_schema_is_stale(tmp_path):
    from typer.testing import CliRunner

    from cds.apps.cli import app
    from cds.apps.schemas import write
    from cds.errors import EXIT_FINDINGS

    runner = CliRunner()
    write(tmp_path, generate())
    result = runner.invoke(app, ["schemas", "--check", "--output-dir", str(tmp_path)])
    assert result.exit_code == 0, result.output
    (tmp_path / SITE).unlink()
    result = runner.invoke(app, ["schemas", "--check", "--output-dir", str(tmp_path)])
    assert result.exit_code == EXIT_FINDINGS == 1, result.output
    assert f"{tmp_path / SITE}: missing" in result.stderr and REGENERATE_COMMAND in result.stderr


@pytest.mark.parametrize("name", SCHEMA_FILES)
def test_schema_is_valid_draft_2020_12(name):
    schema = json.loads((SCHEMAS / name).read_text(encoding="utf-8"))
    Draft202012Validator.check_schema(schema)
    assert schema["$schema"].endswith("/draft/2020-12/schema") and schema["title"]


@pytest.mark.parametrize("name", case_names())
def test_every_case_matches_the_profile_schema(name):
    validate(PROFILE, load_case(name))


def test_profile_schema_refuses_what_the_model_refuses():
    data = load_case("frail_ecog3")
    for bad in ({**data, "ecog": "2"}, {**data, "colour": "red"}, {k: v for k, v in data.items() if k != "prior_lines"}):
        with pytest.raises(ValidationError):
            validate(PROFILE, bad)


@pytest.mark.parametrize("path", sorted(RULES.glob("*.yaml")), ids=lambda p: p.name)
def test_every_rule_file_matches_the_rule_file_schema(path):
    validate(RULE_FILE, yaml.safe_load(path.read_text(encoding="utf-8")))


@pytest.mark.parametrize("path", sorted((RULES / "tests").glob("*.yaml")), ids=lambda p: p.name)
def test_every_fixture_file_matches_the_rule_tests_schema(path):
    data = yaml.safe_load(path.read_text(encoding="utf-8"))
    validate("rule-tests.schema.json", data)
    with pytest.raises(ValidationError):
        validate("rule-tests.schema.json", {**data, "fixtures": {"X-Y-001": {"fires": [{"profile": "Not A Case"}]}}})


def test_the_default_site_matches_the_site_schema():
    data = yaml.safe_load((RULES / "catalog" / "site_default.yaml").read_text(encoding="utf-8"))
    validate(SITE, data)
    with pytest.raises(ValidationError):
        validate(SITE, {**data, "car_t_delivered_on_site": "yes"})


@pytest.mark.parametrize("path", sorted((ROOT / "reports" / "examples").glob("*.json")), ids=lambda p: p.name)
def test_every_example_report_matches_the_report_schema(path):
    report = json.loads(path.read_text(encoding="utf-8"))
    validate(REPORT, report)
    assert report["schema_version"] == SCHEMA_VERSION


def test_report_schema_refuses_unknown_and_missing_fields():
    report = json.loads((ROOT / "reports" / "examples" / "frail_ecog3.json").read_text(encoding="utf-8"))
    extra = copy.deepcopy(report)
    extra["options"][0]["colour"] = "#E69F00"  # a view-only field must not come back into the JSON
    missing = copy.deepcopy(report)
    del missing["evidence"][next(iter(missing["evidence"]))]["quote"]
    for bad in (extra, missing):
        with pytest.raises(ValidationError):
            validate(REPORT, bad)


def test_batch_result_schema_tells_the_three_kinds_of_line_apart():
    v = validator(BATCH_RESULT)
    assert v.is_valid({"line": 4, "status": "invalid", "error": "e", "field": "age", "problem": "p"})
    assert v.is_valid({"file": "x.json", "status": "error", "error": "internal error"})
    assert not v.is_valid({"line": 4, "status": "invalid", "error": "e"})  # field and problem are required
    assert not v.is_valid({"line": 4, "status": "evaluated", "error": "e"})


def test_the_check_hook_is_active(evaluator):
    """conftest.py validates every in-process JSON report: a report that breaks its schema fails."""
    import dataclasses

    from cds.api import build_report, render

    report = build_report(evaluator.evaluate(evaluator.parse(load_case("frail_ecog3"))), "2026-01-01T00:00:00Z")
    assert json.loads(render(report, "json"))["patient_id"] == report.patient_id
    with pytest.raises(ValidationError):
        render(dataclasses.replace(report, schema_version=2), "json")
