"""Profile v2 (issue 12 C): the new optional fields, regimen labels, what a new user writes, and errors.

Every profile valid before v2 keeps its meaning: the cases in patient_profiles/ are v1 profiles and
tests/test_cases.py checks their outcomes; here each new field and rule of the contract is tested on
small profiles through the real validation, derivation and engine.
"""

from __future__ import annotations

import copy

import pytest
from conftest import load_case

from cds.errors import ProfileError
from cds.model.facts import REFRACTORY_FIELD, derive, refractoriness_alternatives


def minimal(**extra) -> dict:
    """A small valid profile: one line (VRd + ASCT), refractory to lenalidomide."""
    p = {
        "patient_id": "V2",
        "age": 60,
        "ecog": 1,
        "prior_lines": [
            {
                "regimen": "VRd",
                "agents": ["bortezomib", "lenalidomide", "dexamethasone"],
                "refractory_to": ["lenalidomide"],
                "autologous_transplant": True,
            }
        ],
    }
    p.update(extra)
    return p


def problems(evaluator, data) -> list[tuple[str, str]]:
    with pytest.raises(ProfileError) as info:
        evaluator.parse(data)
    return list(info.value.problems)


def one_problem(evaluator, data) -> tuple[str, str]:
    found = problems(evaluator, data)
    assert len(found) == 1, found
    return found[0]


# --------------------------------------------------------------------------- regimen labels


def test_a_known_label_stands_for_its_agents(evaluator):
    explicit = evaluator.parse(minimal())
    line = {"regimen": "VRd", "refractory_to": ["lenalidomide"], "autologous_transplant": True}
    short = evaluator.parse(minimal(prior_lines=[line]))
    assert short.prior_lines[0].agents == ["bortezomib", "lenalidomide", "dexamethasone"]
    assert short.prior_lines[0].agents_from_regimen and not explicit.prior_lines[0].agents_from_regimen
    a, b = derive(explicit, evaluator.vocabulary), derive(short, evaluator.vocabulary)
    assert {k: v.value for k, v in a.items()} == {k: v.value for k, v in b.items()}


@pytest.mark.parametrize(
    "label, agents",
    [
        ("Dara-VRd", {"daratumumab", "bortezomib", "lenalidomide", "dexamethasone"}),
        ("dara vrd", {"daratumumab", "bortezomib", "lenalidomide", "dexamethasone"}),
        ("DVRd", {"daratumumab", "bortezomib", "lenalidomide", "dexamethasone"}),
        ("Isa-KRd", {"isatuximab", "carfilzomib", "lenalidomide", "dexamethasone"}),
        ("Isa-Pd", {"isatuximab", "pomalidomide", "dexamethasone"}),
        ("VMP", {"bortezomib", "melphalan", "prednisone"}),
        ("Dara-VMP", {"daratumumab", "bortezomib", "melphalan", "prednisone"}),
        ("MP", {"melphalan", "prednisone"}),
        ("PACE", {"cisplatin", "doxorubicin", "cyclophosphamide", "etoposide"}),
        ("VDT-PACE", {"bortezomib", "dexamethasone", "thalidomide", "cisplatin", "doxorubicin", "cyclophosphamide", "etoposide"}),
        ("DCEP", {"dexamethasone", "cyclophosphamide", "etoposide", "cisplatin"}),
        ("teclistamab", {"teclistamab"}),  # a drug name is a single-agent label
    ],
)
def test_regimen_vocabulary(evaluator, label, agents):
    profile = evaluator.parse(minimal(prior_lines=[{"regimen": label, "refractory_to": []}]))
    assert set(profile.prior_lines[0].agents) == agents


def test_agents_given_with_a_label_must_include_the_labels_agents(evaluator):
    line = {"regimen": "KRd", "agents": ["carfilzomib", "lenalidomide"], "refractory_to": []}
    field, problem = one_problem(evaluator, minimal(prior_lines=[line]))
    assert field == "prior_lines[0].agents" and "dexamethasone" in problem and "KRd" in problem
    line["agents"] = ["carfilzomib", "lenalidomide", "dexamethasone", "melphalan"]  # a superset is fine
    assert evaluator.parse(minimal(prior_lines=[line]))


def test_a_free_text_label_needs_agents_and_names_the_label_inside(evaluator):
    line = {"regimen": "VRd + ASCT", "refractory_to": []}
    field, problem = one_problem(evaluator, minimal(prior_lines=[line]))
    assert field == "prior_lines[0].agents" and "not a known label" in problem and "VRd" in problem


