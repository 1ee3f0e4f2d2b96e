"""Issue 12 A: fitness decides CAR-T against the off-the-shelf alternative (rules/fitness.yaml).

The cases and their boundary pairs are in patient_profiles/ (fitness_*.json, checked by
tests/test_cases.py); the properties are test_5* in tests/test_properties.py. Here: the
unknown-fact analysis names renal function and frailty with the value that flips the order,
and the report says what lowered CAR-T.
"""

from __future__ import annotations

from conftest import load_case

from cds.api import build_report

FIXED = "2026-01-01T00:00:00Z"


def evaluate(evaluator, name: str, **changes):
    return evaluator.evaluate(evaluator.parse({**load_case(name), **changes}))


def effects(ev) -> dict[str, dict[str, str | None]]:
    return {u.field: {e.label: e.top for e in u.effects} for u in ev.unknown_facts if u.changes_top}


def test_unknown_renal_function_is_listed_with_the_value_that_puts_the_bispecific_first(evaluator):
    ev = evaluate(evaluator, "fitness_renal_not_assessed")
    assert ev.ranking.top == "bcma_car_t"
    found = effects(ev)
    assert found["creatinine_clearance_ml_min"] == {"< 30": "bcma_bispecific"}
    assert found["dialysis"] == {"true": "bcma_bispecific"}


def test_dialysis_is_not_a_fact_to_obtain_when_crcl_is_known_above_the_severe_threshold(evaluator):
    """Review R12-15: "On dialysis" was listed to obtain at CrCl 95 mL/min. A CrCl measured at or above
    $severe_renal_impairment_crcl_ml_min (30) makes dialysis implausible: not tried. Unknown CrCl: tried."""
    from cds.model.facts import derive

    data = {k: v for k, v in load_case("first_relapse_len_refractory").items() if k != "dialysis"}
    assert data["creatinine_clearance_ml_min"] == 95

    def tried(**changes) -> set[str]:
        facts = derive(evaluator.parse({**data, **changes}), evaluator.vocabulary)
        return {v.label for v in evaluator.planner.variants(facts) if v.field == "dialysis"}

    assert tried() == tried(creatinine_clearance_ml_min=30) == {"false"}
    assert tried(creatinine_clearance_ml_min=29.9) == tried(creatinine_clearance_ml_min=None) == {"true", "false"}
    assert "dialysis" not in effects(evaluator.evaluate(evaluator.parse(data)))
    # with CrCl unknown too, dialysis still changes the top option and is listed to obtain
    unknown_crcl = evaluator.evaluate(evaluator.parse({**data, "creatinine_clearance_ml_min": None}))
    assert effects(unknown_crcl)["dialysis"] == {"true": "anti_cd38_combination"}


def test_unknown_frailty_over_80_is_listed_with_fit_putting_car_t_first(evaluator):
    ev = evaluate(evaluator, "fitness_age81_frailty_not_assessed")
    assert ev.ranking.top == "bcma_bispecific" and "FIT-CART-001" in ev.fired
    assert effects(ev)["frailty"]["fit"] == "bcma_car_t"
    assert "intermediate" not in effects(ev)["frailty"], "intermediate lowers CAR-T just as unknown does"


def test_unknown_frailty_with_ecog_2_at_first_relapse_is_listed(evaluator):
    ev = evaluate(evaluator, "fitness_first_relapse_77_ecog2", age=70, frailty=None)
    assert ev.ranking.top == "anti_cd38_combination" and "FIT-STD-001" in ev.fired
    assert effects(ev)["frailty"]["fit"] == "bcma_car_t"


def test_the_report_says_what_lowered_car_t(evaluator):
    report = build_report(evaluate(evaluator, "fitness_dialysis_78_ecog2"), FIXED)
    car_t = next(o for o in report.options if o.id == "bcma_car_t")
    assert car_t.rank == 3  # below both bispecifics (review R12-17)
    assert "lowered by \u221220 Relative contraindication to CAR-T" in car_t.why
    assert car_t.score == sum(r.weight for r in car_t.rationale)


def test_car_t_stays_an_option_whatever_lowers_it(evaluator):
    for name in ("fitness_dialysis_78_ecog2", "fitness_crcl29_tce", "fitness_first_relapse_dialysis"):
        ev = evaluate(evaluator, name)
        assert "bcma_car_t" in ev.decision.order, name
        assert "bcma_car_t" not in ev.decision.excluded, name


