"""`cds batch` and `cds diff-rules` (cohort mode), and the engine's scoped counterfactual runs."""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
import sys

import pytest
from conftest import PROFILES, ROOT, RULES, case_names, load_case
from rule_folders import with_weight
from typer.testing import CliRunner

from cds.apps.cli import app
from cds.model.facts import derive, engine_facts

runner = CliRunner()


def _bench_profiles():
    spec = importlib.util.spec_from_file_location("bench_profiles", ROOT / "bench" / "profiles.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)  # type: ignore[union-attr]
    return mod


def batch(*args: str):
    return runner.invoke(app, ["batch", *args, "--rules", str(RULES), "--timestamp", "2026-01-01T00:00:00Z"])


def evaluate_message(tmp_path, text: str) -> str:
    """What `cds evaluate` prints for this profile text (without the leading 'error: ')."""
    path = tmp_path / "one.json"
    path.write_text(text, encoding="utf-8")
    result = runner.invoke(app, ["evaluate", str(path), "--rules", str(RULES), "--format", "json"])
    assert result.exit_code == 2, result.output
    lines = result.output.splitlines()
    (start,) = [i for i, ln in enumerate(lines) if ln.startswith("error: ")]
    message = [lines[start].removeprefix("error: ")]
    message += [ln for ln in lines[start + 1 :] if ln.startswith("  ")]  # every problem, one per line
    return "\n".join(message)


def lines_of(path) -> list[dict]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


def mixed_input() -> list[str]:
    good = [json.dumps(load_case(n)) for n in case_names()[:3]]
    age_text = load_case(case_names()[0])
    age_text["age"] = "40"
    drug = load_case(case_names()[1])
    drug["prior_lines"][0]["agents"].append("aspirinx")
    return [
        good[0],
        "{not json",
        good[1],
        "",  # a blank line is a record too
        json.dumps(age_text),
        json.dumps(drug),
        "[1, 2]",
        good[2],
    ]


@pytest.mark.parametrize("jobs", ["1", "2"])
def test_jsonl_one_line_per_record_in_order_with_evaluate_messages(tmp_path, jobs):
    records = mixed_input()
    src = tmp_path / "cohort.jsonl"
    src.write_text("\n".join(records) + "\n", encoding="utf-8")
    out = tmp_path / "results.jsonl"
    result = batch(str(src), "--output", str(out), "--jobs", jobs)
    assert result.exit_code == 1, result.output
    rows = lines_of(out)
    assert [r["line"] for r in rows] == list(range(1, len(records) + 1))
    for text, row in zip(records, rows):
        if row["status"] == "evaluated":
            assert row["patient_id"] == json.loads(text)["patient_id"]
            continue
        assert row["status"] == "invalid"
        if text.strip():
            # the same message as `cds evaluate`, except that a JSONL record is a line, not a file
            assert row["error"] == evaluate_message(tmp_path, text).replace("(file): ", "(line): ")
            assert "(file)" not in row["error"]
        else:
            assert "blank line" in row["error"]
    assert [r["status"] for r in rows].count("evaluated") == 3
    assert "8 record(s): 3 evaluated, 5 invalid" in result.output


def test_compact_record_agrees_with_cds_evaluate_json(tmp_path):
    name = case_names()[0]
    src = tmp_path / "one.jsonl"
    src.write_text(json.dumps(load_case(name)) + "\n", encoding="utf-8")
    out = tmp_path / "r.jsonl"
    assert batch(str(src), "-o", str(out), "-j", "1").exit_code == 0
    (row,) = lines_of(out)
    full = runner.invoke(
        app,
        [
            "evaluate",
            str(PROFILES / f"{name}.json"),
            "--rules",
            str(RULES),
            "--format",
            "json",
            "--timestamp",
            "2026-01-01T00:00:00Z",
        ],
    )
    assert full.exit_code == 0
    report = json.loads(full.stdout)
    assert row["top_option"] == report["options"][0]["id"]
    assert [o["id"] for o in row["ranking"]] == [o["id"] for o in report["options"]]
    assert [o["score"] for o in row["ranking"]] == [o["score"] for o in report["options"]]
    assert [x["id"] for x in row["excluded"]] == [x["id"] for x in report["excluded"]]
    assert row["fired_rules"] == report["fired_rules"]
    assert [u["field"] for u in row["unknown_facts_that_matter"]] == [u["field"] for u in report["unknown_facts_that_matter"]]
    for key in ("input_hash", "ruleset_hash", "engine_version", "evaluated_at"):
        assert row[key] == report[key]


def test_folder_input_in_name_order(tmp_path):
    folder = tmp_path / "cases"
    folder.mkdir()
    names = case_names()[:4]
    for n in names:
        shutil.copy(PROFILES / f"{n}.json", folder / f"{n}.json")
    (folder / "zz_broken.json").write_text('{"patient_id": "X", "age": 200}', encoding="utf-8")
    (folder / "notes.txt").write_text("not a profile", encoding="utf-8")
    out = tmp_path / "r.jsonl"
    result = batch(str(folder), "-o", str(out), "-j", "2")
    assert result.exit_code == 1, result.output
    rows = lines_of(out)
    assert [r["file"] for r in rows] == [*sorted(f"{n}.json" for n in names), "zz_broken.json"]
    assert [r["status"] for r in rows] == ["evaluated"] * 4 + ["invalid"]
    broken = evaluate_message(tmp_path, (folder / "zz_broken.json").read_text(encoding="utf-8"))
    assert rows[-1]["error"] == broken


def test_summary_json_and_exit_0_when_all_valid(tmp_path):
    src = tmp_path / "cohort.jsonl"
    profiles = list(_bench_profiles().generate(300, seed=3))
    src.write_text("".join(json.dumps(p) + "\n" for p in profiles), encoding="utf-8")
    out, summary = tmp_path / "r.jsonl", tmp_path / "summary.json"
    result = batch(str(src), "-o", str(out), "--summary", str(summary), "-j", "2")
    assert result.exit_code == 0, result.output
    rows = lines_of(out)
    assert [r["patient_id"] for r in rows] == [p["patient_id"] for p in profiles]
    s = json.loads(summary.read_text(encoding="utf-8"))
    assert (s["records"], s["evaluated"], s["invalid"], s["errors"]) == (300, 300, 0, 0)
    dist = {d["option"]: d["patients"] for d in s["top_option_distribution"]}
    expected: dict = {}
    for r in rows:
        expected[r["top_option"]] = expected.get(r["top_option"], 0) + 1
    assert dist == expected
    assert s["invalid_records"] == []


def test_summary_lists_invalid_records(tmp_path):
    src = tmp_path / "c.jsonl"
    src.write_text(json.dumps(load_case(case_names()[0])) + "\n\n", encoding="utf-8")
    summary = tmp_path / "s.json"
    result = batch(str(src), "-o", str(tmp_path / "r.jsonl"), "--summary", str(summary), "-j", "1")
    assert result.exit_code == 1
    s = json.loads(summary.read_text(encoding="utf-8"))
    assert (s["records"], s["evaluated"], s["invalid"]) == (2, 1, 1)
    assert s["invalid_records"][0]["line"] == 2


def test_usage_errors_exit_2_and_write_nothing(tmp_path):
    missing = batch(str(tmp_path / "nope.jsonl"), "-o", str(tmp_path / "r.jsonl"))
    assert missing.exit_code == 2
    assert "no such file" in missing.output
    assert "Traceback" not in missing.output
    src = tmp_path / "c.jsonl"
    src.write_text(json.dumps(load_case(case_names()[0])) + "\n", encoding="utf-8")
    unwritable = batch(str(src), "-o", str(tmp_path / "no_such_dir" / "r.jsonl"))
    assert unwritable.exit_code == 2
    assert "does not exist" in unwritable.output
    is_dir = batch(str(src), "-o", str(tmp_path))
    assert is_dir.exit_code == 2
    assert not list(tmp_path.glob(".r.jsonl.*"))
    # a bad --summary after a good --output: both are checked before either is created
    out = tmp_path / "r.jsonl"
    for bad_summary in (str(tmp_path / "no_such_dir" / "s.json"), str(tmp_path), "", str(out)):
        result = batch(str(src), "-o", str(out), "--summary", bad_summary)
        assert result.exit_code == 2, (bad_summary, result.output)
        (line,) = result.output.splitlines()
        assert line.startswith("error: --summary"), line
        assert sorted(p.name for p in tmp_path.iterdir()) == ["c.jsonl"], bad_summary


def _copy_rules_with_weight(tmp_path, rule_id: str, weight: int):
    return with_weight(tmp_path / "new_rules", rule_id, weight)


def test_diff_rules_detects_a_weight_change(tmp_path, evaluator):
    # Lift the runner-up of a case above its top option by raising one of its fired prefer weights.
    name, ev = None, None
    for n in case_names():
        e = evaluator.evaluate(evaluator.parse(load_case(n)))
        if len(e.ranking.options) >= 2 and any(r.kind == "prefer" for r in e.ranking.options[1].rationale):
            name, ev = n, e
            break
    assert ev is not None, "no case with a runner-up that has a prefer rule"
    first, second = ev.ranking.options[0], ev.ranking.options[1]
    rule = next(r for r in second.rationale if r.kind == "prefer")
    new_rules = _copy_rules_with_weight(tmp_path, rule.rule_id, rule.weight + (first.score - second.score) + 50)
    src = tmp_path / "c.jsonl"
    others = [n for n in case_names() if n != name][:3]
    src.write_text("".join(json.dumps(load_case(n)) + "\n" for n in [name, *others]), encoding="utf-8")
    out = tmp_path / "diff.json"
    result = runner.invoke(app, ["diff-rules", str(RULES), str(new_rules), str(src), "--output", str(out), "-j", "2"])
    assert result.exit_code == 0, result.output
    diff = json.loads(out.read_text(encoding="utf-8"))
    changed = {c["line"]: c for c in diff["changes"]}
    assert 1 in changed
    assert changed[1]["old"]["top_option"] == first.id
    assert changed[1]["new"]["top_option"] == second.id
    assert changed[1]["top_changed"] is True
    assert diff["totals"]["records"] == 4
    assert diff["totals"]["top_changed"] >= 1
    assert diff["old_ruleset_hash"] != diff["new_ruleset_hash"]
    assert "top option" in result.output and first.id in result.output


def test_diff_rules_same_rules_no_change(tmp_path):
    src = tmp_path / "c.jsonl"
    src.write_text("".join(json.dumps(load_case(n)) + "\n" for n in case_names()[:3]) + "oops\n", encoding="utf-8")
    result = runner.invoke(app, ["diff-rules", str(RULES), str(RULES), str(src), "-j", "1"])
    assert result.exit_code == 0, result.output
    assert "4 record(s): top option changed for 0, ranking changed for 0, 1 invalid" in result.output


def _as_counterfactuals(fired: list[frozenset[str]], deciding: frozenset[str]) -> list[frozenset[str]]:
    """Full runs of [base, variant 1, ...] as `run_counterfactuals` reports them: a variant's deciding rules
    as they fired for it, every other rule as it fired for the base."""
    return [fired[0]] + [(f & deciding) | (fired[0] - deciding) for f in fired[1:]]


def test_scoped_counterfactuals_equal_full_engine_runs(evaluator):
    """The engine's scoped variants fire exactly the deciding rules a full run of every variant fires (and the
    reference); the other rules (cautions, next steps) are reported as they fired for the patient."""
    from cds.engine.reference import fired_rules, for_ruleset

    engine, planner = evaluator.engine, evaluator.planner
    deciding = frozenset(r.id for r in evaluator.ruleset.rules if r.decides)
    assert 0 < len(deciding) < len(evaluator.ruleset.rules)
    checked = differ = 0
    for p in _bench_profiles().generate(400, seed=17):
        facts = derive(evaluator.parse(p), evaluator.vocabulary)
        base = engine_facts(facts)
        variants = planner.variants(facts)
        pairs = [(v.field, dict(v.assignment)) for v in variants]
        scoped = engine.run_counterfactuals(base, pairs)
        full_facts = [base] + [{**base, **dict(v.assignment)} for v in variants]
        full = engine.run(full_facts)
        assert scoped == _as_counterfactuals(full, deciding)
        assert scoped == _as_counterfactuals([fired_rules(evaluator.ruleset, f) for f in full_facts], deciding)
        assert scoped == for_ruleset(evaluator.ruleset).run_counterfactuals(base, pairs)
        checked += len(variants)
        differ += sum(f != s for f, s in zip(full, scoped))  # non-deciding rules that a variant fires differently
    assert checked > 1000 and differ > 0


def test_counterfactuals_past_the_prewritten_variant_numbers(evaluator):
    """Variant numbers past those whose fact id and retraction texts are written ahead (`durable._MAX_ID`) and
    past the head memo (64) give what the same variants give one by one; every result is a frozenset."""
    from cds.engine import durable

    engine, planner = evaluator.engine, evaluator.planner
    for p in _bench_profiles().generate(20, seed=5):
        facts = derive(evaluator.parse(p), evaluator.vocabulary)
        base = engine_facts(facts)
        pairs = [(v.field, dict(v.assignment)) for v in planner.variants(facts)]
        if not pairs:
            continue
        many = (pairs * (durable._MAX_ID // len(pairs) + 2))[: durable._MAX_ID + 6]
        got = engine.run_counterfactuals(base, many)
        assert all(type(f) is frozenset for f in got)
        one_by_one = [engine.run_counterfactuals(base, [pair]) for pair in many]
        assert got == [one_by_one[0][0]] + [r[1] for r in one_by_one]
        assert got[: len(pairs) + 1] == engine.run_counterfactuals(base, pairs)


def test_a_decision_from_the_patients_equals_one_from_scratch(evaluator):
    """The unknown-fact analysis decides each variant incrementally from the patient's decision
    (only the options whose rules fired differently): that must equal deciding it from scratch."""
    checked = 0
    for p in [load_case(n) for n in case_names()] + list(_bench_profiles().generate(300, seed=5)):
        ev = evaluator.evaluate(evaluator.parse(p))
        assert evaluator.decider.decide(ev.fired) == ev.decision
        facts = derive(ev.profile, evaluator.vocabulary)
        variants = evaluator.planner.variants(facts)
        fired = evaluator.engine.run_counterfactuals(engine_facts(facts), [(v.field, dict(v.assignment)) for v in variants])
        for f in fired[1:]:
            a, b = evaluator.decider.decide(f, base=ev.decision), evaluator.decider.decide(f)
            assert (a, a.by_option) == (b, b.by_option)
            checked += a != ev.decision
    assert checked > 100  # many variants decide differently from the patient


def test_the_decision_follows_the_documented_ranking_rule(evaluator):
    """An independent statement of the README's rule: excluded iff an exclude rule fired or a require rule
    did not; score = fired prefer weights - fired deprefer weights; order by score, ties in catalogue order."""
    rs = evaluator.ruleset
    for p in [load_case(n) for n in case_names()] + list(_bench_profiles().generate(300, seed=6)):
        fired = evaluator.evaluate(evaluator.parse(p)).fired
        ranked, excluded = [], []
        for index, option in enumerate(rs.options):
            mine = [r for r in rs.rules if option.id in r.options]
            if any(r.kind == "exclude" and r.id in fired for r in mine) or any(
                r.kind == "require" and r.id not in fired for r in mine
            ):
                excluded.append(option.id)
                continue
            score = sum(r.weight for r in mine if r.kind == "prefer" and r.id in fired)
            score -= sum(r.weight for r in mine if r.kind == "deprefer" and r.id in fired)
            ranked.append((-score, index, option.id))
        ranked.sort()
        d = evaluator.decider.decide(fired)
        assert d.order == tuple(oid for _, _, oid in ranked)
        assert d.scores == tuple(-s for s, _, _ in ranked)
        assert d.excluded == tuple(excluded)


def test_scoped_variant_outside_its_field_is_refused(evaluator):
    from cds.errors import EngineError

    facts = engine_facts(derive(evaluator.parse(load_case(case_names()[0])), evaluator.vocabulary))
    with pytest.raises(EngineError):
        evaluator.engine.run_counterfactuals(facts, [("dialysis", {"age": 99})])


def test_input_hash_is_the_json_mode_canonical_form(evaluator):
    import hashlib

    from cds.decide.pipeline import input_hash

    for p in [load_case(n) for n in case_names()] + list(_bench_profiles().generate(200, seed=8)):
        profile = evaluator.parse(p)
        canonical = json.dumps(profile.model_dump(mode="json", exclude_none=True), sort_keys=True, separators=(",", ":"))
        assert input_hash(profile) == hashlib.sha256(canonical.encode()).hexdigest()


@pytest.mark.parametrize("value", [1e-05, 2e-07, 1e16, 1e300, 123.5])
def test_numbers_in_exponent_form_reach_the_engine_safely(evaluator, value):
    """durable-rules' C reader crashes on '1e-05' (exponent without a decimal point): the engine writes '1.0e-05'."""
    from cds.engine.reference import fired_rules

    facts = engine_facts(derive(evaluator.parse(load_case(case_names()[0])), evaluator.vocabulary))
    for name in ("crp_mg_l", "ferritin_ng_ml", "soluble_bcma_ng_ml", "creatinine_clearance_ml_min"):
        facts[name] = value  # past the profile's ranges on purpose: this is about the encoding
    assert evaluator.engine.run([facts]) == [fired_rules(evaluator.ruleset, facts)]
    # a variant of a field deciding rules read (so that it is asserted: cautions see only the patient's fact)
    crcl = "creatinine_clearance_ml_min"
    base = {k: v for k, v in facts.items() if k != crcl}
    scoped = evaluator.engine.run_counterfactuals(base, [(crcl, {crcl: value})])
    deciding = frozenset(r.id for r in evaluator.ruleset.rules if r.decides)
    assert scoped == _as_counterfactuals([fired_rules(evaluator.ruleset, f) for f in (base, facts)], deciding)


def test_a_boolean_no_rule_can_match_is_left_out_of_the_fact_and_fires_the_same(evaluator):
    """The engine asserts a boolean fact without a value no test of any rule can match (`_unmatchable`): every rule
    must then give, by the reference interpreter, the same answer with the fact at that value as without it."""
    from cds.engine.reference import fired_rules

    engine = evaluator.engine
    left_out = [(f, v) for f, texts in engine._booleans.items() for v, text in zip((False, True), texts) if text == ""]
    assert len(left_out) >= 10  # 17 false and 4 true values of 58 facts with the packaged rules
    profiles = [load_case(n) for n in case_names()] + list(_bench_profiles().generate(200, seed=9))
    for p in profiles:
        facts = engine_facts(derive(evaluator.parse(p), evaluator.vocabulary))
        for f, v in left_out:
            at = fired_rules(evaluator.ruleset, {**facts, f: v})
            without = fired_rules(evaluator.ruleset, {k: x for k, x in facts.items() if k != f})
            assert at == without, (f, v)
        assert evaluator.engine.run([facts]) == [fired_rules(evaluator.ruleset, facts)]


def test_only_tests_false_at_a_value_and_on_a_missing_fact_leave_it_out():
    from types import SimpleNamespace

    from cds.engine.durable import _unmatchable
    from cds.knowledge.ruleset import Group, Leaf

    def unmatchable(*conds):
        return _unmatchable([SimpleNamespace(condition=c) for c in conds])

    x_true, x_false = Leaf("x", "==", True), Leaf("x", "==", False)
    assert unmatchable(x_true, Group("any", (Leaf("y", ">", 1), Leaf("x", "in", (True,))))) == {("x", False)}
    assert unmatchable(Leaf("x", "!=", True)) == {("x", True)}  # a missing fact matches no !=
    assert unmatchable(x_true, x_false) == set()
    assert unmatchable(x_true, Leaf("x", "unknown")) == set()  # matched by a missing fact
    assert unmatchable(x_true, Leaf("x", "known")) == set()
    assert unmatchable(Leaf("x", "!=", False)) == {("x", False)}
    assert unmatchable(Leaf("x", "==", 0)) == set()  # durable-rules' loose typing (0 equals false): left in
    assert unmatchable(x_true, None) == {("x", False)}


# --------------------------------------------------------------------------- folder entries, empty input, JSONL fields


def test_folder_every_json_entry_is_a_record_in_name_order(tmp_path):
    folder = tmp_path / "cases"
    folder.mkdir()
    name = case_names()[0]
    shutil.copy(PROFILES / f"{name}.json", folder / "b_good.json")
    shutil.copy(PROFILES / f"{name}.json", folder / "c_upper.JSON")  # the extension in any case
    (folder / "a_broken_link.json").symlink_to(tmp_path / "gone.json")
    os.mkfifo(folder / "d_fifo.json")
    (folder / "e_dir.json").mkdir()
    (folder / "f_loop.json").symlink_to(folder / "f_loop.json")
    (folder / "notes.txt").write_text("not a profile", encoding="utf-8")
    out = tmp_path / "r.jsonl"
    result = batch(str(folder), "-o", str(out), "-j", "2")
    assert result.exit_code == 1, result.output
    rows = {r["file"]: r for r in lines_of(out)}
    assert list(rows) == ["a_broken_link.json", "b_good.json", "c_upper.JSON", "d_fifo.json", "e_dir.json", "f_loop.json"]
    assert [r["status"] for r in rows.values()] == ["invalid", "evaluated", "evaluated", "invalid", "invalid", "invalid"]
    assert "broken symbolic link" in rows["a_broken_link.json"]["problem"]
    assert "FIFO" in rows["d_fifo.json"]["problem"]
    assert "is a directory" in rows["e_dir.json"]["problem"]
    assert "cannot be read" in rows["f_loop.json"]["problem"]
    for r in rows.values():
        if r["status"] == "invalid":
            assert r["field"] == "(file)" and r["error"] == f"invalid patient profile: (file): {r['problem']}"
            assert str(folder / r["file"]) in r["problem"]
    assert "6 record(s): 2 evaluated, 4 invalid" in result.stderr


@pytest.mark.parametrize("kind", ["folder", "empty file"])
def test_empty_input_is_a_warning_exit_0_and_an_empty_output(tmp_path, kind):
    if kind == "folder":
        src = tmp_path / "cases"
        src.mkdir()
        (src / "notes.txt").write_text("x", encoding="utf-8")
    else:
        src = tmp_path / "empty.jsonl"
        src.write_bytes(b"")
    out, summary = tmp_path / "r.jsonl", tmp_path / "s.json"
    result = batch(str(src), "-o", str(out), "--summary", str(summary), "-j", "2")
    assert result.exit_code == 0, result.output
    assert out.read_bytes() == b""
    assert json.loads(summary.read_text(encoding="utf-8"))["records"] == 0
    (warning,) = [ln for ln in result.stderr.splitlines() if ln.startswith("warning: ")]
    assert str(src) in warning and "no records" in warning
    diff = runner.invoke(app, ["diff-rules", str(RULES), str(RULES), str(src), "-j", "1", "-q"])
    assert diff.exit_code == 0 and "warning: " in diff.stderr


def test_jsonl_json_and_utf8_problems_name_the_line_not_a_file(tmp_path):
    src = tmp_path / "c.jsonl"
    src.write_bytes(b'{"patient_id": \n' + b'\xff{"a": 1}\n' + b"[1, 2]\n")
    out = tmp_path / "r.jsonl"
    assert batch(str(src), "-o", str(out), "-j", "1").exit_code == 1
    rows = lines_of(out)
    assert [r["field"] for r in rows] == ["(line)", "(line)", "(profile)"]
    assert rows[0]["error"].startswith("invalid patient profile: (line): not valid JSON")
    assert rows[1]["error"] == "invalid patient profile: (line): not UTF-8 text (byte 0)"
    diff = runner.invoke(app, ["diff-rules", str(RULES), str(RULES), str(src), "-j", "1", "-q"])
    assert diff.exit_code == 0 and "3 invalid" in diff.stdout


# --------------------------------------------------------------------------- worker processes


def _double(x: int) -> int:
    return 2 * x


def test_run_ordered_keeps_order_and_submits_lazily():
    from cds.cohort import batch as batch_mod
    from cds.cohort import pool

    pulled = []

    def tasks():
        for i in range(200):
            pulled.append(i)
            yield i

    jobs = 2
    results = batch_mod.run_ordered(_double, tasks(), jobs, ([], False))
    first = next(results)
    assert first == 0
    assert len(pulled) <= jobs * pool.IN_FLIGHT_PER_JOB + 1  # bounded in flight, never the whole input
    assert [first, *results] == [2 * i for i in range(200)]


def test_forked_workers_exit_by_themselves_at_the_end_of_their_tasks():
    """A worker must see the end of its task pipe: one that held a copy of the pipe's write end itself
    waited for more tasks until the pool killed it, STOP_TIMEOUT (10 s) per worker after every run."""
    from cds.cohort import pool

    workers = pool.WorkerPool(_double, 2, method="fork")
    try:
        assert list(workers.map_ordered(range(20))) == [2 * i for i in range(20)]
        for w in workers.workers:
            w.tasks.close()  # what close() does first: the end of the tasks
        for w in workers.workers:
            w.process.join(5)
        assert [w.process.exitcode for w in workers.workers] == [0, 0]  # exited, not still waiting (None) or killed
    finally:
        workers.close()


def _big(x: int) -> bytes:
    return bytes([x % 256]) * (3 << 20)  # more than any pipe holds: written and read in parts


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="F_SETPIPE_SZ is Linux's")
def test_the_pipes_hold_a_whole_chunk_on_linux_and_larger_messages_still_arrive():
    """A task of 128 profiles is ~130 KB: through a default 64 KiB pipe it went in several writes, each
    waking the worker (and each result blocked the worker until the parent had read part of it)."""
    import fcntl

    from cds.cohort import pool

    workers = pool.WorkerPool(_big, 2, method="fork")
    try:
        for w in workers.workers:
            # 1 MiB: widened with 4 KiB pages, the default with 64 KiB pages (16 pages hold 1 MiB already)
            assert fcntl.fcntl(w.tasks.fileno(), fcntl.F_GETPIPE_SZ) == pool.PIPE_BYTES
            assert fcntl.fcntl(w.results.fileno(), fcntl.F_GETPIPE_SZ) == pool.PIPE_BYTES
        page = os.sysconf("SC_PAGE_SIZE")
        assert pool.pipe_size_for(2) == (pool.PIPE_BYTES if pool.DEFAULT_PIPE_PAGES * page < pool.PIPE_BYTES else 0)
        assert list(workers.map_ordered(range(5))) == [bytes([i]) * (3 << 20) for i in range(5)]
    finally:
        workers.close()


def test_the_pipes_fit_in_a_quarter_of_the_users_pipe_budget():
    """Every pipe buffer counts against the user's budget (pipe-user-pages-soft: 16,384 pages, 64 MiB, by
    default): 1 MiB pipes, two per worker, used all of it at -j 32, and then every new pipe of the user (any
    process's) got a page or two instead of 16 (review rev4 R1)."""
    from cds.cohort.pool import PIPE_BYTES, pipe_bytes

    page, default_max, default_soft = 4096, 1 << 20, 16384
    assert pipe_bytes(2, default_max, default_soft, page) == PIPE_BYTES
    assert pipe_bytes(8, default_max, default_soft, page) == PIPE_BYTES  # 16 pipes of 1 MiB: a quarter of 64 MiB
    assert pipe_bytes(9, default_max, default_soft, page) == 512 << 10  # rounded down to a power of two
    assert pipe_bytes(32, default_max, default_soft, page) == 256 << 10
    assert pipe_bytes(64, default_max, default_soft, page) == 128 << 10
    assert pipe_bytes(65, default_max, default_soft, page) == 0  # 64 KiB or less: the default, not asked for
    assert pipe_bytes(1, default_max, 1, page) == 0  # a budget too small for any widening
    for jobs in range(1, 300):
        size = pipe_bytes(jobs, default_max, default_soft, page)
        assert size == 0 or 2 * jobs * size <= default_soft * page // 4
    assert pipe_bytes(2, 300_000, default_soft, page) == 256 << 10  # at most pipe-max-size
    assert pipe_bytes(2, 64 << 10, default_soft, page) == 0
    assert pipe_bytes(500, default_max, 0, page) == PIPE_BYTES  # 0: no budget
    assert pipe_bytes(2, default_max, default_soft, 64 << 10) == 0  # 64 KiB pages: the default 16 pages are 1 MiB


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="F_SETPIPE_SZ is Linux's")
def test_a_pool_of_many_workers_asks_for_smaller_pipes():
    import fcntl

    from cds.cohort import pool

    limits = pool._pipe_limits()
    assert limits is not None
    expected = pool.pipe_bytes(20, *limits)
    if limits == (1 << 20, 16384, 4096):  # Linux's defaults
        assert expected == 256 << 10
    workers = pool.WorkerPool(_size, 20, method="fork")
    try:
        sizes = {fcntl.fcntl(p.fileno(), fcntl.F_GETPIPE_SZ) for w in workers.workers for p in (w.tasks, w.results)}
        assert sizes == {expected or pool.DEFAULT_PIPE_PAGES * limits[2]}
        assert list(workers.map_ordered([_big(i) for i in range(3)])) == [(3 << 20, i) for i in range(3)]
    finally:
        workers.close()


def _size(x: bytes) -> tuple[int, int]:
    return len(x), x[:1][0] if x else -1


def test_tasks_larger_than_a_pipe_and_small_ones_between_go_whole_and_in_order():
    """A task the pipe cannot take in one write goes partly by the direct write (`_send`) and the rest from the
    outbox when the pipe has room; the small tasks sent after it wait behind it, so every worker reads whole tasks."""
    from cds.cohort import pool

    tasks = [bytes([i]) * ((3 << 20) if i % 3 == 0 else 10 + i) for i in range(12)]
    workers = pool.WorkerPool(_size, 2, method="fork")
    try:
        assert list(workers.map_ordered(tasks)) == [(len(t), t[0]) for t in tasks]
    finally:
        workers.close()


def _boom(x: int) -> int:
    if x == 7:
        raise ValueError("seven")
    return x


def test_workers_are_forked_on_linux_only(monkeypatch):
    from cds.cohort import pool

    monkeypatch.setattr(pool.sys, "platform", "linux")
    assert pool.start_method() == "fork"
    for other in ("darwin", "win32", "freebsd14"):
        monkeypatch.setattr(pool.sys, "platform", other)
        assert pool.start_method() == "spawn"


def test_spawned_workers_work_too_and_a_task_error_reaches_the_parent():
    """The start method used where fork is not: fresh interpreters, same results, same error handling."""
    from cds.cohort import batch as batch_mod

    assert list(batch_mod.run_ordered(_double, range(50), 2, ([], False), method="spawn")) == [2 * i for i in range(50)]
    with pytest.raises(ValueError, match="seven"):
        list(batch_mod.run_ordered(_boom, range(50), 2, ([], False)))


@pytest.mark.parametrize("jobs", ["1", "2"])
def test_a_line_longer_than_the_limit_is_one_invalid_record(tmp_path, jobs):
    from cds.datafile import PROFILE_LIMIT

    good = json.dumps(load_case(case_names()[0]))
    huge = json.dumps({**load_case(case_names()[0]), "cytogenetics": ["del(17p)"] * 400_000})  # ~4.8 MB
    src = tmp_path / "c.jsonl"
    src.write_text(f"{good}\n{huge}\n{good}\n", encoding="utf-8")
    out = tmp_path / "r.jsonl"
    result = batch(str(src), "-o", str(out), "-j", jobs, "-q")
    assert result.exit_code == 1, result.output
    rows = lines_of(out)
    assert [r["status"] for r in rows] == ["evaluated", "invalid", "evaluated"]
    assert len(huge) + 1 > PROFILE_LIMIT
    assert rows[1]["field"] == "(line)"
    assert rows[1]["problem"] == f"{len(huge) + 1:,} bytes: larger than 1 MiB, the limit for one line (a patient profile)"


def test_line_writer_gives_the_bytes_of_the_compact_record():
    """The batch line of an evaluated record (fragments encoded once per rule set) is exactly the JSON of
    `compact`'s record, for every case and 300 generated profiles, for a line and for a file name that
    needs escaping (a quote, a non-ASCII letter, U+2028)."""
    from cds.cohort import batch as cohort

    evaluator = cohort.evaluator_for(str(RULES))
    at = "2026-01-01T00:00:00Z"
    writer = cohort._writer(evaluator.ruleset)
    profiles = [load_case(n) for n in case_names()] + list(_bench_profiles().generate(300, seed=11))
    checked = 0
    for i, data in enumerate(profiles):
        ev = evaluator.evaluate(evaluator.parse(data), at)
        for key in (("line", i + 1), ("file", f'a"\u00e9\u2028{i}.json')):
            assert writer.line(ev, key, at) == cohort.json_line({key[0]: key[1], **cohort.compact(ev, at)})
            checked += 1
    assert checked == 2 * len(profiles)


def test_folder_entries_whose_names_are_not_utf8_are_named_with_escapes(tmp_path):
    # a name the file system holds as bytes that are not UTF-8 (Python: lone surrogates) must not make
    # the output lines unwritable (it did: UnicodeEncodeError, exit 3, no output)
    folder = tmp_path / "cases"
    folder.mkdir()
    good = os.fsencode(folder) + b"/good\xff.json"
    shutil.copy(PROFILES / f"{case_names()[0]}.json", os.fsdecode(good))
    os.symlink(tmp_path / "gone.json", os.fsdecode(os.fsencode(folder) + b"/link\xfe.json"))
    out = tmp_path / "r.jsonl"
    result = batch(str(folder), "-o", str(out))
    assert result.exit_code == 1, result.output
    text = out.read_bytes().decode("utf-8")  # every line UTF-8
    rows = {r["file"]: r for r in map(json.loads, text.splitlines())}
    assert list(rows) == ["good\\xff.json", "link\\xfe.json"]
    assert rows["good\\xff.json"]["status"] == "evaluated"
    assert rows["link\\xfe.json"]["status"] == "invalid" and "broken symbolic link" in rows["link\\xfe.json"]["problem"]
    assert f"{folder}/link\\xfe.json" in rows["link\\xfe.json"]["problem"]


def test_counterfactuals_share_the_base_result_and_handle_assignments_over_known_facts(evaluator):
    """A variant that fires as the patient does is reported as the patient's own frozenset (found by identity in
    Evaluator.evaluate's dedup); an assignment that changes a fact the patient has (the planner never makes one)
    still gives what full runs give; the errors come in the order the checks one at a time raise them."""
    import math

    from cds.errors import EngineError

    engine, planner = evaluator.engine, evaluator.planner
    deciding = frozenset(r.id for r in evaluator.ruleset.rules if r.decides)
    shared = overlapping = 0
    for p in _bench_profiles().generate(150, seed=23):
        facts = derive(evaluator.parse(p), evaluator.vocabulary)
        base = engine_facts(facts)
        pairs = [(v.field, dict(v.assignment)) for v in planner.variants(facts)]
        # a known fact of a scope set to another value, alone and with the planner's variants of that scope
        for fact, other in (("frailty", {"fit": "frail", "frail": "intermediate", "intermediate": "fit"}),):
            if fact in base:
                pairs += [("frailty", {fact: other[base[fact]]}), ("frailty", {fact: base[fact]})]
                overlapping += 1
        got = engine.run_counterfactuals(base, pairs)
        full = engine.run([base] + [{**base, **a} for _, a in pairs])
        assert got == _as_counterfactuals(full, deciding)
        for f in got[1:]:
            assert (f is got[0]) == (f == got[0])
            shared += f is got[0]
    assert shared > 100 and overlapping > 20

    base = {"age": 70, "ecog": 1, "prior_line_count": 2}
    nan = ("frailty", {"frailty": math.nan})
    with pytest.raises(EngineError, match="cannot be sent to the engine"):
        engine.run_counterfactuals(base, [nan])
    with pytest.raises(EngineError, match="cannot be sent to the engine"):
        engine.run_counterfactuals({**base, "age": math.inf}, [("frailty", {"frailty": "fit"})])
    for variants in ([nan, ("frailty", {"age": 71})], [("frailty", {"age": 71}), nan]):
        with pytest.raises(EngineError, match="a variant scoped to 'frailty' also changes 'age'"):
            engine.run_counterfactuals({**base, "ecog": math.nan}, variants)
