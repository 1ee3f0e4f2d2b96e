"""Properties of the whole evaluation, on random valid profiles, through the real engine.

Profiles come from tests/strategies.py. The default run is fast (hypothesis
profile ``cds``); ``CDS_HYPOTHESIS_PROFILE=long`` runs many more examples.

Tests that can crash the process (durable-rules segfaults on some numbers, see
strategies.EXPONENT_NUMBERS) run the CLI in a worker subprocess, so that a crash
is a failing test, not a dead test run.
"""

from __future__ import annotations

import copy
import itertools
import json
import math
import os
import random
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest
from conftest import PROFILES, ROOT, RULES, load_case
from hypothesis import assume, event, given, note, settings
from hypothesis import strategies as st
from strategies import (
    BCMA_AGENTS,
    EXPONENT_NUMBERS,
    SETTINGS,
    THRESHOLDS,
    boundary_values,
    close_course,
    is_known_label,
    json_values,
    profiles,
    shuffle_keys,
)

from cds.decide.unknowns import SEVERE_RENAL_SETTING as SEVERE
from cds.errors import ProfileError
from cds.model.facts import (
    CYTO_FACT,
    CYTOGENETIC_ABNORMALITIES,
    FACTS,
    REFRACTORY_FIELD,
    derive,
    engine_facts,
    not_refractory_by_dates,
)
from cds.model.profile import line_drugs


def evaluate(evaluator, data: dict):
    return evaluator.evaluate(evaluator.parse(data))


def signature(ev) -> tuple:
    """Everything an evaluation decides (not the time stamp or the input hash).

    The derived facts by what they say (value, explanation, applies): the pipeline writes their
    explanations lazily (FactValue.how is then an Explainer, compared by identity)."""
    facts = {name: (f.value, f.explanation, f.applies) for name, f in ev.facts.items()}
    return (ev.ranking, facts, ev.fired, ev.unknown_facts, ev.unknown_without_effect)


def relation(ranking, a: str, b: str) -> int:
    """+1 if option a is ahead of b (ranked higher, or b excluded), -1 if behind, 0 if both excluded."""
    pos = {o.id: o.rank for o in ranking.options}
    pa, pb = pos.get(a, math.inf), pos.get(b, math.inf)
    if pa == pb:
        return 0
    return 1 if pa < pb else -1


# --------------------------------------------------------------------------- 1. determinism


@SETTINGS
@given(
    profile=profiles(),
    seed=st.integers(0, 2**32 - 1),
    new_id=st.text(min_size=1, max_size=60),
    new_labels=st.lists(st.one_of(st.none(), st.just("drop"), st.text(max_size=40)), min_size=12, max_size=12),
)
def test_1_evaluation_is_deterministic_and_ignores_key_order_and_labels(evaluator, profile, seed, new_id, new_labels):
    first = evaluate(evaluator, profile)
    base = signature(first)
    assert signature(evaluate(evaluator, copy.deepcopy(profile))) == base, "evaluated twice: different result"

    reordered = shuffle_keys(profile, random.Random(seed))
    again = evaluate(evaluator, reordered)
    assert signature(again) == base, "key order changed the result"
    assert again.input_hash == first.input_hash

    relabeled = copy.deepcopy(profile)
    relabeled["patient_id"] = new_id
    relabeled.pop("notes", None)
    for line, label in zip(relabeled["prior_lines"], new_labels):
        if "agents" not in line:
            continue  # the label is what says which agents the line had
        if label == "drop":
            line.pop("regimen", None)
        elif label is None or not is_known_label(label):  # a known label has a meaning: its agents
            line["regimen"] = label
    assert signature(evaluate(evaluator, relabeled)) == base, "patient_id, notes or regimen labels changed the result"


# --------------------------------------------------------------------------- 2. and 3. well-formed result


@SETTINGS
@given(profile=profiles())
def test_2_every_option_appears_exactly_once_and_ranks_have_no_gaps(evaluator, profile):
    ev = evaluate(evaluator, profile)
    ids = [o.id for o in ev.ranking.options] + [e.id for e in ev.ranking.excluded]
    assert len(ids) == len(set(ids)), ids
    assert sorted(ids) == sorted(evaluator.ruleset.option_ids)
    assert [o.rank for o in ev.ranking.options] == list(range(1, len(ev.ranking.options) + 1))


@SETTINGS
@given(profile=profiles())
def test_3_every_reason_cites_existing_evidence(evaluator, profile):
    ev = evaluate(evaluator, profile)
    entries = evaluator.ruleset.registry.entries
    reasons = [(o.id, r) for o in ev.ranking.options for r in (*o.rationale, *o.cautions, *o.next_steps)]
    for e in ev.ranking.excluded:
        assert e.reasons, f"{e.id} is excluded without a reason"
        reasons += [(e.id, r) for r in e.reasons]
    for option_id, r in reasons:
        assert r.evidence, f"{option_id}: {r.rule_id} cites nothing"
        missing = [x for x in r.evidence if x not in entries]
        assert not missing, f"{option_id}: {r.rule_id} cites unknown evidence {missing}"


# --------------------------------------------------------------------------- 4. monotonicity

WORSENINGS = ["worse_ecog", "organ_function_inadequate", "no_car_t_centre", "rapidly_progressive"]


