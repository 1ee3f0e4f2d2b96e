"""FHIR import on the synthetic case bundles, bad bundles, and a profile -> bundle -> profile round trip."""

from __future__ import annotations

import copy
import json
import subprocess
import sys
from datetime import date, timedelta
from pathlib import Path

import pytest
from builder import Builder, export_profile
from hypothesis import given, settings
from hypothesis import strategies as st

from cds.interop.fhir import BundleError, import_bundle
from cds.interop.fhir.bundle import read_bundle
from cds.interop.fhir.mapping import find_abnormalities
from cds.interop.fhir.overrides import apply_overrides
from cds.model.facts import FACTS
from cds.model.profile import PatientProfile

HERE = Path(__file__).resolve().parent
CASES = HERE / "cases"
PROFILES = HERE.parents[1] / "patient_profiles"
CASE_NAMES = sorted(p.name.removesuffix(".expected.json") for p in CASES.glob("*.expected.json"))
ROOT = HERE.parents[1]


@pytest.fixture(scope="module")
def vocabulary(evaluator):
    return evaluator.vocabulary


def load(name: str) -> dict:
    return json.loads((CASES / f"{name}.json").read_text(encoding="utf-8"))


def expected(name: str) -> dict:
    return json.loads((CASES / f"{name}.expected.json").read_text(encoding="utf-8"))


def test_there_are_five_to_eight_cases():
    assert 5 <= len(CASE_NAMES) <= 8


@pytest.mark.parametrize("name", CASE_NAMES)
def test_case_imports_to_its_expected_profile(name, vocabulary):
    exp = expected(name)
    result = import_bundle(load(name), vocabulary, exp["evaluation_date"])
    assert result.profile == exp["profile"]
    assert {n["resource"]: n["reason"] for n in result.not_used} == exp["not_used"]
    assert [ln["opened_by"]["rule"] for ln in result.lines] == exp["line_rules"]


def test_single_probe_fish_results_are_a_partial_panel_not_a_whole_one(evaluator, vocabulary):
    """Review R12-09: two probes reported Not detected (del(17p), t(4;14)) say nothing of 1q or 1p: the
    import names the probes (cytogenetics_tested), so what was not probed stays unknown, never negative;
    a panel result (GenomicVariant, a FISH panel as text) still stands for every abnormality."""
    from cds.model.facts import derive

    result = import_bundle(load("old_sender_statements"), vocabulary, "2026-01-15")
    assert result.profile["cytogenetics"] == [] and result.profile["cytogenetics_tested"] == ["del(17p)", "t(4;14)"]
    facts = derive(evaluator.parse(result.profile), vocabulary)
    assert facts["cyto_del17p"].value is False and facts["cyto_t4_14"].value is False
    assert facts["cyto_del1p"].value is None and facts["cyto_gain1q"].value is None
    assert facts["high_risk_cytogenetics"].value is None
    panel = import_bundle(load("relapse_on_bispecific"), vocabulary, "2026-01-15")
    assert panel.profile["cytogenetics"] == [] and "cytogenetics_tested" not in panel.profile


@pytest.mark.parametrize("name", CASE_NAMES)
def test_every_resource_is_used_or_listed_once(name, vocabulary):
    result = import_bundle(load(name), vocabulary, "2026-01-15")
    refs = [e["resource"]["resourceType"] + "/" + e["resource"]["id"] for e in load(name)["entry"]]
    used = result.used_refs()
    listed = [n["resource"] for n in result.not_used]
    assert len(listed) == len(set(listed))
    for ref in refs:
        assert (ref in used) != (ref in listed), ref
    for fact in result.facts:  # every fact: its source resources, or why it is unknown
        assert fact.sources or fact.how, fact.field
        assert fact.status in {"imported", "derived", "unknown"}


def _line_facts(profile: dict, vocabulary) -> dict:
    """The facts derived from the prior lines (profile v1 fields only), for comparing with a tumor-board case."""
    from cds.model.facts import derive
    from cds.model.profile import parse_profile

    base = json.loads((PROFILES / "fit_tcr_bcma_naive.json").read_text())
    lines = [
        {
            "agents": ln["agents"],
            "refractory_to": ln.get("refractory_to", []),
            "autologous_transplant": ln.get("autologous_transplant", False),
        }
        for ln in profile["prior_lines"]
    ]
    facts = derive(parse_profile({**base, "prior_lines": lines}, vocabulary), vocabulary)
    line_derived = [n for n, spec in FACTS.items() if spec.input_field is None and n not in ("age", "ecog")]
    return {n: facts[n].value for n in line_derived}