def test_randomized_evidence_preference_follows_the_fitness_rule(evaluator):
    """SEQ-CART-002 (KarMMa-3 / CARTITUDE-4, ECOG 0-1 trials) is given to a younger fit ECOG 2 patient and
    withheld at the boundary where FIT-CART-001 ranks CAR-T below the alternative (ECOG 2 at 75), so CAR-T is
    lowered by the contraindication and never also raised by randomized evidence (clinical review)."""
    young = evaluate(evaluator, "first_relapse_len_refractory", ecog=2, age=74)
    old = evaluate(evaluator, "first_relapse_len_refractory", ecog=2, age=75)
    assert "SEQ-CART-002" in young.fired and "FIT-CART-001" not in young.fired
    assert "FIT-CART-001" in old.fired and "SEQ-CART-002" not in old.fired
    score = {o.id: o.score for o in old.ranking.options}
    assert score["bcma_car_t"] < score["anti_cd38_combination"], old.decision.order


def test_car_t_before_bispecific_preference_follows_the_fitness_rule(evaluator):
    """SEQ-CART-001 ('BCMA CAR-T before a BCMA bispecific', +15) applies exactly to the patients eligible for
    both without a relative contraindication (issue 12 A): page 1 must not give that instruction on the very
    line that ranks CAR-T below the bispecific (independent review R12-17)."""
    fit = evaluate(evaluator, "fitness_ecog1_age76_fit")
    unfit = evaluate(evaluator, "fitness_ecog2_age76_fit")
    assert "SEQ-CART-001" in fit.fired and fit.ranking.top == "bcma_car_t"
    assert "FIT-CART-001" in unfit.fired and "SEQ-CART-001" not in unfit.fired
    for name in ("fitness_dialysis_78_ecog2", "fitness_crcl29_tce", "fitness_age81_frailty_not_assessed"):
        ev = evaluate(evaluator, name)
        assert "FIT-CART-001" in ev.fired and "SEQ-CART-001" not in ev.fired, name
        order = ev.decision.order
        assert order.index("bcma_bispecific") < order.index("bcma_car_t"), (name, order)


def test_documented_intermediate_frailty_at_ecog_1_cautions_car_t_on_page_one(evaluator):
    """Clinical review CR-6: knowing the frailty (intermediate) must not make the report say less than not knowing it."""
    import json
    from pathlib import Path

    from cds.report.build import build_report
    from cds.report.render import render

    path = Path(__file__).resolve().parents[1] / "patient_profiles" / "fitness_intermediate_72_ecog1.json"
    data = json.loads(path.read_text())
    report = build_report(evaluator.evaluate(evaluator.parse(data)), "2026-12-02T00:00:00Z")
    assert report.options[0].id == "bcma_car_t" and report.options[0].key_caution == "CAUT-CART-003"
    assert "intermediate frailty: confirm fitness before CAR-T" in render(report, "markdown").split("## Facts to obtain")[0]
    fit = build_report(evaluator.evaluate(evaluator.parse({**data, "frailty": "fit"})), "2026-12-02T00:00:00Z")
    assert "CAUT-CART-003" not in {c.rule_id for o in fit.options for c in o.cautions}


def test_the_standard_combination_fitness_reason_does_not_name_car_t_where_car_t_is_excluded(evaluator):
    """Clinical review CR-17: FIT-STD-001's Why is true where CAR-T is excluded (frail_79_two_lines_tcr)."""
    import json
    from pathlib import Path

    from cds.report.build import build_report
    from cds.report.render import render

    path = Path(__file__).resolve().parents[1] / "patient_profiles" / "frail_79_two_lines_tcr.json"
    ev = evaluator.evaluate(evaluator.parse(json.loads(path.read_text())))
    assert "FIT-STD-001" in ev.fired
    page1 = render(build_report(ev, "2026-12-02T00:00:00Z"), "markdown").split("## Facts to obtain")[0]
    assert "+20 Renal impairment, or older or less fit, before the bispecifics' indication" in page1
    assert "contraindication to CAR-T" not in page1


def test_the_fitness_rule_text_states_the_order_the_cases_rank(evaluator):
    """Review CR-8: FIT-CART-001's rationale said CAR-T lands above the GPRC5D bispecific while the ranked
    table of the same report put it below (review R12-17's product decision). The text now says "below";
    in every case where the rule fires for a BCMA-naive patient with both bispecifics ranked, the order agrees."""
    from conftest import case_names

    text = " ".join(evaluator.ruleset.rule("FIT-CART-001").rationale.split())
    assert "below the GPRC5D bispecific" in text and "above the GPRC5D bispecific" not in text
    checked = 0
    for name in case_names():
        ev = evaluate(evaluator, name)
        order = ev.decision.order
        if "FIT-CART-001" not in ev.fired or ev.facts["bcma_exposed"].value is not False:
            continue
        if {"bcma_car_t", "gprc5d_bispecific", "bcma_bispecific"} <= set(order):
            assert order.index("bcma_bispecific") < order.index("gprc5d_bispecific") < order.index("bcma_car_t"), name
            checked += 1
    assert checked >= 3, checked