@pytest.mark.parametrize("worsening", WORSENINGS)
@SETTINGS
@given(profile=profiles(), data=st.data())
def test_4_worse_fitness_or_access_never_moves_car_t_up_against_the_bispecific(evaluator, profile, data, worsening):
    worse = copy.deepcopy(profile)
    if worsening == "worse_ecog":
        assume(profile["ecog"] < 4)
        worse["ecog"] = data.draw(st.integers(profile["ecog"] + 1, 4), label="worse ecog")
    elif worsening == "organ_function_inadequate":
        worse["organ_function_adequate"] = False
    elif worsening == "no_car_t_centre":
        worse["car_t_center_access"] = False
    else:
        worse["rapidly_progressive"] = True
    before = relation(evaluate(evaluator, profile).ranking, "bcma_car_t", "bcma_bispecific")
    after = relation(evaluate(evaluator, worse).ranking, "bcma_car_t", "bcma_bispecific")
    assert after <= before, f"{worsening}: CAR-T moved up relative to the BCMA bispecific ({before} -> {after})"


def _bcma_options(ruleset) -> tuple[list[str], list[str]]:
    bcma = [o.id for o in ruleset.options if "BCMA" in o.targets]
    return bcma, [o.id for o in ruleset.options if o.id not in bcma]


@SETTINGS
@given(
    profile=profiles(),
    agent=st.sampled_from(BCMA_AGENTS),
    refractory=st.booleans(),
    data=st.data(),
)
def test_4_a_bcma_directed_prior_line_never_moves_a_bcma_option_up(evaluator, profile, agent, refractory, data):
    """Adding a BCMA-directed line vs adding the same line without the BCMA agent (a control
    with the same line count and refractoriness): no BCMA option gains against a non-BCMA one."""
    position = data.draw(st.integers(0, len(profile["prior_lines"])), label="insert at")
    control_line = {
        "agents": ["dexamethasone"],
        "refractory_to": ["dexamethasone"] if refractory else [],
        "autologous_transplant": False,
    }
    bcma_line = {
        "agents": [agent, "dexamethasone"],
        "refractory_to": [agent] if refractory else [],
        "autologous_transplant": False,
    }
    control, with_bcma = copy.deepcopy(profile), copy.deepcopy(profile)
    control["prior_lines"].insert(position, control_line)
    with_bcma["prior_lines"].insert(position, bcma_line)
    a = evaluate(evaluator, control).ranking
    b = evaluate(evaluator, with_bcma).ranking
    bcma, others = _bcma_options(evaluator.ruleset)
    # A dual-target product (e.g. GPRC5D/BCMA CAR-T) also hits another antigen: options against that
    # antigen may rightly fall (antigen exposure/refractoriness), which is not a BCMA effect.
    also_targets = set(evaluator.vocabulary.lookup(agent).targets) - {"BCMA"}
    others = [o for o in others if not also_targets & set(evaluator.ruleset.option(o).targets)]
    for x, y in itertools.product(bcma, others):
        before, after = relation(a, x, y), relation(b, x, y)
        assert after <= before, (
            f"prior {agent} ({'refractory' if refractory else 'not refractory'}) moved {x} up relative to {y}: "
            f"{before} -> {after}; order without BCMA line {a.decision.order}, with {b.decision.order}"
        )


# --------------------------------------------------------------------------- 5. CAR-T before the bispecific

#: the off-the-shelf standard combinations that are CAR-T's alternative before the bispecifics' indication
STANDARD_COMBINATIONS = ("anti_cd38_combination", "anti_slamf7_combination", "pi_imid_regimen")


def relative_contraindication(ruleset, facts) -> bool:
    """Issue 12 A, written out independently of rules/fitness.yaml: dialysis or CrCl below the severe
    renal impairment threshold; ECOG 2 with age >= the elderly age or with frailty intermediate or not
    recorded; age over the frailty-score age with frailty intermediate or not recorded."""
    value = {name: f.value for name, f in facts.items()}
    setting = {name: s.value for name, s in ruleset.settings.items()}
    crcl, frailty, ecog, age = (value[k] for k in ("creatinine_clearance_ml_min", "frailty", "ecog", "age"))
    not_documented_fit = frailty in ("intermediate", None)
    return bool(
        value["dialysis"] is True
        or (crcl is not None and crcl < setting["severe_renal_impairment_crcl_ml_min"])
        or (ecog == 2 and (age >= setting["elderly_age_years"] or not_documented_fit))
        or (age > setting["frailty_score_age_years"] and not_documented_fit)
    )


def off_the_shelf_alternative(ev, pos: dict[str, int]) -> str | None:
    """The alternative CAR-T ranks below on a relative contraindication: the BCMA bispecific when it is
    offered; before 3 lines with triple-class exposure, the best-ranked standard combination offered."""
    if "bcma_bispecific" in pos:
        return "bcma_bispecific"
    f = ev.facts
    if f["prior_line_count"].value < 3 or f["triple_class_exposed"].value is False:
        offered = [o for o in STANDARD_COMBINATIONS if o in pos]
        return min(offered, key=pos.__getitem__) if offered else None
    return None