def test_refractory_to_of_an_expanded_line_names_its_agents(evaluator):
    ok = {"regimen": "DRd", "refractory_to": ["Revlimid", "dara"]}
    assert evaluator.parse(minimal(prior_lines=[ok]))
    bad = {"regimen": "DRd", "refractory_to": ["pomalidomide"]}
    field, problem = one_problem(evaluator, minimal(prior_lines=[bad]))
    assert field == "prior_lines[0].refractory_to[0]" and "daratumumab" in problem


# --------------------------------------------------------------------------- what new users write


@pytest.mark.parametrize(
    "written, generic, dropped",
    [
        ("Darzalex SC", "daratumumab", "SC"),
        ("dara SC", "daratumumab", "SC"),
        ("bortezomib SC", "bortezomib", "SC"),
        ("Revlimid 25mg", "lenalidomide", "25mg"),
        ("Revlimid 25 mg", "lenalidomide", "25 mg"),
        ("lenalidomide maintenance", "lenalidomide", "maintenance"),
        ("teclistamab-cqyv", "teclistamab", "-cqyv"),
        ("Doxil", "doxorubicin", ""),
        ("melflufen", "melphalan flufenamide", ""),
        ("carmustine", "carmustine", ""),
        ("bendamustine", "bendamustine", ""),
        ("iberdomide", "iberdomide", ""),
        ("mezigdomide", "mezigdomide", ""),
        ("anito-cel", "anitocabtagene autoleucel", ""),
        ("radiotherapy", "radiotherapy", ""),
    ],
)
def test_names_a_new_user_writes(evaluator, written, generic, dropped):
    found = evaluator.vocabulary.resolve(written)
    assert found is not None and found.drug.name == generic and found.dropped == dropped
    line = {"agents": [written, "dexamethasone"], "refractory_to": [written]}
    assert evaluator.parse(minimal(prior_lines=[line]))


def test_celmods_are_not_counted_as_imids(evaluator):
    line = {"agents": ["iberdomide", "dexamethasone"], "refractory_to": ["iberdomide"]}
    facts = derive(evaluator.parse(minimal(prior_lines=[line])), evaluator.vocabulary)
    assert facts["exposed_imid"].value is False and facts["refractory_imid"].value is False


def test_an_investigational_agent_with_its_class(evaluator):
    trial = {"investigational": "XYZ-19", "class": "bcma_car_t"}
    line = {"agents": [trial], "refractory_to": ["xyz-19"]}
    profile = evaluator.parse(minimal(prior_lines=[minimal()["prior_lines"][0], line]))
    facts = derive(profile, evaluator.vocabulary)
    assert facts["bcma_car_t_exposed"].value is True and facts["bcma_car_t_refractory"].value is True
    assert "XYZ-19 (investigational)" in facts["bcma_car_t_exposed"].explanation
    gprc = {"investigational": "G-1", "class": "other_car_t", "target": "GPRC5D"}
    facts = derive(evaluator.parse(minimal(prior_lines=[{"agents": [gprc], "refractory_to": []}])), evaluator.vocabulary)
    assert facts["gprc5d_exposed"].value is True


def test_an_investigational_agent_is_checked(evaluator):
    bad_class = {"agents": [{"investigational": "X", "class": "bcma_cart"}], "refractory_to": []}
    field, problem = one_problem(evaluator, minimal(prior_lines=[bad_class]))
    assert field == "prior_lines[0].agents[0].class" and "did you mean bcma_car_t" in problem
    known = {"agents": [{"investigational": "teclistamab", "class": "bcma_bispecific"}], "refractory_to": []}
    field, problem = one_problem(evaluator, minimal(prior_lines=[known]))
    assert field == "prior_lines[0].agents[0].investigational" and "known drug" in problem
    no_class = {"agents": [{"investigational": "X"}], "refractory_to": []}
    field, problem = one_problem(evaluator, minimal(prior_lines=[no_class]))
    assert field == "prior_lines[0].agents[0].class" and "missing" in problem


# --------------------------------------------------------------------------- refractory_to optional