@pytest.mark.parametrize("name", CASE_NAMES)
def test_lines_give_the_tumor_board_cases_derived_facts(name, vocabulary):
    """The imported lines derive the same exposure/refractoriness facts as the case each bundle is modelled on."""
    exp = expected(name)
    case = json.loads((PROFILES / f"{exp['modelled_on']}.json").read_text())
    imported = import_bundle(load(name), vocabulary, exp["evaluation_date"]).profile
    mine, theirs = _line_facts(imported, vocabulary), _line_facts(case, vocabulary)
    differ = {k: (mine[k], theirs[k]) for k in mine if mine[k] != theirs[k]}
    allowed = exp.get("differs_from_model", {})
    assert {k: list(v) for k, v in differ.items()} == allowed


def test_overrides_are_marked(vocabulary):
    result = import_bundle(load("asct_maintenance"), vocabulary, "2026-01-15")
    apply_overrides(result, {"car_t_center_access": True, "ecog": 0, "labs": {"crp_mg_l": 5}}, "over.json")
    facts = {f.field: f for f in result.facts}
    assert result.profile["car_t_center_access"] is True and result.profile["ecog"] == 0
    assert facts["car_t_center_access"].status == "overridden" and "was unknown" in facts["car_t_center_access"].how
    assert "was imported 1" in facts["ecog"].how and facts["labs.crp_mg_l"].value == 5


def _asct_id(bundle: dict) -> str:
    (found,) = (
        e["resource"]["id"]
        for e in bundle["entry"]
        if e["resource"]["resourceType"] == "Procedure" and "transplant" in e["resource"]["code"].get("text", "")
    )
    return str(found)


def test_car_t_relapse_is_counted_from_the_infusion_not_the_apheresis(vocabulary):
    """Review R12-19: the CAR-T line starts at its apheresis (LOT-OPEN-CAR-T), but relapse within 12 months
    (S001, Samur et al.) counts from the infusion. Infusion 2024-07-08, progression 2025-06-10 (11.1 months
    later), apheresis 2024-05-08 (two months before the infusion: 13.1 months from the line's start)."""
    from cds.model.facts import derive
    from cds.model.profile import parse_profile

    b = load("car_t_bridging")
    for e in b["entry"]:
        r = e["resource"]
        if r["id"] == "proc13":  # the leukapheresis
            r["performedDateTime"] = "2024-05-08"
        if r["id"] == "obs22":  # the relapse after the CAR-T
            r["effectiveDateTime"] = "2025-06-10"
    result = import_bundle(b, vocabulary, "2026-01-15")
    line = result.profile["prior_lines"][2]
    assert (line["start_date"], line["infusion_date"], line["progression_date"]) == ("2024-05-08", "2024-07-08", "2025-06-10")
    assert result.lines[2]["derived"]["infusion_date"]["sources"] == ["MedicationAdministration/ma18"]
    assert "infusion_date: 2024-07-08" in result.text() and "apheresis 2024-05-08" in result.text()
    facts = derive(parse_profile(result.profile, vocabulary), vocabulary)
    assert facts["bcma_car_t_relapse_within_12_months"].value is True
    assert facts["months_car_t_to_progression"].value == 11.1
    assert "infused 2024-07-08 to progression 2025-06-10" in facts["bcma_car_t_relapse_within_12_months"].explanation
    assert result.profile["prior_lines"][0]["transplant_date"] == "2018-08-01"  # R12-20: the ASCT Procedure
    assert result.lines[0]["derived"]["transplant_date"]["sources"] == ["Procedure/" + _asct_id(b)]
    # the same profile without the infusion date reads the apheresis as the infusion (the old import): later
    lines = [*result.profile["prior_lines"][:2], {k: v for k, v in line.items() if k != "infusion_date"}]
    old = derive(parse_profile({**result.profile, "prior_lines": lines}, vocabulary), vocabulary)
    assert old["bcma_car_t_relapse_within_12_months"].value is False
    assert old["months_car_t_to_progression"].value == 13.1