@SETTINGS
@given(profile=st.one_of(profiles(tce_bcma_naive=True), profiles()))
def test_5_bcma_naive_patient_offered_both_without_a_relative_contraindication_gets_car_t_first(evaluator, profile):
    ev = evaluate(evaluator, profile)
    pos = {o.id: o.rank for o in ev.ranking.options}
    contraindicated = relative_contraindication(evaluator.ruleset, ev.facts)
    assert ("FIT-CART-001" in ev.fired) == contraindicated, "FIT-CART-001 disagrees with issue 12 A's definition"
    # the randomized-evidence preference (KarMMa-3, CARTITUDE-4: ECOG 0-1) is never given to a patient with a
    # relative contraindication (clinical review: SEQ-CART-002 fired at ECOG 2 where CAR-T should rank lower)
    assert not (contraindicated and "SEQ-CART-002" in ev.fired), "SEQ-CART-002 fired with a relative contraindication"
    # nor the CAR-T-before-bispecific preference: it is for patients eligible for both without one (review R12-17)
    assert not (contraindicated and "SEQ-CART-001" in ev.fired), "SEQ-CART-001 fired with a relative contraindication"
    assume("bcma_car_t" in pos and "bcma_bispecific" in pos)
    assume(ev.facts["bcma_exposed"].value is False)
    assume(ev.facts["rapidly_progressive"].value is not True)
    assume(not contraindicated)
    assert pos["bcma_car_t"] < pos["bcma_bispecific"], ev.decision.order


@SETTINGS
@given(profile=st.one_of(profiles(tce_bcma_naive=True), profiles()))
def test_5_a_relative_contraindication_ranks_car_t_below_the_off_the_shelf_alternative(evaluator, profile):
    ev = evaluate(evaluator, profile)
    pos = {o.id: o.rank for o in ev.ranking.options}
    assume("bcma_car_t" in pos and relative_contraindication(evaluator.ruleset, ev.facts))
    alternative = off_the_shelf_alternative(ev, pos)
    assume(alternative is not None)
    assert pos[alternative] < pos["bcma_car_t"], f"CAR-T above {alternative}: {ev.decision.order}"


@SETTINGS
@given(profile=st.one_of(profiles(tce_bcma_naive=True), profiles()), data=st.data())
def test_5_unknown_renal_function_or_frailty_that_would_flip_car_t_is_a_fact_that_matters(evaluator, profile, data):
    """CAR-T first with renal function unknown: CrCl < 30 or dialysis would put the alternative first, so
    each unknown one is listed as changing the top option; the alternative first only because frailty is
    not recorded: 'fit' would put CAR-T back above it, so frailty is listed."""
    field = data.draw(st.sampled_from(["creatinine_clearance_ml_min", "dialysis", "frailty"]), label="unknown")
    profile = copy.deepcopy(profile)
    profile.pop(field, None)
    ev = evaluate(evaluator, profile)
    pos = {o.id: o.rank for o in ev.ranking.options}
    assume("bcma_car_t" in pos and off_the_shelf_alternative(ev, pos) is not None)
    listed = {u.field for u in ev.unknown_facts if u.changes_top}
    if field != "frailty":
        assume(ev.ranking.top == "bcma_car_t")
        crcl = profile.get("creatinine_clearance_ml_min")
        if field == "dialysis" and crcl is not None and crcl >= evaluator.ruleset.settings[SEVERE].value:
            # a measured CrCl at or above the severe threshold rules dialysis out (review R12-15)
            assert field not in listed, f"dialysis listed with CrCl {crcl}"
            return
        assert field in listed, f"{field} unknown with CAR-T first; listed {sorted(listed)}"
        return
    fit = copy.deepcopy(profile)
    fit["frailty"] = "fit"
    assume(relative_contraindication(evaluator.ruleset, ev.facts))
    assume(not relative_contraindication(evaluator.ruleset, evaluate(evaluator, fit).facts))
    assume(ev.ranking.top == "bcma_bispecific" and ev.facts["bcma_exposed"].value is False)
    assume(ev.facts["rapidly_progressive"].value is not True)
    assert "frailty" in listed, f"frailty unknown puts the bispecific first; listed {sorted(listed)}"


# --------------------------------------------------------------------------- 6. eligibility invariants


@SETTINGS
@given(profile=st.one_of(profiles(), profiles(tce_bcma_naive=True)))
def test_6_bispecific_and_bcl2_are_offered_only_inside_their_indication(evaluator, profile):
    ev = evaluate(evaluator, profile)
    offered = {o.id for o in ev.ranking.options}
    vocab = evaluator.vocabulary
    classes = {r.drug.drug_class for line in ev.profile.prior_lines for r in line_drugs(line, vocab)}
    if "bcma_bispecific" in offered:
        assert len(profile["prior_lines"]) >= 3, "BCMA bispecific offered with fewer than 3 prior lines"
        assert {"imid", "pi", "anti_cd38"} <= classes, f"BCMA bispecific offered without triple-class exposure: {classes}"
    if "bcl2_inhibitor" in offered:
        assert "t(11;14)" in (profile.get("cytogenetics") or []), "BCL2 inhibitor offered without t(11;14)"
    # best supportive care as the plan: offered exactly at ECOG 3-4, and on page 1 (the top three) at ECOG 4
    # (clinical review M10; SEQ-BSC-001)
    assert ("best_supportive_care" in offered) == (profile["ecog"] >= 3), (profile["ecog"], sorted(offered))
    if profile["ecog"] == 4:
        assert "best_supportive_care" in [o.id for o in ev.ranking.options][:3], ev.decision.order