def test_refractoriness_not_recorded_is_unknown_never_false(evaluator):
    line = minimal()["prior_lines"][0]
    del line["refractory_to"]
    facts = derive(evaluator.parse(minimal(prior_lines=[line])), evaluator.vocabulary)
    for name in ("refractory_lenalidomide", "refractory_imid", "refractory_to_last_line", "refractory_pi"):
        assert facts[name].value is None, name
        assert "not recorded" in facts[name].explanation
    assert facts["exposed_lenalidomide"].value is True  # exposure is always known
    assert facts["refractory_anti_cd38"].value is False  # no anti-CD38 was given in any line
    line["refractory_to"] = []
    facts = derive(evaluator.parse(minimal(prior_lines=[line])), evaluator.vocabulary)
    assert facts["refractory_lenalidomide"].value is False and facts["refractory_to_last_line"].value is False


def test_another_line_decides_what_it_can(evaluator):
    first = minimal()["prior_lines"][0]  # refractory to lenalidomide
    second = {"regimen": "Pd"}  # refractoriness not recorded
    facts = derive(evaluator.parse(minimal(prior_lines=[first, second])), evaluator.vocabulary)
    assert facts["refractory_lenalidomide"].value is True and facts["refractory_imid"].value is True
    assert facts["refractory_pomalidomide"].value is None
    assert facts["partner_imid_available"].value is None  # pomalidomide may or may not remain
    assert facts["partner_pi_available"].value is True  # bortezomib: recorded, not refractory


def test_unrecorded_refractoriness_that_changes_the_top_option_is_reported(evaluator):
    data = load_case("first_relapse_len_refractory")
    data["prior_lines"][-1].pop("refractory_to")
    ev = evaluator.evaluate(evaluator.parse(data))
    matters = {u.field: u for u in ev.unknown_facts if u.changes_top}
    assert REFRACTORY_FIELD in matters, [u.field for u in ev.unknown_facts]
    labels = [e.label for e in matters[REFRACTORY_FIELD].effects]
    assert "line 1: refractory to none" in labels, labels  # not lenalidomide-refractory: no CARTITUDE-4 branch


def test_unrecorded_refractoriness_tries_each_agent_that_decides_differently(evaluator):
    # VRd + ASCT + lenalidomide maintenance, refractoriness not recorded: bortezomib and lenalidomide decide
    # the same facts with different values, so both are tried (lenalidomide opens the CARTITUDE-4 branch)
    data = load_case("first_relapse_len_refractory")
    data["prior_lines"][-1].pop("refractory_to")
    labels = [label for label, _ in refractoriness_alternatives(evaluator.parse(data), evaluator.vocabulary)]
    assert "line 1: refractory to lenalidomide" in labels, labels
    assert "line 1: refractory to bortezomib" in labels, labels
    ev = evaluator.evaluate(evaluator.parse(data))
    effects = {e.label: e.top for u in ev.unknown_facts if u.field == REFRACTORY_FIELD for e in u.effects}
    assert effects.get("line 1: refractory to lenalidomide") == "bcma_car_t", effects


def test_no_response_cannot_go_with_refractory_to_none(evaluator):
    line = {"regimen": "Kd", "refractory_to": [], "best_response": "SD"}
    field, problem = one_problem(evaluator, minimal(prior_lines=[line]))
    assert field == "prior_lines[0].refractory_to" and "no response" in problem


def test_autologous_transplant_absent_means_none_recorded(evaluator):
    line = minimal()["prior_lines"][0]
    del line["autologous_transplant"]
    facts = derive(evaluator.parse(minimal(prior_lines=[line])), evaluator.vocabulary)
    assert facts["prior_autologous_transplant"].value is False


def test_intolerance_names_agents_of_the_line(evaluator):
    line = dict(minimal()["prior_lines"][0], intolerant_to=["bortezomib"], stop_reason="toxicity")
    assert evaluator.parse(minimal(prior_lines=[line]))
    line["intolerant_to"] = ["carfilzomib"]
    field, _ = one_problem(evaluator, minimal(prior_lines=[line]))
    assert field == "prior_lines[0].intolerant_to[0]"


# --------------------------------------------------------------------------- dates


def test_dates_to_the_day_or_the_month(evaluator):
    line = dict(
        minimal()["prior_lines"][0],
        start_date="2021-03",
        end_date="2022-09-15",
        progression_date="2023-01",
        best_response="VGPR",
        stop_reason="progression",
    )
    assert evaluator.parse(minimal(prior_lines=[line], evaluation_date="2023-02-01"))


