"""Every tumor-board case in patient_profiles/ gives its expected outcome (patient_profiles/expected.yaml)."""

from __future__ import annotations

import pytest
import yaml
from conftest import PROFILES, case_names, load_case

EXPECTED = yaml.safe_load((PROFILES / "expected.yaml").read_text(encoding="utf-8"))


def test_every_case_has_an_expectation_and_vice_versa():
    assert sorted(EXPECTED) == case_names()


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_case(name, evaluator):
    exp = EXPECTED[name]
    ev = evaluator.evaluate(evaluator.parse(load_case(name)))
    ranked = [o.id for o in ev.ranking.options]
    assert ranked[: len(exp["top"])] == exp["top"], ranked
    assert sorted(x.id for x in ev.ranking.excluded) == sorted(exp["excluded"])
    for rule_id in exp.get("fires", []):
        assert rule_id in ev.fired, f"{rule_id} should fire for {name}"
    for rule_id in exp.get("silent", []):
        assert rule_id not in ev.fired, f"{rule_id} must not fire for {name}"
    matters = sorted(u.field for u in ev.unknown_facts if u.changes_top)
    assert matters == sorted(exp.get("unknown_matters", []))
