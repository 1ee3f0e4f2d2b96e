"""durable-rules capacity (issue 9): the model of `cds.engine.capacity` against the real C core, and the shards.

- the model's numbers against what durable-rules 2.0.28 does at its limits (tests/durable_probe.py,
  in a subprocess: at 65 pending alpha nodes error 303, at 64 none; the largest safe tables work);
- the shard plan of the real rules: every shard within every bound, all rules placed once, in plan order
  (each scope's rules in one shard, so that a counterfactual variant is one fact to match);
- a folder built to overflow one ruleset: unsharded, every evaluation is error 303 reported as an
  EngineError (shard, patient, code), never a crash; sharded, it evaluates like the reference;
- a rule too large even alone fails `cds rules check` and the engine refuses it.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from conftest import PROFILES, RULES, case_names, load_case
from strategies import random_profiles

import cds
from cds.api import Evaluator, load_ruleset
from cds.engine import capacity
from cds.engine.compile import BOOKKEEPING, property_names, rule_scopes
from cds.engine.durable import Engine, plan_order, plan_rules
from cds.engine.reference import fired_rules
from cds.errors import EngineError, RuleSetError
from cds.model.facts import FACTS, derive, engine_facts

HERE = Path(__file__).resolve().parent


# --------------------------------------------------------------------------- the model against the C core


@pytest.fixture(scope="module")
def probes() -> dict[str, dict]:
    out = subprocess.run([sys.executable, str(HERE / "durable_probe.py")], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, f"the probe died ({out.returncode}): {out.stderr[-2000:]}"
    return {p["name"]: p for p in map(json.loads, out.stdout.splitlines())}


def _model(definition: dict) -> capacity.Network:
    net = capacity.Network()
    for rule in definition.values():
        net.add(rule)
    return net


def test_error_303_comes_exactly_past_64_pending_nodes_as_the_model_counts_them(probes):
    expected = {"star of tests": 0, "star of $or": 0, "two levels": 0}
    for name, p in probes.items():
        kind = name.rsplit(" ", 1)[0]
        if kind not in expected:
            continue
        pending = _model(p["definition"]).pending()
        size = name.rsplit(" ", 1)[1]  # "65", or "10x55": 10 nodes, the first of which has 55 true children
        k, _, m = size.partition("x")
        n = int(k) - 1 + int(m) if m else int(k)
        assert pending == n, f"{name}: the model counts {pending} pending, the construction has {n}"
        assert p["result"] == ("ok" if pending <= capacity.STACK_SIZE else "303"), (name, p["result"])
        expected[kind] += 1
    assert all(v == 2 for v in expected.values()), expected  # both sides of the limit, for each shape


def test_equality_tests_on_one_property_cost_one_pending_node(probes):
    for name, p in probes.items():
        if name.startswith("200 equalities"):
            net = _model(p["definition"])
            assert net.pending() <= 2, name
            assert p["result"] == "ok" and len(p["fired"]) <= 2, (name, p["fired"])  # the match (if any) and the sentinel


def test_the_largest_tables_the_model_allows_work_and_one_more_is_refused(probes):
    for name, limit, field, fires in (
        ("127 $nex children", capacity.NEXT_LIST, "next_list", "r5"),
        ("255 rules at one node", capacity.BETA_LIST, "beta_list", "other"),
        ("511 tests under one node", capacity.HASH_SET, "hash_set", "r510"),
    ):
        p = probes[name]
        net = _model(p["definition"])
        assert getattr(net.tables(), field) == limit, name
        assert not [x for x in net.problems(bound=capacity.STACK_SIZE) if "alpha nodes could be pending" not in x]
        assert p["result"] == "ok", (name, p["result"])
        assert p["fired"] == [fires, "sentinel"], (name, p["fired"])
        # one more entry in that table: the model refuses it (the engine would crash, hang or misfire)
        more = dict(p["definition"])
        more["one_more"] = {"$nex": {"q_extra": 1}} if field == "next_list" else {"a": 1} if field == "beta_list" else {"v": -1}
        more["one_more"] = {"all": [{"m": {"$and": [{"t": "x"}, more["one_more"]]}}]}
        assert getattr(_model(more).tables(), field) == limit + 1
        assert any("durable-rules holds" in x for x in _model(more).problems(bound=10**6)), name
    assert probes["15 groups"]["result"] == "ok" and probes["16 groups"]["result"] == "113"
    assert _model(probes["15 groups"]["definition"]).tables().sequence == 30
    assert _model(probes["16 groups"]["definition"]).tables().sequence == 32 > capacity.SEQUENCE


def test_property_hash_is_durable_rules_fnv1a():
    # rete.c:10-11: the C core's precomputed hashes of "all" and "any"
    assert capacity.fnv1a("all") == 321211332 and capacity.fnv1a("any") == 740945997
    names = [*FACTS, *BOOKKEEPING, *capacity.RESERVED]
    assert len({capacity.fnv1a(n) for n in names}) == len(set(names)), "two property names share a hash"
    # the short names the facts are compiled and asserted under: one per fact, none a bookkeeping or
    # reserved name, all hashing apart from each other and from those
    short = property_names(FACTS)
    assert sorted(short) == sorted(FACTS) and all(0 < len(n) <= 2 for n in short.values())
    used = {*short.values(), *BOOKKEEPING, *capacity.RESERVED}
    assert len({capacity.fnv1a(n) for n in used}) == len(used)


# --------------------------------------------------------------------------- the plan of the real rules


def test_real_rules_need_shards_and_each_shard_is_within_every_bound(ruleset):
    plan, definitions = plan_rules(ruleset.rules)
    whole = capacity.Network()
    for d in definitions.values():
        whole.add(d)
    assert whole.pending() > capacity.MAX_PENDING, "the rules would fit one ruleset: this test no longer tests sharding"
    assert not plan.problems
    assert [r for s in plan.shards for r in s.rule_ids] == [r.id for r in plan_order(ruleset.rules)]  # each once, in order
    for shard in plan.shards:
        assert shard.pending <= capacity.MAX_PENDING
        t = shard.tables
        assert t.hash_set <= capacity.HASH_SET and t.next_list <= capacity.NEXT_LIST and t.beta_list <= capacity.BETA_LIST
        assert t.sequence <= capacity.SEQUENCE and t.actions <= capacity.ACTIONS and t.properties <= capacity.FACT_PROPERTIES
    assert len(plan.shards) >= 2 and "rules in" in plan.summary()


# --------------------------------------------------------------------------- a folder built to overflow one ruleset


def _family(code: str, rules: list[dict]) -> dict:
    return {
        "family": code.lower(),
        "code": code,
        "description": "Generated for tests/test_capacity.py.",
        "last_reviewed": "2026-01-01",
        "rules": rules,
    }


def _rule(rule_id: str, when: object) -> dict:
    return {
        "id": rule_id,
        "title": "Generated capacity test rule",
        "kind": "caution",
        "options": ["bcma_car_t"],
        "when": when,
        "rationale": "Generated to test the engine's capacity.",
        "cites": ["STMT.S002.CART-LOGISTICS"],
    }


@pytest.fixture(scope="module")
def overflow_folder(tmp_path_factory) -> Path:
    """The real rules plus 78 distinct tests on `age` that hold for every patient (age is 18-120)."""
    folder = tmp_path_factory.mktemp("overflow") / "rules"
    shutil.copytree(RULES, folder)
    conditions = [f"age > {i}" for i in range(18)] + [f"age < {121 + i}" for i in range(60)]
    rules = [_rule(f"OVFL-AGE-{i:03d}", c) for i, c in enumerate(conditions)]
    (folder / "overflow.yaml").write_text(yaml.safe_dump(_family("OVFL", rules), sort_keys=False))
    return folder


def _facts(evaluator, n: int) -> list[tuple[str, dict]]:
    datas = [load_case(name) for name in case_names()] + random_profiles(n, seed=91)
    out = []
    for data in datas:
        profile = evaluator.parse(data)
        out.append((profile.patient_id, engine_facts(derive(profile, evaluator.vocabulary))))
    return out


def test_overflowing_folder_unsharded_is_error_303_never_a_crash(overflow_folder):
    ruleset = load_ruleset(overflow_folder)
    engine = Engine(ruleset, max_pending=10**6)  # one ruleset, as before sharding
    assert engine.shard_count == 1 and engine.plan.shards[0].pending > capacity.STACK_SIZE
    evaluator = Evaluator(ruleset=ruleset, analyze_unknowns=False)
    for patient, facts in _facts(evaluator, 20):
        with pytest.raises(EngineError) as err:
            engine.run([facts], patient=patient)
        text = str(err.value)
        assert "ruleset 1 of 1" in text and f"patient {patient}" in text and "error code 303" in text, text
    # the process is alive and the same engine still answers a fact that overflows nothing (no age)
    assert engine.run([{}])[0] == fired_rules(ruleset, {})


def test_overflowing_folder_is_split_and_evaluates_like_the_reference(overflow_folder):
    evaluator = Evaluator(overflow_folder)
    engine = evaluator.engine
    assert engine.shard_count >= 3
    assert all(s.pending <= capacity.MAX_PENDING for s in engine.plan.shards)
    pairs = _facts(evaluator, 300)
    fired = engine.run([f for _, f in pairs])
    for (patient, facts), got in zip(pairs, fired):
        assert got == fired_rules(evaluator.ruleset, facts), patient
        assert {f"OVFL-AGE-{i:03d}" for i in range(78)} <= got
    for name in case_names():  # the whole pipeline, with the unknown-fact analysis
        evaluation = evaluator.evaluate(evaluator.parse(load_case(name)))
        assert evaluation.fired >= {"OVFL-AGE-000"}


def test_a_rule_too_large_for_any_ruleset_fails_the_check_and_the_engine(tmp_path):
    folder = tmp_path / "rules"
    shutil.copytree(RULES, folder)
    flags = [name for name, spec in FACTS.items() if spec.type == "bool"][: capacity.MAX_PENDING + 1]
    big = _rule("HUGE-ANY-001", {"any": [f"{f} == true" for f in flags]})
    (folder / "huge.yaml").write_text(yaml.safe_dump(_family("HUGE", [big]), sort_keys=False))
    report = cds.check_rules(folder, PROFILES, run_fixtures=False)
    lines = [p for p in report.problems if "[HUGE-ANY-001]" in p and "too large for one durable-rules ruleset" in p]
    assert lines and lines[0].startswith("huge.yaml [HUGE-ANY-001] when:") and "alpha nodes could be pending" in lines[0]
    with pytest.raises(RuleSetError) as err:
        Evaluator(folder)
    assert lines[0] in err.value.problems


def test_a_plan_made_before_comes_from_the_cache_and_equals_a_fresh_one(ruleset, tmp_path, monkeypatch):
    monkeypatch.setenv("CDS_CACHE_DIR", str(tmp_path / "cache"))
    made = []
    real = capacity.plan
    monkeypatch.setattr(capacity, "plan", lambda *a, **k: made.append(a[-1] if len(a) > 3 else None) or real(*a, **k))
    first, definitions = plan_rules(ruleset.rules)
    again, same_definitions = plan_rules(ruleset.rules)
    assert len(made) == 1 and again == first and again is not first and same_definitions == definitions
    assert plan_rules(ruleset.rules, max_pending=capacity.MAX_PENDING - 4)[0] != first  # another bound: planned again
    plan_rules(ruleset.rules[:-1])  # other definitions: planned again
    assert len(made) == 3
    (tmp_path / "cache" / "shard-plan").chmod(0o777)  # a folder others could write: not used
    plan_rules(ruleset.rules)
    assert len(made) == 4


def test_plan_order_groups_the_scoped_rules_so_each_variant_is_matched_in_one_shard(ruleset):
    order = plan_order(ruleset.rules)
    assert sorted(r.id for r in order) == sorted(r.id for r in ruleset.rules)
    scoped = [bool(rule_scopes(r)) for r in order]
    assert scoped == sorted(scoped, reverse=True), "the scoped rules first"
    assert [r.id for r in order if not rule_scopes(r)] == [r.id for r in ruleset.rules if not rule_scopes(r)]
    engine = Engine(ruleset)
    for scope in {s for r in ruleset.rules for s in rule_scopes(r)}:
        holding = [s.number for s in engine._shards if scope in s.scope_facts]
        assert len(holding) == 1, f"{scope}: its rules are in shards {holding}"
