"""Facts derived from the dates, responses, stop reasons and intolerances of the prior lines (issue 12 C).

Each is unknown -- never false -- when a date it needs is missing or when the dates' precision leaves
the 12-month boundary open; a fact about a therapy the patient never had does not apply (months) or is
false (relapse within 12 months of a BCMA CAR-T). Real validation and derivation on small profiles.
"""

from __future__ import annotations

import pytest

from cds.model.facts import derive


def facts(evaluator, lines: list[dict], **extra) -> dict:
    data = {"patient_id": "C", "age": 60, "ecog": 1, "prior_lines": lines, **extra}
    return derive(evaluator.parse(data), evaluator.vocabulary)


ASCT = {"regimen": "VRd", "autologous_transplant": True, "refractory_to": ["lenalidomide"]}
CILTA = {"agents": ["cilta-cel"], "refractory_to": []}
TEC = {"agents": ["teclistamab"]}


def test_relapse_within_12_months_of_bcma_car_t(evaluator):
    f = facts(evaluator, [ASCT, {**CILTA, "start_date": "2023-01-05", "progression_date": "2023-10-01"}])
    assert f["bcma_car_t_relapse_within_12_months"].value is True
    assert f["months_car_t_to_progression"].value == 8.8
    assert "2023-01-05" in f["bcma_car_t_relapse_within_12_months"].explanation
    late = facts(evaluator, [ASCT, {**CILTA, "start_date": "2023-01-05", "progression_date": "2024-06-01"}])
    assert late["bcma_car_t_relapse_within_12_months"].value is False


def test_relapse_after_car_t_counts_from_the_infusion_date(evaluator):
    """Review R12-19: a CAR-T line that starts at its apheresis counts the relapse from its infusion_date."""
    line = {**CILTA, "start_date": "2023-01-05", "infusion_date": "2023-03-06", "progression_date": "2024-02-05"}
    f = facts(evaluator, [ASCT, line])
    assert f["bcma_car_t_relapse_within_12_months"].value is True  # 11.0 months after the infusion
    assert f["months_car_t_to_progression"].value == 11.0
    assert "infused 2023-03-06" in f["months_car_t_to_progression"].explanation
    assert "read as the infusion" not in f["bcma_car_t_relapse_within_12_months"].explanation
    without = facts(evaluator, [ASCT, {k: v for k, v in line.items() if k != "infusion_date"}])
    assert without["bcma_car_t_relapse_within_12_months"].value is False  # 13.0 months after the start
    assert "the start of a CAR-T line is read as the infusion" in without["months_car_t_to_progression"].explanation
    # a progression before the infusion (during bridging) is no relapse after the CAR-T: unknown, never true
    bridging = {**line, "progression_date": "2023-02-20"}
    f = facts(evaluator, [ASCT, bridging])
    assert f["bcma_car_t_relapse_within_12_months"].value is None
    assert f["months_car_t_to_progression"].value is None
    assert "before the infusion" in f["months_car_t_to_progression"].explanation


def test_the_report_shows_the_infusion_date_of_a_car_t_line(evaluator):
    from cds.api import build_report, render

    line = {**CILTA, "start_date": "2023-01-05", "infusion_date": "2023-03-06", "progression_date": "2024-02-05"}
    data = {"patient_id": "C", "age": 60, "ecog": 1, "prior_lines": [{**ASCT, "transplant_date": "2022-06-01"}, line]}
    report = build_report(evaluator.evaluate(evaluator.parse(data)), "2026-01-01T00:00:00Z")
    assert report.lines[1].infusion_date == "2023-03-06" and report.lines[0].transplant_date == "2022-06-01"
    text = render(report, "markdown")
    assert "from 2023-01-05; CAR-T infused 2023-03-06; progression 2024-02-05" in text
    assert "ASCT 2022-06-01" in text


def test_relapse_after_car_t_is_unknown_without_dates_and_false_without_car_t(evaluator):
    for line in ({**CILTA}, {**CILTA, "start_date": "2023-01"}, {**CILTA, "progression_date": "2023-06"}):
        f = facts(evaluator, [ASCT, line])
        assert f["bcma_car_t_relapse_within_12_months"].value is None, line
        assert f["months_car_t_to_progression"].value is None
        assert f["months_car_t_to_progression"].applies
    # month precision that leaves the boundary open: 2023-01 to 2024-01 is 11.0-13.0 months
    f = facts(evaluator, [ASCT, {**CILTA, "start_date": "2023-01", "progression_date": "2024-01"}])
    assert f["bcma_car_t_relapse_within_12_months"].value is None
    f = facts(evaluator, [ASCT])
    assert f["bcma_car_t_relapse_within_12_months"].value is False
    assert f["months_car_t_to_progression"].value is None and not f["months_car_t_to_progression"].applies