# --- bad bundles: exit 2 naming the entry ---------------------------------------------------------


def _problem(bundle, vocabulary) -> str:
    with pytest.raises(BundleError) as info:
        import_bundle(bundle, vocabulary, "2026-01-15")
    return str(info.value)


def test_no_myeloma_diagnosis(vocabulary):
    b = load("car_t_bridging")
    b["entry"] = [e for e in b["entry"] if e["resource"]["resourceType"] != "Condition"]
    assert "no multiple myeloma diagnosis in the bundle" in _problem(b, vocabulary)


def test_invalid_resource_names_the_entry_and_every_problem(vocabulary):
    b = load("asct_maintenance")
    b["entry"][12]["resource"]["effectivePeriod"]["start"] = "2019-13-40"
    b["entry"][20]["resource"]["dosage"] = {"bogus": 1}
    b["entry"][30]["resource"]["status"] = "done"
    text = _problem(b, vocabulary)
    assert "3 problems" in text
    ids = [e["resource"]["resourceType"] + "/" + e["resource"]["id"] for e in b["entry"]]
    assert f"entry[12] {ids[12]}: effectivePeriod.start: DateTime value string does not match spec regex" in text
    assert f"entry[20] {ids[20]}: dosage.bogus: Extra inputs are not permitted" in text
    assert f"entry[30] {ids[30]}: status: 'done' is not one of" in text


def test_a_hostile_key_or_id_is_escaped_in_the_message(vocabulary):
    """A key or an id taken from the Bundle reaches the message through cds.errors.printable, like every other
    user data: no terminal escape (clear screen) or bidi control goes out raw."""
    b = load("asct_maintenance")
    b["entry"][20]["resource"]["\x1b[2Jevil\u202e"] = 1
    b["entry"][30]["resource"]["id"] = "x\x1b[2J"
    text = _problem(b, vocabulary)
    assert "\x1b" not in text and "\u202e" not in text, repr(text)
    rtype = b["entry"][20]["resource"]["resourceType"]
    assert f"entry[20] {rtype}/{b['entry'][20]['resource']['id']}: \\x1b[2Jevil\\u202e: Extra inputs are not permitted" in text
    assert f"entry[30] {b['entry'][30]['resource']['resourceType']}/x\\x1b[2J: id: String should match pattern" in text


def test_another_patients_resource_is_refused(vocabulary):
    b = load("request_only_dialysis")
    other = copy.deepcopy(b["entry"][5])
    other["resource"]["id"] = "foreign1"
    other["resource"]["subject"] = {"reference": "Patient/someone-else"}
    b["entry"].append(other)
    text = _problem(b, vocabulary)
    assert (
        f"entry[{len(b['entry']) - 1}] MedicationRequest/foreign1: subject Patient/someone-else is not this bundle's patient"
        in text
    )


def test_two_patients_and_no_patient(vocabulary):
    b = load("old_sender_statements")
    second = copy.deepcopy(b["entry"][0])
    second["resource"]["id"] = "twin"
    assert "2 Patient resources (entry[0] Patient/old7, entry[12] Patient/twin)" in _problem(
        {**b, "entry": [*b["entry"], second]}, vocabulary
    )
    assert "no Patient resource" in _problem({**b, "entry": b["entry"][1:]}, vocabulary)


@pytest.mark.parametrize(
    "data, message",
    [
        ({"resourceType": "Patient", "id": "x"}, "resourceType: 'Patient' is not a Bundle"),
        ({"patient_id": "TB-001", "age": 58}, "resourceType: missing, so this is not a FHIR Bundle"),
        (
            {"resourceType": "Bundle", "type": "history", "entry": []},
            "type: 'history' is not one of collection, searchset, document, transaction",
        ),
        (
            {"resourceType": "Bundle", "type": "collection", "entry": [{"resource": {"resourceType": "Foo", "id": "1"}}]},
            "entry[0] Foo/1: resourceType: 'Foo' is not an R4 resource type",
        ),
    ],
)
def test_wrong_kinds(data, message, vocabulary):
    assert message in _problem(data, vocabulary)


