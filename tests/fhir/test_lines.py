"""The line-splitting and refractoriness algorithm on hand-built exposures (no FHIR, no engine)."""

from __future__ import annotations

from datetime import date

from cds.interop.fhir.dates import parse_day
from cds.interop.fhir.lines import Apheresis, Assessment, Exposure, Transplant, derive_outcomes, split_lines

CLASSES = {
    "bortezomib": "pi",
    "carfilzomib": "pi",
    "lenalidomide": "imid",
    "pomalidomide": "imid",
    "daratumumab": "anti_cd38",
    "dexamethasone": "steroid",
    "melphalan": "chemotherapy",
    "cyclophosphamide": "chemotherapy",
    "fludarabine": "chemotherapy",
    "teclistamab": "bcma_bispecific",
    "ciltacabtagene autoleucel": "bcma_car_t",
    "talquetamab": "gprc5d_bispecific",
}
_n = iter(range(10_000))


def ex(drug, start, end=None, **kw):
    s = parse_day(start)
    return Exposure(
        ref=f"MedicationAdministration/{drug[:4]}{next(_n)}",
        drug=drug,
        drug_class=CLASSES[drug],
        start=s,
        end=parse_day(end) if end else s,
        **kw,
    )


def worse(day, ref="Observation/p"):
    return Assessment(ref, parse_day(day), worsened=True)


def agents(lines):
    return [ln.drugs() for ln in lines]


def test_regimen_window_and_new_agent_after_30_days():
    lines, _ = split_lines(
        [
            ex("bortezomib", "2020-01-01", "2020-06-01"),
            ex("lenalidomide", "2020-01-20", "2020-06-01"),
            ex("dexamethasone", "2020-01-01", "2020-06-01"),
            ex("daratumumab", "2020-03-01", "2020-06-01"),
        ]
    )
    assert agents(lines) == [["bortezomib", "dexamethasone", "lenalidomide"], ["daratumumab"]]
    assert [ln.opened_by for ln in lines] == ["LOT-OPEN-FIRST", "LOT-OPEN-NEW-AGENT"]
    assert lines[0].members[1].rule == "LOT-JOIN-WINDOW" or lines[0].members[2].rule == "LOT-JOIN-WINDOW"


def test_boundary_30_days_joins_31_opens():
    at30, _ = split_lines([ex("bortezomib", "2020-01-01", "2020-03-01"), ex("lenalidomide", "2020-01-31")])
    at31, _ = split_lines([ex("bortezomib", "2020-01-01", "2020-03-01"), ex("lenalidomide", "2020-02-01")])
    assert len(at30) == 1 and len(at31) == 2


def test_gap_of_more_than_90_days_opens_a_line_even_for_the_same_drug():
    for gap, n in ((90, 1), (91, 2)):
        end = date(2020, 3, 1)
        resume = date.fromordinal(end.toordinal() + gap).isoformat()
        lines, _ = split_lines([ex("lenalidomide", "2020-01-01", end.isoformat()), ex("lenalidomide", resume)])
        assert len(lines) == n, gap
    assert lines[1].opened_by == "LOT-OPEN-GAP"


def test_asct_conditioning_and_maintenance_stay_in_the_line():
    asct = Transplant("Procedure/asct", parse_day("2020-06-03"), allogeneic=False)
    exps = [
        ex("bortezomib", "2020-01-01", "2020-04-15"),
        ex("lenalidomide", "2020-01-01", "2020-04-15"),
        ex("melphalan", "2020-06-01"),
        ex("lenalidomide", "2020-09-20", "2023-01-10"),
    ]
    lines, _ = split_lines(exps, [asct])
    assert len(lines) == 1
    rules = {m.exposure.drug + m.exposure.start.iso(): m.rule for m in lines[0].members}
    assert rules["melphalan2020-06-01"] == "LOT-JOIN-CONDITIONING"
    assert rules["lenalidomide2020-09-20"] == "LOT-JOIN-MAINTENANCE"
    assert [t.ref for t in lines[0].autologous_transplant()] == ["Procedure/asct"]


def test_maintenance_boundary_180_days_and_progression_breaks_it():
    asct = Transplant("Procedure/asct", parse_day("2020-06-01"), allogeneic=False)
    base = [ex("bortezomib", "2020-01-01", "2020-05-01"), ex("melphalan", "2020-05-30")]
    inside, _ = split_lines([*base, ex("daratumumab", "2020-11-28")], [asct])  # day 180
    outside, _ = split_lines([*base, ex("daratumumab", "2020-11-29")], [asct])  # day 181
    assert len(inside) == 1 and len(outside) == 2
    relapsed, _ = split_lines([*base, ex("daratumumab", "2020-10-01")], [asct], assessments=[worse("2020-09-15")])
    assert len(relapsed) == 2 and relapsed[1].opened_by == "LOT-OPEN-PROGRESSION"


def test_melphalan_linked_by_part_of_is_conditioning_whatever_its_date():
    asct = Transplant("Procedure/asct", parse_day("2020-06-20"), allogeneic=False)
    lines, _ = split_lines(
        [ex("bortezomib", "2020-01-01", "2020-03-01"), ex("melphalan", "2020-05-01", part_of=("Procedure/asct",))], [asct]
    )
    assert len(lines) == 1 and lines[0].members[-1].rule == "LOT-JOIN-CONDITIONING"


