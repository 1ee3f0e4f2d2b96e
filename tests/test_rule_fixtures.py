"""Every rule fires on its `fires` fixtures and stays silent on its `silent` fixtures (real engine)."""

from __future__ import annotations

import pytest
from conftest import PROFILES, RULES

from cds.knowledge.fixtures import run_fixtures
from cds.knowledge.ruleset import load_ruleset

_RULES = load_ruleset(RULES).rules


@pytest.mark.parametrize("rule_id", [r.id for r in _RULES])
def test_rule_fixtures(rule_id, evaluator):
    rule = evaluator.ruleset.rule(rule_id)
    results = run_fixtures(rule, evaluator, PROFILES)
    problems = [r.problem for r in results if not r.ok]
    assert problems == []


# The rule families written before fixtures existed: every rule now carries its
# own fixtures. A rule without a `when` holds for every patient, so it can only
# have `fires` fixtures; a conditional rule needs at least one of each.
_COVERED_FILES = ("eligibility.yaml", "sequencing.yaml", "cautions.yaml")


@pytest.mark.parametrize("rule_id", [r.id for r in _RULES if r.file in _COVERED_FILES])
def test_rule_has_fires_and_silent_fixtures(rule_id, evaluator):
    rule = evaluator.ruleset.rule(rule_id)
    assert rule.fixtures.fires, f"{rule_id}: no `fires` fixture"
    if rule.condition is None:
        assert not rule.fixtures.silent, f"{rule_id} has no `when`: it fires for every patient, a `silent` fixture cannot hold"
    else:
        assert rule.fixtures.silent, f"{rule_id}: no `silent` fixture"