@pytest.mark.parametrize(
    "changes, field, words",
    [
        ({"start_date": "2021/03/01"}, "prior_lines[0].start_date", "YYYY-MM-DD"),
        ({"start_date": "2021-02-30"}, "prior_lines[0].start_date", "not a valid day"),
        ({"start_date": "2021-13"}, "prior_lines[0].start_date", "not a valid month"),
        ({"start_date": "2022-05", "end_date": "2022-04-30"}, "prior_lines[0].end_date", "before the line's start_date"),
        ({"start_date": "2022-05-10", "progression_date": "2022-05-01"}, "prior_lines[0].progression_date", "before"),
        ({"infusion_date": "2022-05-10"}, "prior_lines[0].infusion_date", "only for a CAR-T line"),
        ({"start_date": "2022-05", "transplant_date": "2022-04-30"}, "prior_lines[0].transplant_date", "before the line's"),
        (
            {"autologous_transplant": None, "transplant_date": "2022-09-01"},
            "prior_lines[0].transplant_date",
            "autologous_transplant: true",
        ),
    ],
)
def test_bad_dates(evaluator, changes, field, words):
    line = dict(minimal()["prior_lines"][0], **changes)
    f, problem = one_problem(evaluator, minimal(prior_lines=[line]))
    assert f == field and words in problem, problem


def test_infusion_date_of_a_car_t_line(evaluator):
    """Review R12-19: a CAR-T line may start at its apheresis; infusion_date is the infusion."""
    cart = {"agents": ["cilta-cel", "carfilzomib", "dexamethasone"], "refractory_to": [], "start_date": "2023-01-10"}
    line = evaluator.parse(minimal(prior_lines=[minimal()["prior_lines"][0], {**cart, "infusion_date": "2023-03"}]))
    assert line.prior_lines[1].infusion_date == "2023-03"
    field, problem = one_problem(
        evaluator, minimal(prior_lines=[minimal()["prior_lines"][0], {**cart, "infusion_date": "2022-12-20"}])
    )
    assert field == "prior_lines[1].infusion_date" and "before the line's start_date" in problem
    field, problem = one_problem(
        evaluator, minimal(prior_lines=[{**cart, "infusion_date": "2023-03-02"}], evaluation_date="2023-02-01")
    )
    assert field == "prior_lines[0].infusion_date" and "after the evaluation_date" in problem


def test_a_month_and_a_day_in_that_month_are_not_in_conflict(evaluator):
    line = dict(minimal()["prior_lines"][0], start_date="2022-05-20", end_date="2022-05")
    assert evaluator.parse(minimal(prior_lines=[line]))


def test_lines_are_chronological_and_before_the_evaluation_date(evaluator):
    first = dict(minimal()["prior_lines"][0], start_date="2022-01")
    second = {"regimen": "Kd", "refractory_to": ["carfilzomib"], "start_date": "2021-06"}
    field, problem = one_problem(evaluator, minimal(prior_lines=[first, second]))
    assert field == "prior_lines[1].start_date" and "chronological" in problem
    field, problem = one_problem(evaluator, minimal(prior_lines=[first], evaluation_date="2021-12-31"))
    assert field == "prior_lines[0].start_date" and "after the evaluation_date" in problem


# --------------------------------------------------------------------------- patient fields


def test_new_patient_fields(evaluator):
    profile = evaluator.parse(
        minimal(
            sex="female",
            notes="<b>free text</b> never read by rules",
            plasma_cell_leukemia=False,
            cns_involvement=False,
            r_iss=2,
            cytogenetics=["t(14;20)", "del(13q)", "del(1p)"],
            labs={"neutrophils_10e9_l": 1.2, "platelets_10e9_l": 85, "igg_g_l": 4.1, "ldh_u_l": 310},
        )
    )
    facts = derive(profile, evaluator.vocabulary)
    assert facts["cyto_t14_20"].value is True and facts["cyto_del13q"].value is True


def test_del1p_counts_as_high_risk(evaluator):
    # S001: "High-risk deletion events, such as del 1p and del 17p" (issue 12 section B)
    facts = derive(evaluator.parse(minimal(cytogenetics=["del(1p)"])), evaluator.vocabulary)
    assert facts["high_risk_cytogenetics"].value is True, facts["high_risk_cytogenetics"].explanation
    assert "del(1p)" in facts["high_risk_cytogenetics"].explanation
    facts = derive(evaluator.parse(minimal(cytogenetics=["del(13q)"])), evaluator.vocabulary)
    assert facts["high_risk_cytogenetics"].value is False  # the sources do not call del(13q) high-risk


