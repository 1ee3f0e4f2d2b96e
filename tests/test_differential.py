"""Differential testing: the durable-rules engine against the pure-Python reference interpreter.

Both get the same flat fact dicts; the set of fired rules must be identical.
Inputs: thousands of random valid profiles (strategies.random_profiles), as
many fact dicts drawn straight from the fact catalogue (combinations no profile
produces), every fixture and case profile with the counterfactual variants of
the unknown-fact analysis, and a hypothesis run that shrinks any mismatch.
``CDS_HYPOTHESIS_PROFILE=long`` (or ``CDS_DIFFERENTIAL_N=...``) runs many more.
"""

from __future__ import annotations

from conftest import PROFILES, case_names, load_case
from hypothesis import given
from strategies import DIFFERENTIAL_N, SETTINGS, profiles, random_fact_dicts, random_profiles

from cds.engine.reference import fired_rules, holds
from cds.knowledge.fixtures import fixture_profile
from cds.knowledge.ruleset import parse_condition
from cds.model.facts import derive, engine_facts


def mismatches(evaluator, fact_dicts: list[dict], batch: int = 1) -> list[str]:
    """One line per fact dict on which engine and reference disagree."""
    ruleset = evaluator.ruleset
    engine: list[frozenset[str]] = []
    for start in range(0, len(fact_dicts), batch):
        engine += evaluator.engine.run(fact_dicts[start : start + batch])
    out = []
    for facts, fired in zip(fact_dicts, engine):
        expected = fired_rules(ruleset, facts)
        if fired != expected:
            rules = sorted(fired ^ expected)
            used = sorted({f for r in rules for f in ruleset.rule(r).facts_used()})
            shown = {f: facts.get(f, "<unknown>") for f in used}
            out.append(f"engine only: {sorted(fired - expected)}, reference only: {sorted(expected - fired)}; facts: {shown}")
    return out


def _facts_of(evaluator, data: dict) -> dict:
    return engine_facts(derive(evaluator.parse(data), evaluator.vocabulary))


def test_engine_matches_reference_on_random_profiles(evaluator):
    dicts = [_facts_of(evaluator, p) for p in random_profiles(DIFFERENTIAL_N)]
    half = len(dicts) // 2
    # one fact per session (as `fired_rules` runs it) and many per session (as `evaluate` runs variants)
    bad = mismatches(evaluator, dicts[:half], batch=1) + mismatches(evaluator, dicts[half:], batch=64)
    assert not bad, f"{len(bad)} of {len(dicts)} profiles differ; first: " + "\n".join(bad[:5])


def test_engine_matches_reference_on_random_fact_dicts(evaluator):
    dicts = random_fact_dicts(DIFFERENTIAL_N)
    bad = mismatches(evaluator, dicts, batch=32)
    assert not bad, f"{len(bad)} of {len(dicts)} fact dicts differ; first: " + "\n".join(bad[:5])


def test_engine_matches_reference_on_every_fixture_case_and_variant(evaluator):
    datas = [load_case(name) for name in case_names()]
    for rule in evaluator.ruleset.rules:
        for spec in (*rule.fixtures.fires, *rule.fixtures.silent):
            try:
                datas.append(fixture_profile(spec, PROFILES))
            except (OSError, ValueError, IndexError, KeyError):
                continue  # a broken fixture is reported by `cds rules check` and test_rule_fixtures
    dicts = []
    for data in datas:
        try:
            profile = evaluator.parse(data)
        except Exception:  # noqa: BLE001 - same as above
            continue
        facts = derive(profile, evaluator.vocabulary)
        base = engine_facts(facts)
        dicts.append(base)
        dicts += [{**base, **dict(v.assignment)} for v in evaluator.planner.variants(facts)]
    assert len(dicts) >= len(case_names())
    bad = mismatches(evaluator, dicts, batch=16)
    assert not bad, f"{len(bad)} of {len(dicts)} fixture/case fact sets differ; first: " + "\n".join(bad[:5])


@SETTINGS
@given(profile=profiles())
def test_engine_matches_reference_hypothesis(evaluator, profile):
    assert mismatches(evaluator, [_facts_of(evaluator, profile)]) == []


def test_reference_semantics():
    c = lambda text: parse_condition(text, "when")  # noqa: E731
    assert holds(c("ecog >= 3"), {"ecog": 3}) and not holds(c("ecog >= 3"), {"ecog": 2})
    assert not holds(c("frailty == frail"), {}) and not holds(c("frailty != frail"), {})
    assert holds(c("frailty != frail"), {"frailty": "fit"})
    assert holds(c("frailty is unknown"), {}) and not holds(c("frailty is known"), {})
    assert holds(c("frailty in [fit, frail]"), {"frailty": "fit"}) and not holds(c("frailty in [fit, frail]"), {})
    assert not holds(c("dialysis == true"), {"dialysis": 1}), "a number is not a boolean"
    assert not holds(c("crp_mg_l < 50"), {"crp_mg_l": "40"}), "a string is not a number"
    assert holds(c({"any": ["ecog >= 3", "frailty == frail"]}), {"ecog": 1, "frailty": "frail"})
    assert not holds(c({"all": ["ecog >= 3", "frailty == frail"]}), {"ecog": 4})
    assert holds(None, {})
