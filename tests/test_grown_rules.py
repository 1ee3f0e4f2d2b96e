"""The rule base grown 4x (default suite) and 10x (``CDS_HYPOTHESIS_PROFILE=long``) (issue 9).

`rule_folders.grow` copies every family under a new family code and new rule IDs, every second
copy with its thresholds shifted so that its conditions differ. On such a folder:

- ``cds rules check --rules DIR`` passes (every fixture of every copy run through the real engine)
  and says how many rulesets hold the rules;
- ``cds batch`` evaluates every example profile (exit 0, no invalid record), ``cds evaluate``
  one (10x: every one);
- every example profile and 2,000 generated profiles evaluate through the real engine without
  error, and the engine fires exactly what the reference interpreter fires (the differential
  test), on the same number of rules in every copy; an unshifted copy fires like the original.

The 10x folder takes about a minute on a loaded 2-core machine, so it runs in the long profile;
``python tests/rule_folders.py DIR 10 && cds rules check --rules DIR`` does it by hand.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
from conftest import PROFILES, case_names, load_case
from rule_folders import copy_codes, grow
from strategies import LONG, random_fact_dicts, random_profiles
from test_differential import mismatches

import schemas
from cds.api import Evaluator
from cds.engine import capacity
from cds.engine.reference import for_ruleset
from cds.model.facts import derive, engine_facts

FACTORS = (4, 10) if LONG else (4,)
GENERATED = 2000
_CLI = [sys.executable, "-m", "cds"]
_TIMEOUT = 1800  # bounds a hang only: the 10x check takes a minute at load 7, many more at load 30


@pytest.fixture(scope="module", params=FACTORS, ids=lambda k: f"{k}x")
def grown(request, tmp_path_factory, ruleset):
    factor = request.param
    folder = grow(tmp_path_factory.mktemp(f"grown{factor}") / "rules", factor)
    evaluator = Evaluator(folder)
    assert len(evaluator.ruleset.rules) == factor * len(ruleset.rules)
    return factor, folder, evaluator


def _run(args: list[str]) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "CDS_CACHE_DIR": "off"}
    return subprocess.run([*_CLI, *args], capture_output=True, text=True, timeout=_TIMEOUT, env=env)


def test_grown_folder_passes_the_rule_check(grown):
    factor, folder, evaluator = grown
    out = _run(["rules", "check", "--rules", str(folder)])
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    shards = evaluator.engine.shard_count
    rules = len(evaluator.ruleset.rules)
    line = f"durable-rules capacity: {rules} rules in {shards} ruleset(s)"
    assert line in out.stdout + out.stderr, out.stderr[-2000:]
    assert shards >= factor  # one ruleset could not hold them (the issue: 4x was error 107 before sharding)
    assert all(s.pending <= capacity.MAX_PENDING for s in evaluator.engine.plan.shards)


def test_cli_evaluates_every_example_on_the_grown_folder(grown, tmp_path):
    factor, folder, _ = grown
    out = _run(["batch", str(PROFILES), "--rules", str(folder), "-j", "1", "-q", "--timestamp", "2026-01-01T00:00:00Z"])
    assert out.returncode == 0, out.stderr[-3000:]
    schemas.validate_jsonl(schemas.BATCH_RESULT, out.stdout)  # a subprocess's output: not seen by conftest's check
    records = [json.loads(line) for line in out.stdout.splitlines()]
    assert len(records) == len(case_names())
    assert {r["status"] for r in records} == {"evaluated"}, [r for r in records if r["status"] != "evaluated"][:2]
    for name in case_names() if factor >= 10 else case_names()[:1]:
        out = _run(["evaluate", str(PROFILES / f"{name}.json"), "--rules", str(folder), "--format", "json"])
        assert out.returncode == 0, (name, out.stderr[-2000:])
        assert schemas.validate(schemas.REPORT, json.loads(out.stdout))["patient_id"]


def _copies(rule_id: str, codes: dict[str, list[str]]) -> list[str]:
    """The IDs of `rule_id`'s unshifted copies (copies 2, 4, ...; `codes` from rule_folders.copy_codes)."""
    code, rest = rule_id.split("-", 1)
    return [f"{new}-{rest}" for copy, new in enumerate(codes[code], 1) if copy % 2 == 0]


def test_every_example_evaluates_and_unshifted_copies_fire_like_the_originals(grown, evaluator):
    factor, _, big = grown
    codes = copy_codes(factor)
    for name in case_names():
        data = load_case(name)
        got = big.evaluate(big.parse(data))  # the whole pipeline, with the unknown-fact analysis
        base = evaluator.evaluate(evaluator.parse(data))
        assert base.fired <= got.fired, name
        for rule_id in base.fired:
            assert set(_copies(rule_id, codes)) <= got.fired, (name, rule_id)
        originals = {r.id for r in evaluator.ruleset.rules}
        for rule_id in {r.id for r in evaluator.ruleset.rules} - base.fired:
            assert not set(_copies(rule_id, codes)) & got.fired, (name, rule_id)
        assert originals & got.fired == base.fired


def test_generated_profiles_evaluate_through_the_engine_like_the_reference(grown):
    factor, _, big = grown
    assert for_ruleset(big.ruleset).rule_ids == {r.id for r in big.ruleset.rules}
    dicts = [engine_facts(derive(big.parse(p), big.vocabulary)) for p in random_profiles(GENERATED, seed=99)]
    bad = mismatches(big, dicts, batch=32)
    assert not bad, f"{len(bad)} of {len(dicts)} profiles differ on the {factor}x folder; first: " + "\n".join(bad[:3])
    # the whole pipeline on some of them: no error, and the rules fired are the engine's
    for data in random_profiles(100, seed=98):
        evaluation = big.evaluate(big.parse(data))
        assert evaluation.fired == for_ruleset(big.ruleset).fired(engine_facts(derive(big.parse(data), big.vocabulary)))


def test_random_fact_dicts_on_the_grown_folder(grown):
    factor, _, big = grown
    dicts = random_fact_dicts(GENERATED // 2, seed=97)  # combinations no profile produces
    bad = mismatches(big, dicts, batch=32)
    assert not bad, f"{len(bad)} of {len(dicts)} fact dicts differ on the {factor}x folder; first: " + "\n".join(bad[:3])
