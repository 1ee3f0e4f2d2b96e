"""How the engine's cost grows with the rule base (issue 9; see README, "Benchmark").

    python bench/rules_scale.py                 # 1x, 4x and 10x rule folders, 1,000 profiles, 7 rounds
    python bench/rules_scale.py --profiles 300 --rounds 3 --factors 1 4

The folders are the real rules grown k-fold by tests/rule_folders.py (every family copied under
new codes and IDs, every second copy with shifted thresholds). For each, the engine step alone
(facts already derived from generated profiles, bench/profiles.py) is timed two ways:

- one fact per profile: ``Engine.run([facts])`` (``cds evaluate`` without the unknown-fact analysis);
- the patient plus its counterfactual variants, as ``Evaluator.evaluate`` runs them.

It prints per-profile cost, cost per rule per fact, and the growth from 1x against the growth of the
rule count (target: about linear, never more: at most 1.15x the rule ratio). The factors are timed
in interleaved rounds and each figure is the median over rounds, so that a change in the machine's
load hits every factor alike (these machines are shared); times are CPU time of this process
(`time.process_time`), which waiting for a core does not inflate.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))
sys.path.insert(0, str(ROOT / "tests"))

from profiles import generate  # noqa: E402
from rule_folders import grow  # noqa: E402

LINEAR_SLACK = 1.15  # growth may exceed the rule ratio by this much and still count as linear


def _workload(evaluator, profiles):
    from cds.model.facts import REFRACTORY_FIELD, derive, engine_facts

    single, full, facts_asserted = [], [], 0
    for p in profiles:
        profile = evaluator.parse(p)
        facts = derive(profile, evaluator.vocabulary)
        base = engine_facts(facts)
        variants = evaluator.planner.variants(facts, profile)
        scoped = [(v.field, dict(v.assignment)) for v in variants if v.field != REFRACTORY_FIELD]
        whole = [{**base, **dict(v.assignment)} for v in variants if v.field == REFRACTORY_FIELD]
        single.append(base)
        full.append((p.get("patient_id"), base, scoped, whole))
        facts_asserted += 1 + len(variants)
    return single, full, facts_asserted


def _time_single(engine, facts) -> float:
    t = time.process_time()
    for f in facts:
        engine.run([f])
    return time.process_time() - t


def _time_full(engine, work) -> float:
    t = time.process_time()
    for patient, base, scoped, whole in work:
        engine.run_counterfactuals(base, scoped, patient=patient)
        if whole:
            engine.run(whole, patient=patient)
    return time.process_time() - t


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--profiles", type=int, default=1000)
    ap.add_argument("--rounds", type=int, default=7)
    ap.add_argument("--factors", type=int, nargs="+", default=[1, 4, 10])
    args = ap.parse_args()
    if 1 not in args.factors:
        raise SystemExit("rules_scale: --factors must include 1 (the growth is measured from it)")

    from cds.decide.pipeline import Evaluator

    load = os.getloadavg()[0]
    print(f"cds rule-base scaling: Python {sys.version.split()[0]}, {os.cpu_count()} CPU core(s), load average {load:.2f}")
    profiles = list(generate(args.profiles, seed=3))
    cases = {}
    with tempfile.TemporaryDirectory(prefix="cds-scale-") as tmp:
        for k in sorted(args.factors):
            evaluator = Evaluator(grow(Path(tmp) / f"rules{k}", k), analyze_unknowns=True)
            single, full, asserted = _workload(evaluator, profiles)
            _time_single(evaluator.engine, single[:100])  # warm
            _time_full(evaluator.engine, full[:100])
            cases[k] = {"ev": evaluator, "single": single, "full": full, "asserted": asserted, "t1": [], "tf": []}
        for _ in range(args.rounds):
            for c in cases.values():
                c["t1"].append(_time_single(c["ev"].engine, c["single"]))
                c["tf"].append(_time_full(c["ev"].engine, c["full"]))

    n = len(profiles)
    base = cases[1]
    r1 = len(base["ev"].ruleset.rules)
    b1, bf = statistics.median(base["t1"]) / n, statistics.median(base["tf"]) / n
    print(f"{n:,} generated profiles, {args.rounds} interleaved rounds, median per profile")
    print(
        "  rules  shards   one fact/profile   per rule per fact   with variants (facts/profile)   per rule per fact   growth vs 1x (rules)"
    )
    worst = 0.0
    for k, c in cases.items():
        rules = len(c["ev"].ruleset.rules)
        one = statistics.median(c["t1"]) / n
        full = statistics.median(c["tf"]) / n
        per_fact = c["asserted"] / n
        growth1, growthf, ratio = one / b1, full / bf, rules / r1
        if k != 1:
            worst = max(worst, growth1 / ratio, growthf / ratio)
        print(
            f"  {rules:5d}  {c['ev'].engine.shard_count:6d}   {one * 1e6:10.0f} us   {one / rules * 1e6:12.2f} us"
            f"        {full * 1e6:10.0f} us ({per_fact:4.1f})       {full / rules / per_fact * 1e6:12.2f} us"
            f"        {growth1:5.2f}x / {growthf:5.2f}x ({ratio:.1f}x)"
        )
    verdict = "met" if worst <= LINEAR_SLACK else "MISSED"
    print(f"  growth against the rule count: at most {worst:.2f}x linear (target <= {LINEAR_SLACK}x: about linear): {verdict}")


if __name__ == "__main__":
    main()