def test_car_t_line_takes_bridging_and_lymphodepletion():
    aph = Apheresis("Procedure/aph", parse_day("2022-03-01"))
    exps = [
        ex("daratumumab", "2021-01-01", "2022-02-10"),
        ex("pomalidomide", "2021-01-01", "2022-02-10"),
        ex("carfilzomib", "2022-03-10", "2022-04-05"),
        ex("dexamethasone", "2022-03-10", "2022-04-05"),
        ex("fludarabine", "2022-04-20", "2022-04-22"),
        ex("cyclophosphamide", "2022-04-20", "2022-04-22"),
        ex("ciltacabtagene autoleucel", "2022-04-25"),
    ]
    lines, _ = split_lines(exps, apheresis=[aph])
    assert agents(lines) == [
        ["daratumumab", "pomalidomide"],
        ["carfilzomib", "dexamethasone", "cyclophosphamide", "fludarabine", "ciltacabtagene autoleucel"],
    ]
    car = lines[1]
    assert car.opened_by == "LOT-OPEN-CAR-T" and car.start == date(2022, 3, 1)
    rules = {m.exposure.drug: m.rule for m in car.members}
    assert rules["carfilzomib"] == "LOT-JOIN-BRIDGING" and rules["fludarabine"] == "LOT-JOIN-LYMPHODEPLETION"


def test_lymphodepletion_boundary_14_days_before_the_infusion():
    joined, _ = split_lines(
        [
            ex("daratumumab", "2021-01-01", "2021-12-01"),
            ex("fludarabine", "2021-12-11"),
            ex("ciltacabtagene autoleucel", "2021-12-25"),
        ]
    )
    apart, _ = split_lines(
        [
            ex("daratumumab", "2021-01-01", "2021-12-01"),
            ex("fludarabine", "2021-12-10"),
            ex("ciltacabtagene autoleucel", "2021-12-25"),
        ]
    )
    assert agents(joined) == [["daratumumab"], ["fludarabine", "ciltacabtagene autoleucel"]]
    assert agents(apart) == [["daratumumab"], ["fludarabine"], ["ciltacabtagene autoleucel"]]


def test_explicit_line_numbers_win():
    exps = [
        ex("bortezomib", "2020-01-01", "2020-05-01", line_number=1),
        ex("daratumumab", "2020-01-10", "2020-05-01", line_number=2),  # would join by the 30-day window
        ex("lenalidomide", "2020-04-01", "2020-05-01", line_number=1),
    ]  # would open by the new-agent rule
    lines, _ = split_lines(exps)
    assert agents(lines) == [["bortezomib", "lenalidomide"], ["daratumumab"]]
    assert lines[1].opened_by == "LOT-OPEN-EXPLICIT"


def test_steroid_never_opens_a_line_and_before_any_line_is_reported():
    lines, unplaced = split_lines(
        [ex("dexamethasone", "2019-01-01"), ex("bortezomib", "2020-01-01"), ex("dexamethasone", "2020-01-01")]
    )
    assert agents(lines) == [["bortezomib", "dexamethasone"]]
    assert [u[0].drug for u in unplaced] == ["dexamethasone"]


def test_refractoriness_is_per_drug_60_day_window():
    """Progression during lenalidomide maintenance years after induction: only lenalidomide is refractory."""
    asct = Transplant("Procedure/asct", parse_day("2019-06-01"), allogeneic=False)
    exps = [
        ex("daratumumab", "2019-01-01", "2019-04-30"),
        ex("bortezomib", "2019-01-01", "2019-04-30"),
        ex("lenalidomide", "2019-01-01", "2019-04-30"),
        ex("melphalan", "2019-05-30"),
        ex("lenalidomide", "2019-09-01", "2022-05-01"),
    ]
    lines, _ = split_lines(exps, [asct])
    derive_outcomes(lines, [worse("2022-04-15")])
    assert sorted(lines[0].refractory) == ["lenalidomide"]
    assert lines[0].stop_reason == ("progression", "Observation/p")


def test_refractory_boundary_60_days_after_last_dose():
    for day, refractory in (("2020-04-30", True), ("2020-05-01", False)):  # last dose 2020-03-01: +60 = 2020-04-30
        lines, _ = split_lines([ex("pomalidomide", "2020-01-01", "2020-03-01")])
        derive_outcomes(lines, [worse(day)])
        assert ("pomalidomide" in lines[0].refractory) is refractory, day


def test_progression_on_next_line_start_day_is_not_the_next_lines():
    lines, _ = split_lines(
        [ex("pomalidomide", "2020-01-01", "2020-06-01"), ex("teclistamab", "2020-06-10")], assessments=[worse("2020-06-10")]
    )
    derive_outcomes(lines, [worse("2020-06-10")])
    assert len(lines) == 2 and "pomalidomide" in lines[0].refractory and not lines[1].refractory


def test_status_reasons_no_response_and_not_tolerated():
    lines, _ = split_lines(
        [
            ex("bortezomib", "2020-01-01", "2020-02-01", stop="not_tolerated"),
            ex("lenalidomide", "2020-01-01", "2020-06-01", stop="no_response"),
        ]
    )
    derive_outcomes(lines, [])
    assert list(lines[0].intolerant) == ["bortezomib"] and list(lines[0].refractory) == ["lenalidomide"]
    assert lines[0].stop_reason[0] == "progression"


def test_relapse_on_a_bispecific():
    lines, _ = split_lines(
        [ex("daratumumab", "2020-01-01", "2021-01-01"), ex("teclistamab", "2021-03-01", "2022-02-01", stop="no_response")],
        assessments=[worse("2021-02-01"), worse("2022-01-20", "Observation/p2")],
    )
    derive_outcomes(lines, [worse("2021-02-01"), worse("2022-01-20", "Observation/p2")])
    assert agents(lines) == [["daratumumab"], ["teclistamab"]]
    assert lines[1].opened_by == "LOT-OPEN-PROGRESSION"
    assert lines[1].progression.ref == "Observation/p2" and "teclistamab" in lines[1].refractory