def test_ecog_out_of_range_and_line_number_extension_checked(vocabulary):
    b = load("car_t_bridging")
    ecog = next(e for e in b["entry"] if e["resource"].get("code", {}).get("coding", [{}])[0].get("code") == "89247-1")
    ecog["resource"]["valueInteger"] = 7
    assert "valueInteger: 7 is not an ECOG score 0-4" in _problem(b, vocabulary)


def _cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "cds", *args], capture_output=True, text=True, cwd=ROOT, timeout=120)


def test_cli_bad_bundle_exit_2_naming_the_entry(tmp_path):
    b = load("asct_maintenance")
    b["entry"][12]["resource"]["effectivePeriod"]["start"] = "2019-13-40"
    path = tmp_path / "bad.json"
    path.write_text(json.dumps(b))
    for cmd in (["import-fhir", str(path)], ["evaluate", str(path)]):
        proc = _cli(*cmd)
        assert proc.returncode == 2, proc.stderr
        assert proc.stderr.startswith("error: FHIR bundle: entry[12] MedicationAdministration/ma12: effectivePeriod.start:")
        assert "Traceback" not in proc.stderr and proc.stdout == ""


def test_profiles_do_not_import_fhir_resources():
    """Cold start: evaluating a profile never imports fhir.resources (about 0.15 s and 37 MB)."""
    code = (
        "import sys, cds; from cds.interop.inputs import load_input; from pathlib import Path; "
        "ev = cds.load_rules(); load_input(Path('patient_profiles/fit_tcr_bcma_naive.json'), ev.vocabulary); "
        "assert 'fhir' not in sys.modules and 'fhir.resources' not in sys.modules, sorted(m for m in sys.modules if 'fhir' in m)"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, timeout=120)
    assert proc.returncode == 0, proc.stderr


@pytest.mark.parametrize(
    "text, found",
    [
        ("nuc ish(CKS1B x3)[gain 1q21]", ["gain(1q)"]),
        ("t(4;14)(p16;q32) detected", ["t(4;14)"]),
        ("FISH del(17p) / TP53", ["del(17p)"]),
        ("17p- and t(11;14)", ["t(11;14)", "del(17p)"]),
        ("1q21 amplification (4 copies)", ["amp(1q)"]),
        ("+1q, del(1p32), t(14;20)", ["t(14;20)", "gain(1q)", "del(1p)"]),
        ("monosomy 13", ["del(13q)"]),
        ("No abnormalities detected", []),
    ],
)
def test_cytogenetics_from_text(text, found):
    assert find_abnormalities(text) == found


# --- property: a profile exported to a bundle and imported back gives the same derived facts ---------


@st.composite
def dated_profiles(draw):
    """Profiles with dated lines the way the exporter writes them (see builder.export_profile)."""
    pool = [
        "bortezomib",
        "carfilzomib",
        "lenalidomide",
        "pomalidomide",
        "daratumumab",
        "isatuximab",
        "elotuzumab",
        "teclistamab",
        "talquetamab",
        "selinexor",
        "ixazomib",
        "cyclophosphamide",
    ]
    n = draw(st.integers(1, 5))
    day = date(2012, 1, 1) + timedelta(days=draw(st.integers(0, 900)))
    lines = []
    for i in range(n):
        agents = draw(st.lists(st.sampled_from(pool), min_size=1, max_size=3, unique=True))
        if draw(st.booleans()):
            agents.append("dexamethasone")
        asct = i == 0 and draw(st.booleans())
        if asct:
            agents.append("melphalan")
        length = draw(st.integers(60, 500))
        start, end = day, day + timedelta(days=length)
        line = {"agents": agents, "start_date": start.isoformat(), "end_date": end.isoformat()}
        if asct:
            line["autologous_transplant"] = True
        therapy = [a for a in agents if a not in ("dexamethasone", "melphalan")]
        mode = draw(st.sampled_from(["progression", "no_response", "unassessed"]))
        if mode == "progression":
            line["progression_date"] = (end - timedelta(days=draw(st.integers(0, 20)))).isoformat()
            line["refractory_to"] = therapy
        elif mode == "no_response":
            line["refractory_to"] = draw(st.lists(st.sampled_from(therapy), unique=True))
        lines.append(line)
        gap = draw(st.integers(91, 400))
        day = end + timedelta(days=gap)
        if asct:
            day = max(day, start + timedelta(days=10 + 181))
    on = day + timedelta(days=30)
    return {
        "patient_id": draw(st.from_regex(r"[A-Z]{2}-[0-9]{3}", fullmatch=True)),
        "age": draw(st.integers(40, 85)),
        "sex": draw(st.sampled_from(["female", "male"])),
        "evaluation_date": on.isoformat(),
        "ecog": draw(st.integers(0, 4)),
        "creatinine_clearance_ml_min": float(draw(st.integers(10, 140))),
        "prior_lines": lines,
    }