def test_an_end_for_progression_is_a_progression(evaluator):
    line = {**CILTA, "start_date": "2023-01-05", "end_date": "2023-05-01", "stop_reason": "progression"}
    assert facts(evaluator, [ASCT, line])["bcma_car_t_relapse_within_12_months"].value is True
    line["stop_reason"] = "completed"
    assert facts(evaluator, [ASCT, line])["bcma_car_t_relapse_within_12_months"].value is None


def test_early_relapse_after_asct(evaluator):
    early = facts(evaluator, [{**ASCT, "start_date": "2022-01", "progression_date": "2022-11-20"}])
    assert early["early_relapse_after_asct"].value is True
    # 17 months after the line began, but the transplant may have come ~6 months into it (induction
    # first): within 12 months of the transplant cannot be told without its date -> unknown, not false
    # (clinical review M4: a known false for a patient who relapsed ~10 months after a usual ASCT)
    later = facts(evaluator, [{**ASCT, "start_date": "2022-01", "progression_date": "2023-06"}])
    assert later["early_relapse_after_asct"].value is None
    assert "transplant date is not in the profile" in later["early_relapse_after_asct"].explanation
    # the transplant is in the line, so before its end: progression over 12 months after the end is surely late
    late = facts(evaluator, [{**ASCT, "start_date": "2022-01", "end_date": "2022-07", "progression_date": "2023-09"}])
    assert late["early_relapse_after_asct"].value is False
    edge = facts(evaluator, [{**ASCT, "start_date": "2022-01", "end_date": "2022-07", "progression_date": "2023-06"}])
    assert edge["early_relapse_after_asct"].value is None
    assert facts(evaluator, [ASCT])["early_relapse_after_asct"].value is None  # no dates: unknown, not false
    no_asct = {**ASCT, "autologous_transplant": False}
    assert facts(evaluator, [no_asct])["early_relapse_after_asct"].value is False


def test_early_relapse_after_asct_counts_from_the_transplant_date(evaluator):
    """Review R12-20: induction then ASCT; with the transplant's date the 12 months count from it."""
    line = {**ASCT, "start_date": "2022-01", "transplant_date": "2022-07-10", "progression_date": "2023-05-15"}
    f = facts(evaluator, [line])  # 10.2 months after the transplant, 16 months after induction began
    assert f["early_relapse_after_asct"].value is True
    assert "transplant 2022-07-10 to progression 2023-05-15" in f["early_relapse_after_asct"].explanation
    assert "from its start" not in f["early_relapse_after_asct"].explanation
    without = {k: v for k, v in line.items() if k != "transplant_date"}
    assert facts(evaluator, [without])["early_relapse_after_asct"].value is None  # proxy: 16 months from the start
    late = facts(evaluator, [{**line, "progression_date": "2023-09-01"}])  # 13.7 months after the transplant
    assert late["early_relapse_after_asct"].value is False
    # progression before the transplant is no relapse after it
    before = facts(evaluator, [{**line, "progression_date": "2022-06-20"}])
    assert before["early_relapse_after_asct"].value is None
    assert "before the transplant 2022-07-10" in before["early_relapse_after_asct"].explanation


def test_months_since_bcma_and_gprc5d_therapy(evaluator):
    lines = [ASCT, {**CILTA, "end_date": "2023-01-05"}, {**TEC, "refractory_to": ["teclistamab"], "end_date": "2024-05-01"}]
    f = facts(evaluator, lines, evaluation_date="2025-03-10")
    assert f["months_since_bcma_therapy"].value == 10.3  # from the most recent: teclistamab
    assert "line 2" in f["months_since_bcma_therapy"].explanation  # each prior BCMA therapy is named
    assert f["months_since_gprc5d_therapy"].value is None and not f["months_since_gprc5d_therapy"].applies
    assert facts(evaluator, lines)["months_since_bcma_therapy"].value is None  # no evaluation_date: unknown
    lines[-1] = {**TEC, "refractory_to": ["teclistamab"]}
    assert facts(evaluator, lines, evaluation_date="2025-03-10")["months_since_bcma_therapy"].value is None


def test_intolerance_per_class(evaluator):
    line = {**ASCT, "intolerant_to": ["Velcade"]}
    f = facts(evaluator, [line])
    assert f["intolerant_pi"].value is True and f["intolerant_bortezomib"].value is True
    assert f["intolerant_carfilzomib"].value is False and f["intolerant_imid"].value is False
    # stopped for toxicity without saying which agent: unknown for the line's classes, known for the others
    f = facts(evaluator, [{**ASCT, "stop_reason": "toxicity"}])
    assert f["intolerant_pi"].value is None and f["intolerant_imid"].value is None
    assert f["intolerant_anti_cd38"].value is False
    # one agent besides steroids: that agent
    f = facts(evaluator, [ASCT, {**TEC, "refractory_to": [], "stop_reason": "toxicity"}])
    assert f["intolerant_bcma_bispecific"].value is True


