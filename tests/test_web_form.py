"""The case form without a browser: generated from the profile model, labelled as the README names the fields,
and converted to a profile without ever turning a blank into an answer (tests/test_web_browser.py drives it live)."""

from __future__ import annotations

import re
from pathlib import Path

from cds.api import Labs, PatientProfile, PriorLine
from cds.apps.web import form as f

README = Path(__file__).resolve().parents[1] / "README.md"


def _readme_names() -> dict[str, str]:
    """field -> name, from every README table whose header has a "name" column (the profile, labs and line tables)."""
    names: dict[str, str] = {}
    header: list[str] | None = None
    for line in README.read_text(encoding="utf-8").splitlines():
        if not line.startswith("|"):
            header = None
            continue
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if header is None:
            header = cells
            continue
        if set(cells) <= {"---"} or "name" not in header:
            continue
        fields = re.findall(r"`([a-z_.0-9]+)`", cells[0])
        labels = [x.strip() for x in cells[header.index("name")].split(" / ")]
        for field, label in zip(fields, labels, strict=True):
            names[field.removeprefix("labs.")] = label
    return names


def test_every_label_is_the_readme_name_of_its_field():
    readme = _readme_names()
    model_fields = set(PatientProfile.model_fields) | set(Labs.model_fields) | set(PriorLine.model_fields)
    assert model_fields <= set(readme), f"README tables lack a name for {sorted(model_fields - set(readme))}"
    assert {k: f.LABELS[k] for k in model_fields} == {k: readme[k] for k in model_fields}


def test_the_form_covers_every_field_of_the_model():
    shown = {p for _, _, paths in f.GROUPS for p in paths} | {"notes"}
    assert shown | {"labs", "prior_lines"} >= set(PatientProfile.model_fields) | {f"labs.{k}" for k in Labs.model_fields}
    assert set(f.LINE) | {"agents", "refractory_to", "intolerant_to"} == set(PriorLine.model_fields)


def test_kinds_come_from_the_model():
    assert f.TOP["age"].kind == "int" and f.TOP["age"].required
    assert f.TOP["ecog"].kind == "choice" and [v for v, _ in f.TOP["ecog"].choices] == ["", "0", "1", "2", "3", "4"]
    assert f.TOP["frailty"].choices[0] == ("", "Unknown")  # Unknown first, never a default that looks like an answer
    assert f.TOP["dialysis"].choices == f.BOOL_CHOICES
    assert f.TOP["labs.crp_mg_l"].kind == "float"
    assert f.LINE["best_response"].choices[0] == ("", "Unknown")
    for spec in [*f.TOP.values(), *f.LINE.values()]:
        if spec.choices and not spec.required:
            assert spec.choices[0] == ("", "Unknown"), spec.path


def test_blank_is_absent_and_values_keep_their_type():
    items = [
        ("patient_id", "P1"),
        ("age", "64"),
        ("ecog", "1"),
        ("dialysis", ""),
        ("frailty", ""),
        ("creatinine_clearance_ml_min", "55.5"),
        ("labs.crp_mg_l", ""),
        ("cytogenetics_status", ""),
        ("prior_lines[0].regimen", "KRd"),
        ("prior_lines[0].agents[0]", ""),
        ("prior_lines[0].agents[0].refractory", ""),
        ("prior_lines[1].regimen", ""),  # a blank line is dropped
    ]
    form, action = f.from_submission(items)
    assert action == "evaluate"
    out = f.to_profile(form)
    assert out.profile == {
        "patient_id": "P1",
        "age": 64,
        "ecog": 1,
        "creatinine_clearance_ml_min": 55.5,
        "prior_lines": [{"regimen": "KRd"}],
    }
    assert out.problems == []


def test_not_a_number_stays_text_for_the_model_to_name():
    form, _ = f.from_submission([("age", "sixty"), ("labs.ferritin_ng_ml", "nan")])
    profile = f.to_profile(form).profile
    assert profile["age"] == "sixty" and profile["labs"]["ferritin_ng_ml"] == "nan"


def test_refractoriness_per_agent():
    base = [("prior_lines[0].agents[0]", "daratumumab"), ("prior_lines[0].agents[1]", "pomalidomide")]
    all_unknown, _ = f.from_submission(base)
    assert "refractory_to" not in f.to_profile(all_unknown).profile["prior_lines"][0]  # not recorded
    none, _ = f.from_submission(
        [*base, ("prior_lines[0].agents[0].refractory", "no"), ("prior_lines[0].agents[1].refractory", "no")]
    )
    assert f.to_profile(none).profile["prior_lines"][0]["refractory_to"] == []  # recorded: none
    one, _ = f.from_submission(
        [*base, ("prior_lines[0].agents[0].refractory", "yes"), ("prior_lines[0].agents[1].refractory", "no")]
    )
    converted = f.to_profile(one)
    assert converted.profile["prior_lines"][0]["refractory_to"] == ["daratumumab"]
    assert converted.where["prior_lines[0].refractory_to[0]"] == "prior_lines[0].agents[0].refractory"
    mixed, _ = f.from_submission([*base, ("prior_lines[0].agents[0].refractory", "yes")])
    problems = f.to_profile(mixed).problems
    assert [p[0] for p in problems] == ["prior_lines[0].agents[1].refractory"]