@settings(max_examples=40, deadline=None)
@given(dated_profiles())
def test_export_then_import_gives_the_same_derived_facts(vocabulary, profile):
    result = import_bundle(export_profile(profile, vocabulary), vocabulary)
    got = result.profile
    for key in ("patient_id", "age", "sex", "evaluation_date", "ecog", "creatinine_clearance_ml_min"):
        assert got[key] == profile[key], key
    assert len(got["prior_lines"]) == len(profile["prior_lines"]), [ln["opened_by"] for ln in result.lines]
    for mine, theirs in zip(got["prior_lines"], profile["prior_lines"]):
        assert sorted(mine["agents"]) == sorted(theirs["agents"])
        assert sorted(mine.get("refractory_to", ["?"])) == sorted(theirs.get("refractory_to", ["?"]))
        assert mine.get("autologous_transplant") == theirs.get("autologous_transplant")
        assert mine["start_date"] == theirs["start_date"]
        assert mine.get("progression_date") == theirs.get("progression_date")
    assert _line_facts(got, vocabulary) == _line_facts(profile, vocabulary)


def test_exporter_helper_builds_valid_r4(vocabulary):
    b = Builder("x")
    b.patient("1960-01-01")
    b.condition("C90.00", "Multiple myeloma", "2020-01-01")
    assert import_bundle(b.bundle(), vocabulary).profile["prior_lines"] == []
    assert PatientProfile  # the model the profiles are validated against once profile v2 is on main


def test_batch_reports_a_bad_bundle_as_an_invalid_record(tmp_path):
    folder = tmp_path / "cohort"
    folder.mkdir()
    (folder / "a_profile.json").write_text((PROFILES / "fit_tcr_bcma_naive.json").read_text())
    b = load("asct_maintenance")
    b["entry"] = [e for e in b["entry"] if e["resource"]["resourceType"] != "Condition"]
    (folder / "b_bundle.json").write_text(json.dumps(b))
    proc = _cli("batch", str(folder), "--jobs", "1", "--quiet")
    assert proc.returncode == 1, proc.stderr
    rows = [json.loads(line) for line in proc.stdout.splitlines()]
    assert [r["status"] for r in rows] == ["evaluated", "invalid"]
    assert rows[1]["field"] == "(bundle)" and "no multiple myeloma diagnosis in the bundle" in rows[1]["error"]


@pytest.mark.parametrize("name", CASE_NAMES)
def test_bundle_with_overrides_ranks_like_the_tumor_board_case(name, evaluator, tmp_path):
    """`cds import-fhir --with` then `cds evaluate`: the same top options as the hand-written case it is modelled on."""
    import yaml

    exp = expected(name)
    out = tmp_path / "profile.json"
    proc = _cli(
        "import-fhir",
        str(CASES / f"{name}.json"),
        "--evaluation-date",
        exp["evaluation_date"],
        "--with",
        str(HERE / "overrides" / f"{name}.json"),
        "--output",
        str(out),
        "-q",
    )
    assert proc.returncode == 0, proc.stderr
    imported = evaluator.evaluate(evaluator.load(out))
    case = evaluator.evaluate(evaluator.load(PROFILES / f"{exp['modelled_on']}.json"))
    top = yaml.safe_load((PROFILES / "expected.yaml").read_text())[exp["modelled_on"]]["top"]
    assert list(imported.decision.order[: len(top)]) == list(case.decision.order[: len(top)])