# --------------------------------------------------------------------------- 7. unknown facts, by brute force


def _set_field(profile: dict, field: str, value) -> dict:
    out = copy.deepcopy(profile)
    if field.startswith("labs."):
        labs = out.get("labs") or {}
        labs[field.split(".", 1)[1]] = value
        out["labs"] = labs
    else:
        out[field] = value
    return out


def _field_values(field: str) -> list:
    if field == "cytogenetics":
        return [
            list(c)
            for k in range(len(CYTOGENETIC_ABNORMALITIES) + 1)
            for c in itertools.combinations(CYTOGENETIC_ABNORMALITIES, k)
        ]
    (spec,) = [s for s in FACTS.values() if s.input_field == field]
    return _spec_values(spec)


def _spec_values(spec) -> list:
    if spec.type == "bool":
        return [True, False]
    if spec.type == "enum":
        return list(spec.values)
    return sorted(set(boundary_values(spec.name, spec.minimum or 0.0)) | {spec.minimum or 0.0, 12.5, 100000.0})


def _field_variants(evaluator, profile: dict, field: str) -> list[dict]:
    """Every profile that gives the unknown `field` a value (for refractoriness: each line that does not
    record it, one at a time, with every subset of its agents)."""
    if field == "cytogenetics" and profile.get("cytogenetics_tested") is not None:
        # a partial panel: keep what was found and tested; complete what was not probed (then a whole panel)
        found = list(profile.get("cytogenetics") or [])
        tested = evaluator.vocabulary.cytogenetics_tested(found, profile["cytogenetics_tested"])
        untested = [a for a in CYTOGENETIC_ABNORMALITIES if a not in tested]
        out = []
        for k in range(len(untested) + 1):
            for extra in itertools.combinations(untested, k):
                variant = _set_field(profile, "cytogenetics", [*found, *extra])
                del variant["cytogenetics_tested"]
                out.append(variant)
        return out
    if field != REFRACTORY_FIELD:
        return [_set_field(profile, field, value) for value in _field_values(field)]
    parsed = evaluator.parse(profile)
    out = []
    for i, line in enumerate(profile["prior_lines"]):
        if "refractory_to" in line and line["refractory_to"] is not None:
            continue
        if not_refractory_by_dates(parsed.prior_lines[i]) is not None:
            continue  # not refractory by its dates (response, progression > 60 days after the end): known
        names = [r.written for r in line_drugs(parsed.prior_lines[i], evaluator.vocabulary)]
        for k in range(len(names) + 1):
            for subset in itertools.combinations(names, k):
                variant = copy.deepcopy(profile)
                variant["prior_lines"][i]["refractory_to"] = list(subset)
                out.append(variant)  # [] after no response (SD/PD) is refused: not a possible record
    return out


def dialysis_plausible(evaluator, facts) -> bool:
    """Review R12-15, a product decision: a measured CrCl at or above the severe renal impairment
    threshold makes dialysis implausible, so "on dialysis" is not a value to try (unknown CrCl: it is)."""
    crcl = facts["creatinine_clearance_ml_min"].value
    return crcl is None or crcl < evaluator.ruleset.settings["severe_renal_impairment_crcl_ml_min"].value


def brute_force_unknowns(evaluator, profile: dict, base) -> tuple[set[str], set[str]]:
    """(fields some value of which changes the top option, fields some value of which changes anything)."""
    base_facts = derive(evaluator.parse(profile), evaluator.vocabulary)
    unknown_fields = sorted(
        {
            s.input_field
            for s in FACTS.values()
            if s.input_field
            and base_facts[s.name].value is None
            and base_facts[s.name].applies
            # a risk unknown only because the sources do not classify what was found (t(14;20)) on a
            # complete result is no unknown input: no value of the profile's fields is left to vary
            and not (s.name == "high_risk_cytogenetics" and all(base_facts[f].value is not None for f in CYTO_FACT.values()))
        }
    )
    changes_top, changes_any = set(), set()
    for field in unknown_fields:
        variants = []
        if field.startswith("prior_lines[") and field != REFRACTORY_FIELD:
            # derived from the lines' dates, responses or intolerances: each value of each unknown fact
            # of that field (the profile could give it through dates the test cannot invent in general)
            for spec in FACTS.values():
                if spec.input_field == field and base_facts[spec.name].value is None:
                    for value in _spec_values(spec):
                        variants.append({**base_facts, spec.name: base_facts[spec.name]._replace(value=value)})
        else:
            for candidate in _field_variants(evaluator, profile, field):
                if field == "dialysis" and candidate.get("dialysis") is True and not dialysis_plausible(evaluator, base_facts):
                    continue
                try:
                    parsed = evaluator.parse(candidate)
                except ProfileError:
                    continue  # beyond the profile's valid range: not a possible value
                variants.append(derive(parsed, evaluator.vocabulary))
        fired = []
        for start in range(0, len(variants), 64):
            fired += evaluator.engine.run([engine_facts(f) for f in variants[start : start + 64]])
        for f in fired:
            d = evaluator.decider.decide(f)
            if d.top != base.top:
                changes_top.add(field)
            if d.top != base.top or d.order != base.order or set(d.excluded) != set(base.excluded):
                changes_any.add(field)
    return changes_top, changes_any


