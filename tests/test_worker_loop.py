"""The batch worker loop's shortcuts give what the plain code paths give (cds.decide.pipeline, cds.decide.unknowns).

Each shortcut is checked against the straightforward computation it replaces, on every case profile and
hundreds of generated ones (bench/profiles.py, tests/strategies.py).
"""

from __future__ import annotations

import contextlib
import dataclasses
import importlib.util
import json
import random

import pytest
from conftest import ROOT, case_names, load_case
from strategies import random_profiles

from cds.decide import pipeline
from cds.decide.unknowns import Variant
from cds.errors import InputError, ProfileError
from cds.model.clock import evaluation_day, evaluation_time
from cds.model.facts import REFRACTORY_FIELD, derive, derive_values
from cds.model.profile import PriorLine, dates_after, evaluation_time_phrase


def _bench_profiles(n: int, seed: int) -> list[dict]:
    spec = importlib.util.spec_from_file_location("bench_profiles", ROOT / "bench" / "profiles.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)  # type: ignore[union-attr]
    return list(mod.generate(n, seed=seed))


def _profiles(evaluator, n: int = 300):
    out = []
    for data in [load_case(name) for name in case_names()] + _bench_profiles(n, 31) + random_profiles(n, seed=32):
        with contextlib.suppress(ProfileError):
            out.append(evaluator.parse(data))
    assert len(out) > 2 * n
    return out


def test_the_stamp_is_read_once_per_stamp_as_evaluation_time_reads_it():
    for stamp in ["2026-01-01T00:00:00Z", "2024-03-01T12:00:00+01:00", "2025-06-30 23:59:59.5", " 2026-01-01T00:00 "]:
        assert pipeline._stamp(stamp) == pipeline._stamp(stamp) == evaluation_time(stamp)
    for _ in range(2):  # refused every time, never kept
        with pytest.raises(InputError):
            pipeline._stamp("yesterday")


def _old_date_for(profile, evaluated_at):
    """evaluation_date_for as it was: dates_after on the profile's dump."""
    if profile.evaluation_date is not None:
        return profile.evaluation_date, "profile"
    if evaluated_at is None:
        return None, "not_given"
    on = evaluation_day(evaluated_at)
    late = dates_after(pipeline._dump(profile), on, evaluation_time_phrase(on))
    if late:
        raise ProfileError.many(late)
    return on, "evaluation_time"


def _outcome(f, *args):
    try:
        return f(*args)
    except ProfileError as exc:
        return ("error", exc.field, exc.problem, str(exc))


def test_the_date_check_finds_what_dates_after_finds_on_the_dump(evaluator):
    """A profile date after the defaulted evaluation date: the same ProfileError (every field, in order) as
    dates_after on the dump gives, for evaluation dates before, on and after the profiles' dates."""
    rng = random.Random(5)
    raised = 0
    for profile in _profiles(evaluator, 200):
        if profile.evaluation_date is not None and rng.random() < 0.8:
            profile = profile.model_copy(update={"evaluation_date": None})
        for stamp in ["2018-05-01T00:00:00Z", "2021-07-15T10:00:00Z", "2023-02-28T00:00:00Z", "2026-01-01T00:00:00Z", None]:
            new, old = _outcome(pipeline.evaluation_date_for, profile, stamp), _outcome(_old_date_for, profile, stamp)
            assert new == old
            raised += new[0] == "error"
    assert raised > 50


def _old_variants(planner, facts, profile):
    """VariantPlanner.variants as it was: a new Variant per plan entry."""
    from cds.model.facts import refractoriness_alternatives

    out = []
    crcl = facts["creatinine_clearance_ml_min"].value
    no_dialysis = planner._severe_crcl is not None and isinstance(crcl, (int, float)) and crcl >= planner._severe_crcl
    for field, plan in planner._plans.items():
        probe = plan[0][1][0][0]
        if facts[probe].known or not facts[probe].applies:
            continue
        out.extend(
            Variant(field, label, assignment)
            for label, assignment in plan
            if not (no_dialysis and assignment == (("dialysis", True),))
        )
    values = {name: fv.value for name, fv in facts.items()}
    out.extend(Variant("cytogenetics", label, assignment) for label, assignment in planner._cytogenetics_plan(values))
    if profile is not None and planner._refractory_used:
        for label, assignment in refractoriness_alternatives(profile, planner._vocabulary, planner.used_facts):
            out.append(Variant(REFRACTORY_FIELD, label, tuple(assignment.items())))
    return out


def test_the_planned_variants_are_those_built_one_by_one(evaluator):
    """plan(): the variants as built fresh per profile, the scoped ones first, each as the engine's
    (scope, assignment); the refractoriness records last, unscoped."""
    planner = evaluator.planner
    refractory = 0
    for profile in _profiles(evaluator):
        facts = derive(profile, evaluator.vocabulary, "2026-01-01", lazy=True)
        for given in (profile, None):
            variants, scoped = planner.plan(*_values(facts), given)
            assert variants == _old_variants(planner, facts, given) == planner.variants(facts, given)
            assert [(s, dict(a)) for s, a in scoped] == [
                (v.field, dict(v.assignment)) for v in variants if v.field != REFRACTORY_FIELD
            ]
            assert all(v.field == REFRACTORY_FIELD for v in variants[len(scoped) :])
            refractory += len(variants) - len(scoped)
        for _, assignment in scoped[:1]:
            with pytest.raises(TypeError):
                assignment["age"] = 1  # type: ignore[index]  # shared by every profile: read-only
    assert refractory > 100


def _values(facts):
    return {name: fv.value for name, fv in facts.items()}, {name for name, fv in facts.items() if not fv.applies}


def test_the_derived_values_are_the_facts_derive_gives(evaluator):
    """derive_values: the values, applicability and engine facts (in FACTS order) of derive, lazy or not;
    an evaluation's facts are derive's, explanations included."""
    from cds.model.facts import derive_values, engine_facts

    vocabulary = evaluator.vocabulary
    for profile in _profiles(evaluator, 150):
        for on in (None, "2026-01-01"):
            derived = derive_values(profile, vocabulary, on)
            full = derive(profile, vocabulary, on)
            lazy = derived.facts()
            assert list(derived.known().items()) == list(engine_facts(full).items())
            assert derived.values == {name: fv.value for name, fv in full.items()}
            assert derived.not_applying == {name for name, fv in full.items() if not fv.applies}
            assert [(n, fv.name, fv.value, fv.applies) for n, fv in lazy.items()] == [
                (n, fv.name, fv.value, fv.applies) for n, fv in full.items()
            ]
            assert [fv.explanation for fv in lazy.values()] == [fv.explanation for fv in full.values()]
        try:
            ev = evaluator.evaluate(profile, "2026-01-01T00:00:00Z")
        except ProfileError:
            continue  # a date after the evaluation time
        full = derive(profile, vocabulary, ev.evaluation_date)
        assert [(n, fv.value, fv.applies, fv.explanation) for n, fv in ev.facts.items()] == [
            (n, fv.value, fv.applies, fv.explanation) for n, fv in full.items()
        ]
        # the unknown fields without effect: every field of an unknown fact that applies, but those with one
        from cds.decide.unknowns import _INPUT_FIELDS

        unknown = {field for name, field in _INPUT_FIELDS if not ev.facts[name].known and ev.facts[name].applies}
        assert ev.unknown_without_effect == tuple(sorted(unknown - {u.field for u in ev.unknown_facts}))


def _mutated(data: dict, rng: random.Random) -> dict:
    """A profile with unusual strings and numbers: unicode and line separators in its ID, notes and
    investigational agents (named in refractoriness labels), -0.0 and exponent-form floats, regimen-only lines."""

    data = json.loads(json.dumps(data))
    data["patient_id"] = rng.choice(["P\u00e9\u2028x", "\U0001f600id", '"q\\', "\u2029\x85", "plain"])
    data["notes"] = rng.choice(["caf\u00e9 \u2029", "x" * 50, "tab\t"])
    data["labs"] = data.get("labs") or {}
    data["labs"]["ferritin_ng_ml"] = rng.choice([-0.0, 0, 1e-05, 2.5e-7, 123.456, 1e6])
    data["creatinine_clearance_ml_min"] = rng.choice([-0.0, 30, 29.999, 1e-05, 60.0])
    lines = data.get("prior_lines") or []
    if lines and rng.random() < 0.5:
        line = lines[0]
        line["agents"] = [
            *line.get("agents", ["lenalidomide"]),
            {
                "investigational": rng.choice(["X\u00fc-1", "ber\u2028"]),
                "class": rng.choice(["bcma_car_t", "gprc5d_bispecific", "imid"]),
            },
        ]
        line.pop("refractory_to", None)
    if lines and rng.random() < 0.4:
        line = lines[-1]
        line.pop("agents", None)
        line["regimen"] = rng.choice(["VRd", "DRd", "KPd", "Kd"])
        line.pop("refractory_to", None)
        line.pop("intolerant_to", None)
    return data


def test_the_line_writer_gives_the_compact_record_for_unusual_strings():
    """The batch line (cds.cohort.batch._LineWriter) is the JSON of `compact`'s record for profiles whose
    strings need escaping, including the unknown-fact labels written from them."""
    from cds.cohort import batch as cohort

    evaluator = cohort.evaluator_for(None)
    at = "2026-01-01T00:00:00Z"
    writer = cohort._writer(evaluator.ruleset)
    rng = random.Random(9)
    checked = mattering = 0
    for i, data in enumerate(_bench_profiles(300, 41) + random_profiles(200, seed=42)):
        try:
            ev = evaluator.evaluate(evaluator.parse(_mutated(data, rng)), at)
        except ProfileError:
            continue
        for key in (("line", i + 1), ("file", f'a"\u00e9\u2028{i}.json')):
            assert writer.line(ev, key, at) == cohort.json_line({key[0]: key[1], **cohort.compact(ev, at)})
        checked += 1
        mattering += any(u.changes_top for u in ev.unknown_facts)
    assert checked > 300 and mattering > 50


def test_a_kept_ranking_is_the_one_decided_afresh(evaluator):
    """Decider keeps the ranking of each by_option it has seen: a decision from a warm decider (many profiles'
    variants decided before) equals one from a new decider, by_option and fired included."""
    from cds.decide.decision import Decider

    warm = Decider(evaluator.ruleset)
    checked = 0
    for profile in _profiles(evaluator, 150):
        derived = derive_values(profile, evaluator.vocabulary, "2026-01-01")
        _, scoped = evaluator.planner.plan(derived.values, derived.not_applying, profile)
        fired = evaluator.engine.run_counterfactuals(derived.known(), scoped)
        base = warm.decide(fired[0])
        for f in fired:
            for a in (warm.decide(f), warm.decide(f, base=base)):
                b = Decider(evaluator.ruleset).decide(f)
                assert (a, a.by_option, a.fired) == (b, b.by_option, b.fired)
                checked += 1
    assert checked > 1000 and len(warm._rankings) > 10


def test_decisions_and_evaluations_built_without_init_are_the_dataclasses_own(evaluator):
    """decide builds its Decision by setting the slots, evaluate its Evaluation by filling the instance dict:
    each is the object the dataclass's __init__ builds from the same fields (every field set, in field order)."""
    import dataclasses

    from cds.decide.decision import Decision

    names = [f.name for f in dataclasses.fields(pipeline.Evaluation)]
    checked = 0
    for profile in _profiles(evaluator, 60):
        try:
            ev = evaluator.evaluate(profile, "2026-01-01T00:00:00Z")
        except ProfileError:  # a date after the evaluation time
            continue
        assert list(vars(ev)) == names
        again = pipeline.Evaluation(**{n: getattr(ev, n) for n in names})
        assert again == ev and vars(again) == vars(ev)
        d = ev.decision
        fields = {f.name: getattr(d, f.name) for f in dataclasses.fields(Decision)}
        built = Decision(**fields)
        assert built == d and all(getattr(built, n) is v for n, v in fields.items())
        checked += 1
    assert checked > 100


def test_the_dump_is_model_dump(evaluator):
    """_dump calls the profile's serializer as model_dump(exclude_none=True) does: the same data, keys in the same order."""

    checked = 0
    for profile in _profiles(evaluator, 150):
        assert json.dumps(pipeline._dump(profile)) == json.dumps(profile.model_dump(exclude_none=True))
        checked += 1
    assert checked > 300


def _old_summarize(variants, decisions, base, known, not_applying):
    """unknowns.summarize as it was (9c52332): the dataclasses' own __init__, a set comprehension of the fields."""
    from cds.decide.unknowns import _FIELD_OF, _INPUT_FACTS, Effect, UnknownFact, field_description

    by_field: dict = {}
    tops: set = set()
    base_top, base_order, base_excluded = base.top, base.order, base.excluded
    before = None
    for variant, decision in zip(variants, decisions):
        order, excluded = decision.order, decision.excluded
        top = order[0] if order else None
        if top == base_top and order == base_order and excluded == base_excluded:
            continue
        if top != base_top:
            tops.add(variant.field)
        if before is None:
            before = set(base_excluded)
        now = set(excluded)
        effect = Effect(variant.label, top, order, tuple(sorted(now - before)), tuple(sorted(before - now)))
        by_field.setdefault(variant.field, []).append(effect)
    result = [UnknownFact(f, field_description(f), f in tops, True, tuple(e)) for f, e in by_field.items()]
    result.sort(key=lambda u: (not u.changes_top, u.field))
    unknown_fields = {_FIELD_OF[name] for name in _INPUT_FACTS.difference(known) if name not in not_applying}
    return result, sorted(unknown_fields.difference(by_field))


def test_the_summary_is_the_one_built_with_the_dataclasses(evaluator):
    """summarize: the same unknown facts and fields as built with Effect(...)/UnknownFact(...) (equal, and the
    same instance dicts in field order), for the variants' decisions and for decisions with changed rankings."""
    import dataclasses

    from cds.decide.unknowns import Effect, UnknownFact, summarize

    rng = random.Random(11)
    decider, planner = evaluator.decider, evaluator.planner
    effects = several = 0
    for profile in _profiles(evaluator, 200):
        derived = derive_values(profile, evaluator.vocabulary, "2026-01-01")
        variants, scoped = planner.plan(derived.values, derived.not_applying, profile)
        fired = evaluator.engine.run_counterfactuals(derived.known(), scoped)
        fired += evaluator.engine.run([{**derived.known(), **dict(v.assignment)} for v in variants[len(scoped) :]])
        base = decider.decide(fired[0])
        decisions = [decider.decide(f, base=base) for f in fired[1:]]
        # and the variants decided on other rules: other tops, orders and exclusions
        mixed = [
            decider.decide(frozenset(rng.sample(sorted(f), len(f) // 2))) if rng.random() < 0.3 else d
            for f, d in zip(fired[1:], decisions)
        ]
        for ds in (decisions, mixed):
            new = summarize(variants, ds, base, derived.known(), derived.not_applying)
            old = _old_summarize(variants, ds, base, derived.known(), derived.not_applying)
            assert new == old
            for u_new, u_old in zip(new[0], old[0]):
                assert vars(u_new) == vars(u_old) and list(vars(u_new)) == [f.name for f in dataclasses.fields(UnknownFact)]
                for e_new, e_old in zip(u_new.effects, u_old.effects):
                    assert vars(e_new) == vars(e_old) and list(vars(e_new)) == [f.name for f in dataclasses.fields(Effect)]
                    assert hash(e_new) == hash(e_old)
                    effects += 1
            several += len(new[0]) > 1
    assert effects > 300 and several > 20


def test_the_input_hash_is_sha256_of_the_canonical_json(evaluator):
    """_hash_of: sha256 of json.dumps(dump, sort_keys=True, separators=(",", ":")) (ASCII escapes, floats as repr),
    for profiles with unusual strings and numbers."""
    import hashlib

    rng = random.Random(13)
    checked = 0
    for data in _bench_profiles(150, 43) + random_profiles(150, seed=44):
        try:
            profile = evaluator.parse(_mutated(data, rng))
        except ProfileError:
            continue
        dumped = pipeline._dump(profile)
        text = json.dumps(dumped, sort_keys=True, separators=(",", ":"))
        assert pipeline._hash_of(dumped) == hashlib.sha256(text.encode()).hexdigest() == pipeline.input_hash(profile)
        checked += 1
    odd = {"b": [1.5, -0.0, 1e16, 2.5e-7, float("inf"), float("nan")], "a": {"\u00e9": '\u2028\x00"\\', "Z": None, "y": True}}
    assert pipeline._hash_of(odd) == hashlib.sha256(json.dumps(odd, sort_keys=True, separators=(",", ":")).encode()).hexdigest()
    assert checked > 250


def test_the_input_hash_from_kept_line_texts_is_the_dumps_hash(evaluator):
    """evaluate's input hash (_input_hash: each prior line's text kept per line object, spliced into the text of
    the rest of the dump) is input_hash's, for unusual strings, regimen-only lines, notes holding the mark's text,
    lines met again (kept texts) and after the table of kept texts was emptied."""
    rng = random.Random(17)
    checked = regimen = 0
    datas = _bench_profiles(150, 45) + random_profiles(150, seed=46)
    for data in datas + datas:  # the second round finds the lines' texts kept (the parser shares the line models)
        data = _mutated(data, rng)
        if rng.random() < 0.2:
            data["notes"] = rng.choice(['"prior_lines":"\x00"', "\x00", '"prior_lines":[]'])
        try:
            profile = evaluator.parse(data)
        except ProfileError:
            continue
        assert pipeline._input_hash(profile) == pipeline.input_hash(profile)
        regimen += sum(line.agents_from_regimen for line in profile.prior_lines)
        assert pipeline._canonical(profile) == json.dumps(pipeline._dump(profile), sort_keys=True, separators=(",", ":"))
        checked += 1
    assert checked > 500 and 0 < len(pipeline._LINE_TEXTS) <= 1024
    assert set(pipeline._LINE_TEXTS) == {id(line) for line in pipeline._LINES}
    assert all(type(line) is PriorLine for line in pipeline._LINES) and regimen > 50  # a RegimenLine is not kept


def test_the_line_writer_writes_fired_rules_as_their_encoded_ids():
    """The fired rules joined as written IDs (plain rule IDs) are those encoded one by one (the other path)."""
    from cds.cohort import batch as cohort

    evaluator = cohort.evaluator_for(None)
    at = "2026-01-01T00:00:00Z"
    writer = cohort._writer(evaluator.ruleset)
    assert writer.plain_rules
    other = cohort._LineWriter(evaluator.ruleset)
    other.plain_rules = False
    checked = 0
    for i, data in enumerate(_bench_profiles(100, 45)):
        try:
            ev = evaluator.evaluate(evaluator.parse(data), at)
        except ProfileError:
            continue
        assert writer.line(ev, ("line", i), at) == other.line(ev, ("line", i), at)
        checked += 1
    assert checked > 80
    # a fired ID outside the rule set (none of cds's matchers reports one, the Matcher protocol does not forbid it)
    # is written as JSON encodes it, never joined as it is
    odd = frozenset({*ev.fired, 'X"Y\\Z'})
    strange = dataclasses.replace(ev, fired=odd, decision=dataclasses.replace(ev.decision, fired=odd))
    text = writer.line(strange, ("line", 1), at)
    assert text == cohort.json_line({"line": 1, **cohort.compact(strange, at)})
    assert 'X"Y\\Z' in json.loads(text)["fired_rules"]


def test_a_variant_is_decided_from_the_rules_reading_its_facts_as_from_every_rule(evaluator):
    """evaluate decides a scoped variant from the rules reading the facts its field sets (Decider.rules_reading of
    VariantPlanner.varied_facts): on durable-rules and on the reference interpreter every variant's fired set
    differs from the patient's only there (or in rules outside the decision), and the decision is the one compared
    over every rule; a fired set that differs elsewhere is decided over every rule (the sizes disagree)."""
    from cds.decide.decision import Decider
    from cds.engine.reference import for_ruleset

    decider, planner = evaluator.decider, evaluator.planner
    among = evaluator._among
    assert set(among) == set(planner.varied_facts()) and REFRACTORY_FIELD not in among
    deciding = frozenset(decider._options_of)
    matchers = [evaluator.engine, for_ruleset(evaluator.ruleset)]
    rng = random.Random(17)
    checked = changed = forged = 0
    for n, profile in enumerate(_profiles(evaluator, 150)):
        derived = derive_values(profile, evaluator.vocabulary, "2026-01-01")
        variants, scoped = planner.plan(derived.values, derived.not_applying, profile)
        for matcher in matchers[: 1 + (n % 3 == 0)]:
            fired = matcher.run_counterfactuals(derived.known(), scoped)
            base = decider.decide(fired[0])
            for f, variant in zip(fired[1:], variants):
                rules = among[variant.field]
                assert ((f ^ fired[0]) & deciding) <= set(rules)
                a, b = decider.decide(f, base, rules), Decider(evaluator.ruleset).decide(f, base)
                assert (a, a.by_option, a.fired) == (b, b.by_option, b.fired)
                checked += 1
                changed += a.by_option is not base.by_option
                # another deciding rule fired (or not) as well: not among the rules, so decided over every rule
                other = rng.choice(sorted(deciding - set(rules)))
                g = f ^ {other}
                a, b = decider.decide(g, base, rules), Decider(evaluator.ruleset).decide(g, base)
                assert (a, a.by_option, a.fired) == (b, b.by_option, b.fired)
                forged += a.by_option != decider.decide(f, base, rules).by_option
    assert checked > 1000 and changed > 100 and forged > 100


def test_a_plan_that_sets_a_fact_outside_varied_facts_is_refused(evaluator, monkeypatch):
    """The decision of a scoped variant compares only the rules reading the facts `varied_facts` names for its
    field (review rev4 R3): a plan that set another fact (here, the cytogenetics plan setting `dialysis` too)
    would leave rules reading it undecided, so making such a plan is an error, not a silent miss."""
    from cds.decide.unknowns import VariantPlanner

    planner = VariantPlanner(evaluator.ruleset)
    untested = next(p for p in _profiles(evaluator, 50) if p.cytogenetics is None)
    derived = derive_values(untested, evaluator.vocabulary, "2026-01-01")
    assert any(field == "cytogenetics" for field, _ in planner.plan(derived.values, derived.not_applying)[1])
    made = VariantPlanner._cytogenetics_plan
    monkeypatch.setattr(
        VariantPlanner,
        "_cytogenetics_plan",
        lambda self, values: [(label, (*assignment, ("dialysis", True))) for label, assignment in made(self, values)],
    )
    fresh = VariantPlanner(evaluator.ruleset)
    with pytest.raises(AssertionError, match="a variant of cytogenetics sets facts outside varied_facts"):
        fresh.plan(derived.values, derived.not_applying)