def test_t14_20_is_not_classified_by_the_sources_so_the_risk_is_unknown(evaluator):
    """Review R12-10: t(14;20) alone leaves high_risk_cytogenetics unknown (IMWG counts it high risk,
    outside the sources), never 'not high risk'; with a high-risk abnormality the risk is high."""
    facts = derive(evaluator.parse(minimal(cytogenetics=["t(14;20)", "del(13q)"])), evaluator.vocabulary)
    assert facts["cyto_t14_20"].value is True
    assert facts["high_risk_cytogenetics"].value is None, facts["high_risk_cytogenetics"].explanation
    assert "not classified by the sources" in facts["high_risk_cytogenetics"].explanation
    facts = derive(evaluator.parse(minimal(cytogenetics=["t(14;20)", "del(17p)"])), evaluator.vocabulary)
    assert facts["high_risk_cytogenetics"].value is True


def test_a_partial_panel_leaves_what_was_not_probed_unknown(evaluator):
    """Review R12-09: `cytogenetics_tested` names the probes of a partial panel; an abnormality outside it
    is unknown, not 'not detected', and the risk is unknown unless a high-risk one is found."""
    tested = ["t(11;14)", "t(4;14)", "t(14;16)", "del(17p)"]
    facts = derive(evaluator.parse(minimal(cytogenetics=["t(11;14)"], cytogenetics_tested=tested)), evaluator.vocabulary)
    assert facts["cyto_t11_14"].value is True and facts["cyto_t4_14"].value is False and facts["cyto_del17p"].value is False
    for fact in ("cyto_gain1q", "cyto_amp1q", "cyto_del1p", "cyto_t14_20", "cyto_del13q"):
        assert facts[fact].value is None and "not in the tested panel" in facts[fact].explanation, fact
    assert facts["high_risk_cytogenetics"].value is None
    # one 1q probe shows gain and amplification: naming either counts both as tested
    full = [*tested, "gain(1q)", "del(1p)", "t(14;20)"]
    facts = derive(evaluator.parse(minimal(cytogenetics=[], cytogenetics_tested=full)), evaluator.vocabulary)
    assert facts["cyto_amp1q"].value is False and facts["high_risk_cytogenetics"].value is False
    assert facts["cyto_del13q"].value is None  # not probed
    # a detected abnormality is tested, whatever the list says; high risk found decides the risk
    facts = derive(evaluator.parse(minimal(cytogenetics=["del(1p)"], cytogenetics_tested=["t(11;14)"])), evaluator.vocabulary)
    assert facts["cyto_del1p"].value is True and facts["high_risk_cytogenetics"].value is True
    # without cytogenetics_tested the list is the whole panel, as before (the contract of v1 profiles)
    facts = derive(evaluator.parse(minimal(cytogenetics=["t(11;14)"])), evaluator.vocabulary)
    assert facts["cyto_del1p"].value is False and facts["high_risk_cytogenetics"].value is False


@pytest.mark.parametrize(
    ("extra", "field", "words"),
    [
        ({"cytogenetics_tested": ["del(17p)"]}, "cytogenetics_tested", "give it too"),
        ({"cytogenetics": [], "cytogenetics_tested": ["del17p"]}, "cytogenetics_tested[0]", "did you mean del(17p)"),
        ({"cytogenetics": [], "cytogenetics_tested": []}, "cytogenetics_tested", ""),
        ({"cytogenetics": [], "cytogenetics_tested": ["t(4;14)", "t(4;14)"]}, "cytogenetics_tested", "more than once"),
    ],
)
def test_cytogenetics_tested_problems_name_the_field(evaluator, extra, field, words):
    found = dict(problems(evaluator, minimal(**extra)))
    assert field in found and words in found[field], found


def test_notes_never_change_the_decision(evaluator):
    a = evaluator.evaluate(evaluator.parse(load_case("fit_tcr_bcma_naive")))
    data = load_case("fit_tcr_bcma_naive")
    data["notes"] = "CAR-T refused by the patient; frail; dialysis"
    b = evaluator.evaluate(evaluator.parse(data))
    assert (a.ranking, a.fired, a.unknown_facts) == (b.ranking, b.fired, b.unknown_facts)


# --------------------------------------------------------------------------- errors