@settings(SETTINGS, max_examples=max(10, SETTINGS.max_examples // 2))
@given(profile=profiles())
def test_7_unknown_facts_that_matter_are_exactly_those_that_can_change_the_top_option(evaluator, profile):
    ev = evaluate(evaluator, profile)
    expected_top, expected_any = brute_force_unknowns(evaluator, profile, ev.decision)
    listed_top = {u.field for u in ev.unknown_facts if u.changes_top}
    listed_any = {u.field for u in ev.unknown_facts}
    note(f"top {ev.ranking.top}; brute force: top {sorted(expected_top)}, any {sorted(expected_any)}")
    assert listed_top == expected_top, (
        f"unknown facts that matter: listed {sorted(listed_top)}, brute force {sorted(expected_top)}"
    )
    assert listed_any == expected_any, (
        f"unknown facts with any effect: listed {sorted(listed_any)}, brute force {sorted(expected_any)}"
    )


@SETTINGS
@given(profile=profiles())
def test_7_an_abnormality_outside_a_stated_panel_is_never_not_detected(evaluator, profile):
    """Review R12-09 (unknown is not false): with `cytogenetics_tested`, an abnormality neither found nor in
    the panel (by its probe) is unknown, and the risk is 'not high' only when every high-risk and
    unclassified abnormality was tested; without it, the list is the whole panel (the v1 meaning)."""
    vocab = evaluator.vocabulary
    facts = derive(evaluator.parse(profile), vocab)
    cyto = profile.get("cytogenetics")
    if cyto is None:
        assert all(facts[f].value is None for f in (*CYTO_FACT.values(), "high_risk_cytogenetics"))
        return
    tested = vocab.cytogenetics_tested(cyto, profile.get("cytogenetics_tested"))
    for abn, fact in CYTO_FACT.items():
        expected = True if abn in cyto else (False if abn in tested else None)
        assert facts[fact].value is expected, (abn, facts[fact])
    risk = facts["high_risk_cytogenetics"].value
    assert (risk is True) == any(a in cyto for a in vocab.high_risk_cytogenetics)
    if risk is False:
        assert set(vocab.high_risk_cytogenetics) | set(vocab.unclassified_cytogenetics) <= tested
        assert not set(vocab.unclassified_cytogenetics) & set(cyto)


def test_7_brute_force_sees_a_known_effect(evaluator):
    """The brute force itself works: unknown cytogenetics can make the BCL2 inhibitor available."""
    data = load_case("fit_tcr_bcma_naive")
    data.pop("cytogenetics")
    ev = evaluate(evaluator, data)
    _, changes_any = brute_force_unknowns(evaluator, data, ev.decision)
    assert "cytogenetics" in changes_any


_DATES = ("start_date", "end_date", "progression_date")
#: facts derived from the lines' dates (issue 12 C)
_DATE_FACTS = (
    "bcma_car_t_relapse_within_12_months",
    "early_relapse_after_asct",
    "months_car_t_to_progression",
    "months_since_bcma_therapy",
    "months_since_gprc5d_therapy",
)


@SETTINGS
@given(profile=profiles(), data=st.data())
def test_7_a_missing_date_makes_a_date_fact_unknown_never_false(evaluator, profile, data):
    """Removing dates from a v2 profile never turns a date-derived fact into a known value it did not
    have: a known fact either stays as it was (other dates still decide it) or becomes unknown --
    except a fact about a therapy never given, which does not depend on dates at all."""
    before = derive(evaluator.parse(profile), evaluator.vocabulary)
    stripped = copy.deepcopy(profile)
    for line in stripped["prior_lines"]:
        for key in _DATES:
            if key in line and data.draw(st.booleans(), label=f"drop {key}"):
                del line[key]
    after = derive(evaluator.parse(stripped), evaluator.vocabulary)
    for name in _DATE_FACTS:
        b, a = before[name], after[name]
        assert a.applies == b.applies, name  # whether a therapy was given does not depend on dates
        assert a.value is None or a.value == b.value, f"{name}: {b.value} -> {a.value} after removing dates"
    no_dates = copy.deepcopy(profile)
    for line in no_dates["prior_lines"]:
        for key in _DATES:
            line.pop(key, None)
    none = derive(evaluator.parse(no_dates), evaluator.vocabulary)
    for name in ("bcma_car_t_relapse_within_12_months", "early_relapse_after_asct"):
        exposed = none["bcma_car_t_exposed" if name.startswith("bcma") else "prior_autologous_transplant"].value
        assert none[name].value is (None if exposed else False), f"{name} without any date: {none[name].value}"


# --------------------------------------------------------------------------- 7b. every completion of the unknowns

#: at most this many completions per profile (the product of the kept fields' values): seconds per run
MAX_COMPLETIONS = 96


def _domain(evaluator, profile: dict, field: str) -> list[tuple[str, object]]:
    """The values a completion can give one unknown field, as (path, value): every value of a flag or a
    category; for a number, each side of every threshold the rules use (t - 0.5, t, t + 0.5), its minimum
    and a value above all; for a line's refractory_to ("prior_lines.<i>.refractory_to"), every subset of
    its agents. Written from the profile contract and the rules' thresholds, not from cds.decide.unknowns."""
    if field.startswith("prior_lines."):
        i = int(field.split(".")[1])
        parsed = evaluator.parse(profile)
        names = [r.written for r in line_drugs(parsed.prior_lines[i], evaluator.vocabulary)]
        return [(field, list(s)) for k in range(len(names) + 1) for s in itertools.combinations(names, k)]
    (spec,) = [s for s in FACTS.values() if s.input_field == field]
    if spec.type == "bool":
        return [(field, True), (field, False)]
    if spec.type == "enum":
        return [(field, v) for v in spec.values]
    lo = spec.minimum or 0.0
    cuts = [float(t) for t in THRESHOLDS.get(spec.name, [])]
    values = {lo, (max(cuts) if cuts else lo) + 50.0}
    values |= {v for t in cuts for v in (t - 0.5, t, t + 0.5) if v >= lo}
    return [(field, v) for v in sorted(values)]


def _put(profile: dict, path: str, value) -> dict:
    out = copy.deepcopy(profile)
    if path.startswith("prior_lines."):
        out["prior_lines"][int(path.split(".")[1])]["refractory_to"] = value
    elif path.startswith("labs."):
        out["labs"] = {**(out.get("labs") or {}), path.split(".", 1)[1]: value}
    else:
        out[path] = value
    return out


def _unknown_fields(evaluator, profile: dict) -> list[str]:
    """The patient fields left unknown (a line's refractoriness: one field per line that does not record it)."""
    facts = derive(evaluator.parse(profile), evaluator.vocabulary)
    fields = {
        s.input_field
        for s in FACTS.values()
        if s.input_field and facts[s.name].value is None and facts[s.name].applies and s.input_field != "cytogenetics"
    }
    assert not {f for f in fields if f.startswith("prior_lines[") and f != REFRACTORY_FIELD}, fields  # close_course
    out = sorted(f for f in fields if f != REFRACTORY_FIELD)
    if REFRACTORY_FIELD in fields:
        out += [
            f"prior_lines.{i}.refractory_to" for i, line in enumerate(profile["prior_lines"]) if line.get("refractory_to") is None
        ]
    return out


def _reported(field: str) -> str:
    return REFRACTORY_FIELD if field.startswith("prior_lines.") else field


_EVALUATOR: list = []
#: patient fields the ranking turns on (fitness, access, disease pace): left unknown and kept first
_DECISIVE = (
    "dialysis",
    "creatinine_clearance_ml_min",
    "frailty",
    "car_t_center_access",
    "rapidly_progressive",
    "organ_function_adequate",
    "active_serious_infection",
)


@st.composite
def profiles_with_few_unknowns(draw) -> tuple[dict, list[str]]:
    """A profile from profiles(), its course closed (strategies.close_course), its cytogenetics given (the
    whole panel: a drawn set of abnormalities), and every unknown field but a few completed with a drawn
    value, so that the kept ones have at most MAX_COMPLETIONS completions together."""
    evaluator = _EVALUATOR[0]
    profile = close_course(draw(st.one_of(profiles(tce_bcma_naive=True), profiles())))
    profile.pop("cytogenetics_tested", None)
    for field in draw(st.sets(st.sampled_from(_DECISIVE), max_size=2)):
        profile.pop(field, None)  # left unknown more often than profiles() leaves it
    if profile.get("cytogenetics") is None:
        profile["cytogenetics"] = sorted(draw(st.sets(st.sampled_from(CYTOGENETIC_ABNORMALITIES), max_size=3)))
    try:
        fields = _unknown_fields(evaluator, profile)
    except ProfileError:
        assume(False)
    order = sorted(draw(st.permutations(fields)), key=lambda f: f not in _DECISIVE)  # decisive ones kept first
    limit = draw(st.integers(1, 4))  # one kept field: the converse is then exactly "the value that flips it is said"
    kept, size = [], 1
    for field in order:
        n = len(_domain(evaluator, profile, field))
        if len(kept) < limit and size * n <= MAX_COMPLETIONS:
            kept.append(field)
            size *= n
        else:
            path, value = draw(st.sampled_from(_domain(evaluator, profile, field)))
            profile = _put(profile, path, value)
    # a drawn completion can make the profile one the contract refuses (refractory_to [] after a best
    # response of SD or PD): that is no patient, so no example (the evaluation below would raise)
    assume(_plausible(evaluator, profile))
    return profile, kept


def _plausible(evaluator, completion: dict) -> bool:
    """Review R12-15 (a product decision): dialysis with a CrCl at or above the severe renal impairment
    threshold is no possible patient, and refractory_to [] after no response (SD/PD) is refused."""
    crcl = completion.get("creatinine_clearance_ml_min")
    if completion.get("dialysis") is True and crcl is not None and crcl >= evaluator.ruleset.settings[SEVERE].value:
        return False
    try:
        evaluator.parse(completion)
    except ProfileError:
        return False
    return True


@settings(SETTINGS, max_examples=max(10, SETTINGS.max_examples // 2))
@given(data=st.data())
def test_7_every_completion_of_the_unknowns_agrees_with_the_reported_top(evaluator, data):
    """Review R12-02: if every completion of the unknown fields gives the same top option, the report's top
    is that option and no unknown fact is said to change it; conversely an unknown fact said to change the
    top does so in some completion, and a fact one value of which settles another top in every completion
    is said to change it. A brute force over the joint completions of a few unknown fields (the others
    completed by a drawn value), independent of cds.decide.unknowns (which varies one field at a time, the
    others left unknown). Fields coupled by plausibility (dialysis only below the severe-renal CrCl) are
    why the converse is "in some completion", not "between two completions differing in it alone"."""
    _EVALUATOR[:] = [evaluator]
    profile, kept = data.draw(profiles_with_few_unknowns())
    ev = evaluate(evaluator, profile)
    completions = []
    for choice in itertools.product(*(_domain(evaluator, profile, f) for f in kept)):
        c = profile
        for path, value in choice:
            c = _put(c, path, value)
        if _plausible(evaluator, c):
            completions.append((choice, c))
    assume(completions)
    facts = [derive(evaluator.parse(c), evaluator.vocabulary) for _, c in completions]
    fired = []
    for start in range(0, len(facts), 64):
        fired += evaluator.engine.run([engine_facts(f) for f in facts[start : start + 64]])
    tops = [evaluator.decider.decide(f).top for f in fired]
    said = {u.field for u in ev.unknown_facts if u.changes_top}
    note(f"kept {kept}; {len(completions)} completions; tops {sorted(set(tops))}; report {ev.decision.top}, said {sorted(said)}")
    event(f"{len(kept)} unknown field(s) kept")
    event("every completion: the same top" if len(set(tops)) == 1 else "completions differ in the top")
    event(f"{len(said)} said to change the top")
    if len(set(tops)) == 1:
        assert ev.decision.top == tops[0]
        assert not said, f"every completion gives {tops[0]}, yet {sorted(said)} said to change the top"
    # the tops of the completions that give one kept field (a line's refractory_to: one line) each value
    by_value: dict[str, dict[str, set[str | None]]] = {}
    for (choice, _), top in zip(completions, tops):
        for path, value in choice:
            by_value.setdefault(path, {}).setdefault(json.dumps(value), set()).add(top)
    for path, tops_by_value in by_value.items():
        for value, seen in tops_by_value.items():
            if len(seen) == 1 and seen != {ev.decision.top}:
                # knowing this value settles a different top: the field must be said to change it
                assert _reported(path) in said, f"{path} = {value} gives {seen} in every completion, report {ev.decision.top}"
    for field in said:
        paths = [p for p in kept if _reported(p) == field]
        assert paths, f"{field} said to change the top but not unknown"
        assert any(seen - {ev.decision.top} for p in paths for seen in by_value[p].values()), (
            f"{field} said to change the top; no completion gives another top"
        )


# --------------------------------------------------------------------------- 8. robustness of `cds evaluate`

_WORKER = r"""
import json, sys
sys.path.insert(0, "tests")  # cwd is the checkout: tests/schemas.py checks a JSON report against its schema
from typer.testing import CliRunner
from cds.apps.cli import app
import schemas
runner = CliRunner()
for line in sys.stdin:
    args = json.loads(line)
    r = runner.invoke(app, args)
    exc = r.exception
    schema_error = None
    if r.exit_code == 0 and args[-2:] == ["--format", "json"]:
        try:
            schemas.validate(schemas.REPORT, json.loads(r.stdout))
        except Exception as e:
            schema_error = f"{type(e).__name__}: {e}"[:1500]
    out = {
        "exit_code": r.exit_code,
        "traceback": "Traceback" in r.stdout or "Traceback" in r.stderr,
        "stderr": r.stderr[:1500],  # the start: the test checks that it begins with "error: "
        "exception": None if exc is None or isinstance(exc, SystemExit) else f"{type(exc).__name__}: {exc}"[:500],
        "schema_error": schema_error,  # a report on stdout that breaks report.schema.json (a subprocess: not seen by conftest)
    }
    sys.stdout.write(json.dumps(out) + "\n")
    sys.stdout.flush()
"""


class CliWorker:
    """`cds` run through typer's CliRunner in a subprocess: a crash fails one example, not the run."""

    def __init__(self) -> None:
        self.proc: subprocess.Popen | None = None

    def _start(self) -> subprocess.Popen:
        env = {k: v for k, v in os.environ.items() if k not in ("CDS_DEBUG", "CDS_RULES_DIR")}
        env["PYTHONPATH"] = str(ROOT) + os.pathsep + env.get("PYTHONPATH", "")
        return subprocess.Popen(
            [sys.executable, "-c", _WORKER],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            text=True,
            cwd=ROOT,
            env=env,
        )

    def invoke(self, args: list[str]) -> dict:
        if self.proc is None or self.proc.poll() is not None:
            self.proc = self._start()
        assert self.proc.stdin and self.proc.stdout
        try:
            self.proc.stdin.write(json.dumps(args) + "\n")
            self.proc.stdin.flush()
            line = self.proc.stdout.readline()
        except BrokenPipeError:
            line = ""
        if not line:
            code = self.proc.wait(timeout=30)
            self.proc = None
            return {"exit_code": None, "crashed": code, "traceback": False, "stderr": "", "exception": None}
        return json.loads(line)

    def close(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.stdin.close()  # type: ignore[union-attr]
            self.proc.wait(timeout=30)


@pytest.fixture(scope="session")
def cli_worker():
    worker = CliWorker()
    yield worker
    worker.close()


@pytest.fixture(scope="session")
def scratch():
    with tempfile.TemporaryDirectory(prefix="cds-robust-") as d:
        yield Path(d)


def check_cli(worker: CliWorker, scratch: Path, content: bytes, fmt: str = "json") -> dict:
    path = scratch / "input.json"
    path.write_bytes(content)
    result = worker.invoke(["evaluate", str(path), "--rules", str(RULES), "--format", fmt])
    shown = content[:300]
    assert "crashed" not in result, f"the process died (exit {result['crashed']}) on input {shown!r}"
    assert result["exception"] is None, f"{result['exception']} on input {shown!r}"
    assert not result["traceback"], f"a traceback was printed on input {shown!r}: {result['stderr']}"
    assert result["exit_code"] in (0, 2), f"exit {result['exit_code']} on input {shown!r}: {result['stderr']}"
    assert result.get("schema_error") is None, f"{result['schema_error']} on input {shown!r}"
    if result["exit_code"] == 2:
        assert result["stderr"].startswith("error: "), result["stderr"]
    return result


def _valid_text() -> bytes:
    return (PROFILES / "fit_tcr_bcma_naive.json").read_bytes()


def _mutated_profiles():
    base = json.loads(_valid_text())
    paths = [
        ("age",),
        ("ecog",),
        ("frailty",),
        ("labs",),
        ("labs", "crp_mg_l"),
        ("cytogenetics",),
        ("prior_lines",),
        ("prior_lines", 0),
        ("prior_lines", 0, "agents"),
        ("prior_lines", 0, "agents", 0),
        ("prior_lines", -1, "refractory_to"),
        ("prior_lines", 1, "autologous_transplant"),
        ("patient_id",),
        ("creatinine_clearance_ml_min",),
        ("extra_key",),
    ]

    @st.composite
    def mutate(draw):
        data = copy.deepcopy(base)
        for _ in range(draw(st.integers(1, 3))):
            path = draw(st.sampled_from(paths))
            remove = draw(st.booleans())
            value = draw(json_values)
            node = data
            try:
                for key in path[:-1]:
                    node = node[key] if not isinstance(node, dict) or key in node else node.setdefault(key, {})
                if remove and isinstance(node, dict):
                    node.pop(path[-1], None)
                else:
                    node[path[-1]] = value
            except (TypeError, IndexError, KeyError):
                continue  # an earlier mutation replaced the container: nothing to mutate here
        return data

    return mutate()


_RAW_TEMPLATES = [
    b"",
    b"   \n",
    b"\xef\xbb\xbf" + _valid_text(),
    b"[" * 100_000 + b"]" * 100_000,
    b'{"a":' * 5_000 + b"1" + b"}" * 5_000,
    b"[" * 900 + b"]" * 900,
    _valid_text().replace(b'"age": 58', b'"age": ' + b"9" * 5000),
    _valid_text().replace(b'"age": 58', b'"age": 1e400'),
    _valid_text().replace(b'"age": 58', b'"age": -0'),
    _valid_text().replace(b'"age": 58', b'"age": NaN'),
    _valid_text().replace(b'"TB-001"', b'"\\ud800"'),
    _valid_text().replace(b'"TB-001"', b'"\\u0000 \xe4\xb8\xad \\n"'),
    _valid_text().replace(b'"frailty": "fit"', b'"frailty": "fit", "frailty": "frail"'),
    _valid_text().replace(b'"ecog": 1', b'"ecog": 1, "a\\nb": 1'),
    b"\xff\xfe{}",
    b'{"patient_id": "x"}',
    b"null",
    b'"just a string"',
]


@pytest.mark.parametrize("index", range(len(_RAW_TEMPLATES)))
def test_8_nasty_files_end_with_exit_0_or_2(cli_worker, scratch, index):
    check_cli(cli_worker, scratch, _RAW_TEMPLATES[index])


@settings(SETTINGS, max_examples=SETTINGS.max_examples * 3)
@given(
    content=st.one_of(
        json_values.map(lambda v: json.dumps(v).encode()),
        _mutated_profiles().map(lambda v: json.dumps(v, ensure_ascii=False).encode()),
        st.binary(max_size=200),
        st.text(max_size=200).map(lambda t: t.encode("utf-8", "surrogatepass")),
    ),
    fmt=st.sampled_from(["json", "markdown", "html"]),
)
def test_8_arbitrary_json_ends_with_exit_0_or_2_and_no_traceback(cli_worker, scratch, content, fmt):
    check_cli(cli_worker, scratch, content, fmt)


@pytest.mark.parametrize(
    "field, value", [("labs.crp_mg_l", v) for v in EXPONENT_NUMBERS] + [("creatinine_clearance_ml_min", 2e-07)], ids=repr
)
def test_1_valid_profiles_with_numbers_in_exponent_form_evaluate(cli_worker, scratch, field, value):
    """Valid values such as a CRP of 1e-05 mg/L: exit 0 (or 2 if out of range), never a crash."""
    data = _set_field(json.loads(_valid_text()), field, value)
    check_cli(cli_worker, scratch, json.dumps(data).encode())