def test_cds_evaluate_a_bundle_ranks_like_its_hand_written_profile(tmp_path):
    """`cds evaluate tests/fhir/cases/<case>.json`: the ranking of the profile written by hand for that patient."""
    exp = expected("car_t_bridging")
    hand = tmp_path / "hand.json"
    hand.write_text(json.dumps(exp["profile"]))
    rankings, notes = [], []
    for path in (CASES / "car_t_bridging.json", hand):
        proc = _cli("evaluate", str(path), "--format", "json", "--timestamp", "2026-01-15T00:00:00Z")
        assert proc.returncode == 0, proc.stderr
        rankings.append([(o["id"], o["score"]) for o in json.loads(proc.stdout)["options"]])
        notes.append(proc.stderr)
    assert rankings[0] == rankings[1]
    assert notes[0].startswith("note: imported from FHIR Bundle tb007 (33 entries, 3 line(s), 1 resource(s) not used)")
    assert notes[1] == ""


def test_a_null_in_a_list_of_complex_values_gives_the_librarys_error(vocabulary):
    """cds.interop.fhir.nullcheck lists once per model class the fields fhir-core checks for nulls: a null put
    into any list of complex values of any resource of the test cases, top level or nested, still gives
    fhir-core's own error (without the check, pydantic would say "Input should be a valid dictionary")."""
    from cds.interop.fhir import nullcheck

    checked = 0
    for name in CASE_NAMES:
        for i, entry in enumerate(load(name)["entry"]):
            resource = entry["resource"]
            for key, value in resource.items():
                if not (isinstance(value, list) and value and all(isinstance(v, dict) for v in value)):
                    continue
                bad = load(name)
                bad["entry"][i]["resource"][key] = [*value, None]
                text = _problem(bad, vocabulary)
                assert f"{key}: None is not allowed as an element of {key}" in text, text
                checked += 1
    assert checked > 20 and nullcheck.install() and nullcheck.library is not None
    assert any(cls.__name__ == "Condition" for cls in nullcheck.FIELDS)  # the models run this check, not the library's
    bad = load(CASE_NAMES[0])
    condition = next(e["resource"] for e in bad["entry"] if e["resource"]["resourceType"] == "Condition")
    condition["code"]["coding"].append(None)
    assert "code.coding: None is not allowed as an element of coding" in _problem(bad, vocabulary)


def test_fhir_cores_after_validator_still_decides_every_instance_that_fails_it(vocabulary):
    """cds.interop.fhir.nullcheck asks each model class once for what fhir-core's after validator checks
    (required elements, choice-of-type groups); an instance that fails it is handed to the library's own
    function: its errors are the library's, and an extension explaining a missing required value still passes."""
    from cds.interop.fhir import nullcheck

    def first(bundle: dict, kind: str) -> dict:
        return next(e["resource"] for e in bundle["entry"] if e["resource"]["resourceType"] == kind)

    bad = load("car_t_bridging")
    del first(bad, "Observation")["status"]
    assert "Observation/obs8: status: Value for the field 'status' is required." in _problem(bad, vocabulary)
    explained = load("car_t_bridging")
    observation = first(explained, "Observation")
    del observation["status"]
    observation["_status"] = {
        "extension": [{"url": "http://hl7.org/fhir/StructureDefinition/data-absent-reason", "valueCode": "unknown"}]
    }
    read_bundle(explained)  # the library lets it pass: so does the check
    two = load("car_t_bridging")
    first(two, "Observation")["effectivePeriod"] = {"start": "2021-02-20"}
    assert (
        "Any of one field value is expected from this list ['effectiveDateTime', 'effectiveInstant', 'effectivePeriod', "
        "'effectiveTiming'], but got multiple!" in _problem(two, vocabulary)
    )
    none = load("car_t_bridging")
    administration = first(none, "MedicationAdministration")
    for key in [k for k in administration if k.startswith("medication")]:
        del administration[key]
    assert "Expect any of field value from this list ['medicationCodeableConcept', 'medicationReference']" in _problem(
        none, vocabulary
    )
    assert nullcheck.install() and nullcheck.library_after is not None
    plans = {cls.__name__: plan for cls, plan in nullcheck.PLANS.items()}
    assert plans["Observation"] is not None and "status" in plans["Observation"][0]  # the models run this check
