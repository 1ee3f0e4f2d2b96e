"""Differential testing: the durable-rules engine against the pure-Python reference interpreter.

Both get the same flat fact dicts; the set of fired rules must be identical. The reference reads
the rule files itself (cds/engine/reference.py), so a bug anywhere on the engine's path, from
reading the YAML to compiling the patterns, is a difference too (the YAML 1.1 trap test shows one).
Inputs: thousands of random valid profiles (strategies.random_profiles), as
many fact dicts drawn straight from the fact catalogue (combinations no profile
produces), every fixture and case profile with the counterfactual variants of
the unknown-fact analysis, and a hypothesis run that shrinks any mismatch.
``CDS_HYPOTHESIS_PROFILE=long`` (or ``CDS_DIFFERENTIAL_N=...``) runs many more.
"""

from __future__ import annotations

import shutil

import pytest
import yaml
from conftest import RULES, case_names, load_case
from hypothesis import given
from strategies import DIFFERENTIAL_N, SETTINGS, profiles, random_fact_dicts, random_profiles

from cds.api import Evaluator
from cds.engine.reference import fired_rules, for_ruleset, holds
from cds.knowledge.fixtures import base_folder, fixture_profile
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


def test_engine_matches_reference_on_every_fixture_case_and_variant(evaluator, rules_with_fixtures):
    datas = [load_case(name) for name in case_names()]
    for rule in rules_with_fixtures:
        for spec in (*rule.fixtures.fires, *rule.fixtures.silent):
            try:
                datas.append(fixture_profile(spec, base_folder(RULES)))
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


def test_reference_reads_the_same_rules(evaluator):
    """The reference's own reading of the folder finds exactly the active rules the loader found."""
    assert for_ruleset(evaluator.ruleset).rule_ids == {r.id for r in evaluator.ruleset.rules}


def test_reference_semantics():
    assert holds("ecog >= 3", {"ecog": 3}) and not holds("ecog >= 3", {"ecog": 2})
    assert not holds("frailty == frail", {}) and not holds("frailty != frail", {})
    assert holds("frailty != frail", {"frailty": "fit"})
    assert holds("frailty is unknown", {}) and not holds("frailty is known", {})
    assert holds("frailty in [fit, frail]", {"frailty": "fit"}) and not holds("frailty in [fit, frail]", {})
    assert not holds("dialysis == true", {"dialysis": 1}), "a number is not a boolean"
    assert not holds("crp_mg_l < 50", {"crp_mg_l": "40"}), "a string is not a number"
    assert holds({"any": ["ecog >= 3", "frailty == frail"]}, {"ecog": 1, "frailty": "frail"})
    assert not holds({"all": ["ecog >= 3", "frailty == frail"]}, {"ecog": 4})
    assert holds("crp_mg_l >= $high_crp_mg_l", {"crp_mg_l": 50}, {"high_crp_mg_l": 50})
    assert holds(None, {})
    # YAML 1.2 (JSON schema) literals: YAML 1.1's implicit booleans and integers are plain words here
    for word in ("off", "no", "0x1", "010", "1_0", "1:30"):
        assert not holds(f"dialysis == {word}", {"dialysis": False}) and not holds(f"ecog == {word}", {"ecog": 1})
        assert holds(f"frailty == {word}", {"frailty": word})
    assert holds("ecog == 1", {"ecog": 1}) and holds("crp_mg_l < 1.0e2", {"crp_mg_l": 99.5})


# --------------------------------------------------------------------------- a parser bug is caught

# Conditions the engine's path reads by YAML 1.1 (PyYAML's safe loader: `off` is false, `0x1` is 1,
# `010` is 8) and the reference by YAML 1.2's JSON schema (three words). The validator refuses such
# literals (tests/test_rules_cli.py), so the engine here loads what YAML 1.1 makes of them and the
# reference then reads the text as written: the mismatch a parser bug would make, which the
# differential test must notice.
_TRAPS = {"TRAP-OFF-001": "dialysis == off", "TRAP-HEX-001": "ecog == 0x1", "TRAP-OCT-001": "prior_line_count == 010"}
_AS_YAML_1_1 = {"TRAP-OFF-001": "dialysis == false", "TRAP-HEX-001": "ecog == 1", "TRAP-OCT-001": "prior_line_count == 8"}


def _trap_family(conditions: dict[str, str]) -> str:
    rules = [
        {
            "id": rule_id,
            "title": "A condition YAML 1.1 reads differently",
            "kind": "caution",
            "options": ["bcma_car_t"],
            "when": when,
            "rationale": "Generated for tests/test_differential.py.",
            "cites": ["STMT.S002.CART-LOGISTICS"],
        }
        for rule_id, when in conditions.items()
    ]
    family = {
        "family": "trap",
        "code": "TRAP",
        "description": "Generated for tests/test_differential.py.",
        "last_reviewed": "2026-01-01",
        "rules": rules,
    }
    return yaml.safe_dump(family, sort_keys=False)


def test_a_yaml_1_1_reading_of_a_condition_is_caught(tmp_path):
    from cds.errors import RuleSetError

    folder = tmp_path / "rules"
    shutil.copytree(RULES, folder)
    (folder / "trap.yaml").write_text(_trap_family(_TRAPS), encoding="utf-8")
    with pytest.raises(RuleSetError) as raised:
        Evaluator(folder, analyze_unknowns=False)
    assert sum("YAML 1.1" in p for p in raised.value.problems) == 3, raised.value.problems
    (folder / "trap.yaml").write_text(_trap_family(_AS_YAML_1_1), encoding="utf-8")
    evaluator = Evaluator(folder, analyze_unknowns=False)
    assert {r.id: r.condition.value for r in evaluator.ruleset.rules if r.id in _TRAPS} == {
        "TRAP-OFF-001": False,
        "TRAP-HEX-001": 1,
        "TRAP-OCT-001": 8,
    }
    (folder / "trap.yaml").write_text(_trap_family(_TRAPS), encoding="utf-8")  # the reference reads the text
    dicts = [_facts_of(evaluator, p) for p in random_profiles(300, seed=5)]
    dicts += [{**dicts[0], "dialysis": False, "ecog": 1, "prior_line_count": 8}]
    bad = mismatches(evaluator, dicts, batch=16)
    assert bad, "the differential test did not notice conditions read by YAML 1.1"
    assert all("engine only: [" in line and "reference only: []" in line for line in bad), bad[:3]
    caught = {r for line in bad for r in _TRAPS if r in line}
    assert caught == set(_TRAPS), caught


def test_the_whole_pipeline_decides_the_same_on_the_reference_matcher(evaluator):
    """Evaluator(matcher=...) takes any cds.engine.matcher.Matcher: on the reference interpreter every
    case gets the same fired rules, ranking, exclusions and unknown-fact analysis as on durable-rules."""
    on_reference = Evaluator(ruleset=evaluator.ruleset, matcher=for_ruleset)
    assert type(on_reference.engine).__name__ == "Reference"
    for name in case_names():
        profile = evaluator.parse(load_case(name))
        a, b = evaluator.evaluate(profile), on_reference.evaluate(profile)
        assert (a.fired, a.decision, a.unknown_facts, a.unknown_without_effect) == (
            b.fired,
            b.decision,
            b.unknown_facts,
            b.unknown_without_effect,
        ), name