def test_intolerance_not_recorded_is_unknown_never_false(evaluator):
    """Review R12-21 (issue 12 C: "all absent = unknown"): a line that gave a drug without recording
    intolerant_to says nothing of its tolerance; a drug never given is no intolerance; [] is none."""
    f = facts(evaluator, [{**ASCT}])  # VRd, intolerant_to not recorded
    assert f["intolerant_bortezomib"].value is None and f["intolerant_imid"].value is None
    assert "intolerance not recorded for bortezomib (line 1)" in f["intolerant_bortezomib"].explanation
    assert f["intolerant_carfilzomib"].value is False and "no line gave carfilzomib" in f["intolerant_carfilzomib"].explanation
    f = facts(evaluator, [{**ASCT, "intolerant_to": []}])
    assert f["intolerant_bortezomib"].value is False and f["intolerant_pi"].value is False
    # a recorded intolerance decides the class whatever other lines leave unrecorded
    kd = {"regimen": "Kd", "refractory_to": ["carfilzomib"]}
    f = facts(evaluator, [{**ASCT, "intolerant_to": ["bortezomib"]}, kd])
    assert f["intolerant_pi"].value is True and f["intolerant_bortezomib"].value is True
    assert f["intolerant_carfilzomib"].value is None  # line 2 does not record it
    assert (
        facts(evaluator, [{**ASCT, "intolerant_to": ["bortezomib"]}, {**kd, "intolerant_to": []}])["intolerant_carfilzomib"].value
        is False
    )


def test_a_bispecific_stopped_for_infections_in_response_is_not_refractoriness(evaluator):
    tec = {**TEC, "start_date": "2023-11", "end_date": "2024-05-01", "best_response": "VGPR", "stop_reason": "toxicity"}
    f = facts(evaluator, [ASCT, {**tec, "progression_date": "2024-12-01"}])
    assert f["bcma_bispecific_refractory"].value is False
    assert f["refractory_to_last_line"].value is False
    assert "more than 60 days" in f["bcma_bispecific_refractory"].explanation
    assert f["bispecific_stopped_for_toxicity_in_response"].value is True
    # progression within 60 days of the last dose, or no progression date: refractoriness stays unknown
    for prog in ("2024-06-15", None):
        line = {**tec, "progression_date": prog} if prog else tec
        assert facts(evaluator, [ASCT, line])["bcma_bispecific_refractory"].value is None
    # recorded refractoriness wins over the dates
    f = facts(evaluator, [ASCT, {**tec, "progression_date": "2024-12-01", "refractory_to": ["teclistamab"]}])
    assert f["bcma_bispecific_refractory"].value is True


def test_best_response_of_the_last_line(evaluator):
    f = facts(evaluator, [{**ASCT, "best_response": "VGPR"}, {**TEC, "refractory_to": ["teclistamab"], "best_response": "PD"}])
    assert f["last_line_best_response"].value == "PD"
    assert "line 1: VGPR" in f["last_line_best_response"].explanation
    assert facts(evaluator, [ASCT])["last_line_best_response"].value is None


def test_the_report_shows_each_lines_course_stop_reason_and_intolerance(evaluator):
    from cds.api import build_report, render

    lines = [
        {
            **ASCT,
            "start_date": "2022-01",
            "progression_date": "2022-11-20",
            "best_response": "VGPR",
            "intolerant_to": ["Velcade"],
        },
        {**TEC, "start_date": "2023-11", "end_date": "2024-05-01", "progression_date": "2024-12-01"}
        | {"best_response": "VGPR", "stop_reason": "toxicity"},
    ]
    data = {"patient_id": "C", "age": 60, "ecog": 1, "prior_lines": lines}
    report = build_report(evaluator.evaluate(evaluator.parse(data)), "2026-01-01T00:00:00Z")
    assert report.lines[0].intolerant_to == ["bortezomib"] and report.lines[1].stop_reason == "toxicity"
    assert "intolerant to bortezomib" in report.synopsis  # page 1's first line
    for fmt in ("markdown", "html"):
        text = render(report, fmt)
        assert "intolerant to bortezomib" in text, fmt
        assert "stopped for toxicity" in text, fmt
        assert "best response VGPR" in text and "progression 2022-11-20" in text, fmt
        assert "none by the dates" in text, fmt  # teclistamab: not refractory by the IMWG dates rule