def test_cytogenetics_tested_none_found_is_not_unknown():
    tested, _ = f.from_submission([("cytogenetics_status", "tested")])
    assert f.to_profile(tested).profile["cytogenetics"] == []
    ticked, _ = f.from_submission([("cytogenetics[]", "del(17p)")])
    assert f.to_profile(ticked).profile["cytogenetics"] == ["del(17p)"]
    untested, _ = f.from_submission([])
    assert "cytogenetics" not in f.to_profile(untested).profile


def test_a_partial_panel_survives_the_form_both_ways():
    """Review R12-09: the probes of a partial panel are a second set of boxes; editing a stored case on
    the page must not turn its partial panel into a whole one (the abnormalities outside it stay unknown)."""
    form, _ = f.from_submission(
        [("cytogenetics_status", "tested"), ("cytogenetics_tested[]", "del(17p)"), ("cytogenetics_tested[]", "t(4;14)")]
    )
    profile = f.to_profile(form).profile
    assert profile["cytogenetics"] == [] and profile["cytogenetics_tested"] == ["del(17p)", "t(4;14)"]
    back = f.from_profile({"cytogenetics": ["t(4;14)"], "cytogenetics_tested": ["t(4;14)", "del(17p)"]})
    again = f.to_profile(back).profile
    assert again["cytogenetics"] == ["t(4;14)"] and again["cytogenetics_tested"] == ["t(4;14)", "del(17p)"]
    whole, _ = f.from_submission([("cytogenetics_status", "tested")])
    assert "cytogenetics_tested" not in f.to_profile(whole).profile  # none ticked: the whole list


def test_problems_land_beside_their_input_after_blank_lines_are_dropped():
    form, _ = f.from_submission(
        [("prior_lines[0].regimen", ""), ("prior_lines[1].agents[0]", "x"), ("prior_lines[1].agents[1]", "bortezomibb")]
    )
    converted = f.to_profile(form)
    f.place_problems(
        form,
        converted,
        [("prior_lines[0].agents[1]", "unknown drug"), ("age", "required field is missing"), ("(profile)", "odd")],
    )
    assert form.errors[f.input_id("prior_lines[1].agents[1]")] == ["unknown drug"]
    assert form.errors["f-age"] == ["required field is missing"]
    assert form.general_errors == [("(profile)", "odd")]


def test_round_trip_from_a_profile():
    profile = {
        "patient_id": "P2",
        "age": 70,
        "ecog": 2,
        "dialysis": False,
        "cytogenetics": [],
        "labs": {"crp_mg_l": 4.0},
        "prior_lines": [
            {
                "regimen": "DKd",
                "agents": ["daratumumab", "carfilzomib"],
                "refractory_to": ["carfilzomib"],
                "intolerant_to": ["daratumumab"],
            },
            {"regimen": "Pd", "autologous_transplant": True},
        ],
    }
    form = f.from_profile(profile, imported=True)
    assert "patient_id" in form.imported and f.agent_name(0, 0) in form.imported
    assert f.to_profile(form).profile == profile


def test_add_and_remove_rows():
    form = f.Form.empty()
    assert f.apply_action(form, "add_line") and len(form.lines) == 2
    assert f.apply_action(form, "add_agent:1") and len(form.lines[1].agents) == f.DEFAULT_AGENT_SLOTS + 1
    assert f.apply_action(form, "remove_line:0") and len(form.lines) == 1
    assert not f.apply_action(form, "evaluate")


def test_a_trial_agent_is_an_investigational_object():
    profile = {
        "patient_id": "P3",
        "age": 60,
        "ecog": 1,
        "prior_lines": [
            {
                "agents": [{"investigational": "XYZ-101", "class": "bcma_car_t", "target": "BCMA"}, "dexamethasone"],
                "refractory_to": ["XYZ-101"],
            }
        ],
    }
    form = f.from_profile(profile)
    assert form.lines[0].agents[0].drug_class == "bcma_car_t"
    assert f.to_profile(form).profile == profile
    converted = f.to_profile(form)
    f.place_problems(form, converted, [("prior_lines[0].agents[0].class", "unknown class")])
    assert form.errors[f.input_id(f.agent_name(0, 0, "class"))] == ["unknown class"]
    assert form.error_labels[f.input_id(f.agent_name(0, 0, "class"))] == "Line 1, agent 1: Trial agent class"


def test_problems_are_named_in_the_form_s_words():
    assert f.describe("labs.crp_mg_l") == "CRP (mg/L)"
    assert f.describe("prior_lines[1].start_date") == "Line 2: Start date"
    assert f.describe("prior_lines[0].agents[2].refractory") == "Line 1, agent 3: Refractory"


def test_problems_are_listed_in_the_order_of_the_form():
    form, _ = f.from_submission([("prior_lines[0].agents[0]", "x"), ("prior_lines[0].start_date", "2024-13")])
    converted = f.to_profile(form)
    problems = [
        ("prior_lines[0].start_date", "bad date"),
        ("prior_lines[0].agents[0]", "unknown drug"),
        ("ecog", "required"),
        ("age", "required"),
    ]
    f.place_problems(form, converted, problems)
    assert list(form.errors) == [
        "f-age",
        "f-ecog",
        f.input_id("prior_lines[0].agents[0]"),
        f.input_id("prior_lines[0].start_date"),
    ]
