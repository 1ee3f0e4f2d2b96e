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