def test_lazy_explanations_are_the_eager_ones_and_check_their_values(evaluator):
    """The pipeline derives the facts without their explanations (a batch never reads them); reading one
    derives again with them: the same texts as an eager derivation, and a value that is not the one
    derived (a fact edited after the derivation) cannot borrow an explanation."""
    from conftest import case_names, load_case

    checked = 0
    for name in case_names():
        ev = evaluator.evaluate(evaluator.parse(load_case(name)), "2026-01-01T00:00:00Z")
        eager = derive(ev.profile, evaluator.vocabulary, ev.evaluation_date)
        assert all(not isinstance(f.how, str) for f in ev.facts.values()), name  # nothing written yet
        assert [(k, f.value, f.applies) for k, f in ev.facts.items()] == [(k, f.value, f.applies) for k, f in eager.items()]
        assert [f.explanation for f in ev.facts.values()] == [f.explanation for f in eager.values()], name
        checked += 1
    assert checked > 20
    age = ev.facts["age"]
    with pytest.raises(AssertionError):
        _ = age._replace(value=age.value + 1).explanation


def test_refractory_to_salvage_chemotherapy_is_not_refractory_to_transplant_melphalan(evaluator):
    """Review R12-22: refractoriness to the conditioning melphalan of a transplant is refractoriness to a
    chemotherapy, not to the salvage agents (cyclophosphamide, doxorubicin, cisplatin, etoposide) the
    chemotherapy option names; refractoriness to one of those is; unrecorded is unknown."""
    mel = {
        "regimen": "VRd + ASCT",
        "agents": ["bortezomib", "lenalidomide", "dexamethasone", "melphalan"],
        "autologous_transplant": True,
        "refractory_to": ["lenalidomide", "melphalan"],
    }
    f = facts(evaluator, [mel])
    assert f["refractory_chemotherapy"].value is True
    assert f["refractory_salvage_chemotherapy"].value is False
    dcep = {"regimen": "DCEP", "refractory_to": ["etoposide"]}
    f = facts(evaluator, [mel, dcep])
    assert f["refractory_salvage_chemotherapy"].value is True
    assert "etoposide (line 2)" in f["refractory_salvage_chemotherapy"].explanation
    f = facts(evaluator, [mel, {"regimen": "PACE"}])
    assert f["refractory_salvage_chemotherapy"].value is None


@pytest.mark.parametrize(
    ("case", "option", "rule_id", "drug"),
    [
        ("v2_lenalidomide_intolerant_first_relapse", "anti_cd38_combination", "COURSE-IMID-001", "Lenalidomide"),
        ("v2_lenalidomide_intolerant_first_relapse", "pi_imid_regimen", "COURSE-IMID-001", "Lenalidomide"),
        ("v2_both_pi_intolerant", "anti_cd38_combination", "COURSE-PI-003", "Bortezomib and carfilzomib"),
        ("v2_daratumumab_intolerant", "anti_cd38_combination", "COURSE-CD38-001", "Anti-CD38 antibody"),
    ],
)
def test_page_one_names_the_drug_not_tolerated(evaluator, case, option, rule_id, drug):
    """Clinical review CR-15: an option built on a drug stopped for toxicity says so on page 1 (its key caution)."""
    import json
    from pathlib import Path

    from cds.api import build_report, render

    path = Path(__file__).resolve().parents[1] / "patient_profiles" / f"{case}.json"
    report = build_report(evaluator.evaluate(evaluator.parse(json.loads(path.read_text()))), "2026-12-02T00:00:00Z")
    shown = {o.id: o for o in report.options[:3]}
    assert shown[option].key_caution == rule_id
    page1 = render(report, "markdown").split("## Facts to obtain")[0]
    assert f"Caution: {drug}" in page1


def test_early_relapse_after_asct_makes_car_t_an_option_on_single_arm_evidence(evaluator):
    """Clinical review CR-13: early vs late relapse after ASCT (not lenalidomide-refractory) differ, and page 1 says why."""
    import json
    from pathlib import Path

    from cds.api import build_report, render

    def report(case: str):
        path = Path(__file__).resolve().parents[1] / "patient_profiles" / f"{case}.json"
        return build_report(evaluator.evaluate(evaluator.parse(json.loads(path.read_text()))), "2026-12-02T00:00:00Z")

    early, late = (
        report("v2_early_relapse_after_asct_not_len_refractory"),
        report("v2_late_relapse_after_asct_not_len_refractory"),
    )
    assert [o.id for o in early.options[:2]] == ["pi_imid_regimen", "bcma_car_t"]
    assert "bcma_car_t" in {x.id for x in late.excluded} and "bcma_car_t" not in {o.id for o in late.options}
    page1 = render(early, "markdown").split("## Facts to obtain")[0]
    assert "single-arm cohorts only (CARTITUDE-2 cohort B, KarMMa-2 cohort 2a)" in page1
    assert "the only product with trial evidence here" not in page1  # both products have a cohort