def test_every_problem_at_once_structure_and_drugs_together(evaluator):
    data = minimal(age="60", frailty="Fit", cytogenetics=["del17p"])
    data["prior_lines"].append({"agents": ["lenalidomid", "dex"], "refractory_to": ["dex"], "autologous_transplant": "no"})
    found = dict(problems(evaluator, data))
    assert set(found) == {
        "age",
        "frailty",
        "cytogenetics[0]",
        "prior_lines[1].agents[0]",
        "prior_lines[1].autologous_transplant",
    }, found
    assert "did you mean 'fit'" in found["frailty"]
    assert "did you mean del(17p)" in found["cytogenetics[0]"]
    assert "did you mean lenalidomide" in found["prior_lines[1].agents[0]"]


@pytest.mark.parametrize(
    "written, suggested",
    [("del17p", "del(17p)"), ("t(4,14)", "t(4;14)"), ("1q21+", "gain(1q)"), ("T(11;14)", "t(11;14)"), ("amp1q", "amp(1q)")],
)
def test_cytogenetics_typos_get_suggestions(evaluator, written, suggested):
    field, problem = one_problem(evaluator, minimal(cytogenetics=[written]))
    assert field == "cytogenetics[0]" and f"did you mean {suggested}" in problem


@pytest.mark.parametrize(
    "field, value, suggested",
    [
        ("frailty", "Intermediate", "'intermediate'"),
        ("sex", "F", None),
        ("sex", "Female", "'female'"),
    ],
)
def test_enum_typos_get_suggestions(evaluator, field, value, suggested):
    f, problem = one_problem(evaluator, minimal(**{field: value}))
    assert f == field and "is not one of" in problem
    if suggested:
        assert f"did you mean {suggested}" in problem


def test_line_enum_typos_get_suggestions(evaluator):
    line = dict(minimal()["prior_lines"][0], best_response="cr", stop_reason="patient choice")
    found = dict(problems(evaluator, minimal(prior_lines=[line])))
    assert "did you mean 'CR'" in found["prior_lines[0].best_response"]
    assert "did you mean 'patient_choice'" in found["prior_lines[0].stop_reason"]


@pytest.mark.parametrize(
    "field, value",
    [("frailty", "unknown"), ("creatinine_clearance_ml_min", "not done"), ("dialysis", "unknown"), ("cytogenetics", "not done")],
)
def test_unknown_written_as_a_word_gets_the_hint(evaluator, field, value):
    f, problem = one_problem(evaluator, minimal(**{field: value}))
    assert f == field and "omit the field or use null for unknown" in problem


def test_v1_cases_still_parse_with_the_same_agents(evaluator):
    from conftest import case_names

    for name in case_names():
        data = load_case(name)
        profile = evaluator.parse(copy.deepcopy(data))
        for parsed, line in zip(profile.prior_lines, data["prior_lines"], strict=True):
            if "agents" in line:
                assert parsed.agents == line["agents"], name
            else:  # a v2 case may leave the agents to a known regimen label
                assert parsed.agents_from_regimen and parsed.agents, name


# --------------------------------------------------------------------------- cds validate, cds new-profile


def _cli(*args):
    from typer.testing import CliRunner

    from cds.apps.cli import app

    return CliRunner().invoke(app, list(args))


def test_validate_prints_every_problem_of_every_file(tmp_path):
    import json

    good = tmp_path / "good.json"
    good.write_text(json.dumps(load_case("fit_tcr_bcma_naive")), encoding="utf-8")
    bad = tmp_path / "bad.json"
    data = minimal(frailty="unknown")
    data["prior_lines"][0]["agents"][0] = "bortezomb"
    bad.write_text(json.dumps(data), encoding="utf-8")
    result = _cli("validate", str(good), str(bad), str(tmp_path / "missing.json"))
    assert result.exit_code == 1, result.output
    out = result.output
    assert f"{good}: ok" in out
    assert f"{bad}: 2 problems" in out and "  frailty: " in out and "  prior_lines[0].agents[0]: unknown drug" in out
    assert "no such file" in out and "3 files: 1 valid, 2 invalid" in out
    assert _cli("validate", str(good)).exit_code == 0


