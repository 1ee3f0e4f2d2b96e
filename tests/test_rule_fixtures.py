"""Every rule fires on its `fires` fixtures and stays silent on its `silent` fixtures (real engine).

The fixtures live in rules/tests/<family>.yaml; `cds rules check` runs them too (one line per
problem), this test names the rule that fails.
"""

from __future__ import annotations

import pytest
from conftest import PROFILES, RULES

from cds.api import load_ruleset
from cds.knowledge.fixtures import base_folder, run_fixtures

_RULES = {r.id: r for r in load_ruleset(RULES, fixtures=True).rules}


@pytest.mark.parametrize("rule_id", list(_RULES))
def test_rule_fixtures(rule_id, evaluator):
    rule = _RULES[rule_id]
    assert rule.fixtures.fires, "every rule has a case on which it must fire"
    results = run_fixtures(rule, evaluator, base_folder(RULES), PROFILES)
    problems = [r.problem for r in results if not r.ok]
    assert problems == []