def test_new_profile_template_documents_every_field_and_validates_once_filled(tmp_path, evaluator):
    from cds.api import decode_json
    from cds.model.profile import LINE_FIELDS, PROFILE_FIELDS
    from cds.model.template import template_fields

    patient, line = template_fields()
    assert patient == set(PROFILE_FIELDS) and line == set(LINE_FIELDS)
    path = tmp_path / "new.json"
    result = _cli("new-profile", str(path))
    assert result.exit_code == 0, result.output
    text = path.read_text(encoding="utf-8")
    check = _cli("validate", str(path))
    assert check.exit_code == 1 and "4 problems" in check.output  # patient_id, age, ecog, the line's agents
    filled = (
        text.replace('"patient_id": ""', '"patient_id": "TB-9"')
        .replace('"age": null', '"age": 70')
        .replace('"ecog": null', '"ecog": 1')
        .replace('"regimen": ""', '"regimen": "DRd"')
        .replace('// "frailty": "fit",', '"frailty": "fit",')
        .replace('      // "refractory_to": ["lenalidomide"],', '      "refractory_to": ["lenalidomide"],')
    )
    profile = evaluator.parse(decode_json(filled))
    assert profile.frailty == "fit" and profile.prior_lines[0].refractory_to == ["lenalidomide"]
    assert _cli("new-profile", str(path)).exit_code == 2  # never overwritten without --force
    assert _cli("new-profile", str(path), "--force").exit_code == 0


def test_comment_lines_keep_json_line_numbers(evaluator):
    from cds.api import decode_json

    with pytest.raises(ProfileError) as info:
        decode_json('// a comment\n{\n  // another\n  "age": 1,\n}')
    assert "line 5" in str(info.value)  # the trailing comma is reported where it is
    assert decode_json('{"notes": "http://example.org // not a comment"}')["notes"].endswith("not a comment")


def test_agents_that_are_not_a_list_are_one_problem_each_beside_refractory_and_intolerant_lists(evaluator):
    """Found by property 8: `agents: true` with a refractory_to list was an internal error (len of a bool)."""
    data = minimal()
    data["prior_lines"] = [
        {"regimen": "VRd", "agents": True, "refractory_to": ["lenalidomide"]},
        {"regimen": "KRd", "agents": "carfilzomib", "intolerant_to": ["carfilzomib"]},
        {"agents": 3, "refractory_to": []},
    ]
    found = problems(evaluator, data)
    assert [f for f, _ in found] == ["prior_lines[0].agents", "prior_lines[1].agents", "prior_lines[2].agents"], found


def test_crd_is_ambiguous_so_its_agents_must_be_listed(evaluator):
    # review finding (issue 12): "CRd" is KRd in some papers and cyclophosphamide-Rd in others
    field, problem = one_problem(evaluator, minimal(prior_lines=[{"regimen": "CRd", "refractory_to": []}]))
    assert field == "prior_lines[0].agents" and "not a known label" in problem, (field, problem)
    for agents in (["carfilzomib", "lenalidomide", "dexamethasone"], ["cyclophosphamide", "lenalidomide", "dexamethasone"]):
        line = {"regimen": "CRd", "agents": agents, "refractory_to": []}
        facts = derive(evaluator.parse(minimal(prior_lines=[line])), evaluator.vocabulary)
        assert facts["exposed_pi"].value is (agents[0] == "carfilzomib")


def test_severe_baseline_cytopenias_are_read_by_a_rule_and_shown_on_page_one(evaluator):
    """Clinical review CR-19: neutrophils/platelets entered as labs are facts; below the named thresholds
    (settings, CTCAE grade 3, outside the sources) CAR-T's and the bispecifics' page-1 caution names the cytopenia."""
    import json
    from pathlib import Path

    from cds.report.build import build_report

    path = Path(__file__).resolve().parents[1] / "patient_profiles" / "tcr_severe_cytopenia.json"
    data = json.loads(path.read_text())
    facts = derive(evaluator.parse(data), evaluator.vocabulary)
    assert facts["neutrophils_10e9_l"].value == 0.3 and facts["platelets_10e9_l"].value == 12
    report = build_report(evaluator.evaluate(evaluator.parse(data)), "2026-12-02T00:00:00Z")
    assert [o.key_caution for o in report.options[:3]] == ["CAUT-CYTO-001"] * 3
    for labs in ({**data["labs"], "neutrophils_10e9_l": 1.5, "platelets_10e9_l": 150}, None):
        ev = evaluator.evaluate(evaluator.parse({**data, "labs": labs}))
        assert "CAUT-CYTO-001" not in ev.fired, labs
