"""Writes the synthetic case bundles in tests/fhir/cases/ (run once; the JSON files are committed).

    .venv/bin/python tests/fhir/make_cases.py

Each case is a made-up patient modelled on a tumor-board case in patient_profiles/ (named in
CASES below) and on the CC0 mCODE examples' shapes, with the awkward things EHR exports do.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from builder import SNOMED, UCUM, Builder

HERE = Path(__file__).resolve().parent / "cases"
NOT_TOLERATED = ("407563006", "Treatment not tolerated")
NO_RESPONSE = ("266721009", "No response to treatment")


def asct_maintenance() -> dict:
    """Modelled on fit_tcr_bcma_naive (TB-001): RxNorm codes, effectivePeriod per cycle, ASCT with
    melphalan conditioning linked by partOf, lenalidomide maintenance, progression on maintenance,
    DKd (daratumumab SC by its RxNorm code), Pd as text with a dose, a GenomicVariant with an ISCN
    component, sBCMA by its local code, supportive drugs, an unknown drug, an Encounter."""
    b = Builder("tb001")
    b.patient("1967-09-02", "male", mrn="TB-001")
    b.condition("C90.00", "Multiple myeloma not having achieved remission", "2019-02-11", snomed="109989006")
    for cycle in range(4):  # VRd induction, 4 cycles of 21 days
        s = ["2019-03-01", "2019-03-22", "2019-04-12", "2019-05-03"][cycle]
        e = ["2019-03-14", "2019-04-04", "2019-04-25", "2019-05-16"][cycle]
        b.administration("bortezomib", s, e)
        b.administration("lenalidomide", s, e)
        b.administration(Builder.drug("dexamethasone", "Dexamethasone 40 mg oral"), s, e)
    b.administration(Builder.drug("acyclovir", "Acyclovir 400 mg"), "2019-03-01", "2019-06-01")
    asct = b.procedure("Autologous hematopoietic stem cell transplant", "2019-07-10", snomed="234336002")
    b.administration(Builder.drug("melphalan", "Melphalan 200 mg/m2"), "2019-07-08", part_of=f"Procedure/{asct['id']}")
    b.administration("lenalidomide", "2019-10-01", "2022-08-20")  # maintenance, 83 days after the ASCT
    b.disease_status("2019-09-15", "improved")
    b.disease_status("2022-08-12", "worsened")  # progression on maintenance
    b.administration(Builder.drug("daratumumab", "Darzalex Faspro"), "2022-09-01", "2023-09-10")
    b.entries[-1]["resource"]["medicationCodeableConcept"] = {
        "coding": [
            {
                "system": "http://www.nlm.nih.gov/research/umls/rxnorm",
                "code": "2372199",
                "display": "daratumumab and hyaluronidase-fihj",
            }
        ]
    }
    b.administration(Builder.drug("carfilzomib", "Kyprolis"), "2022-09-01", "2023-09-10")
    b.administration(Builder.drug("dexamethasone", "dexamethasone"), "2022-09-01", "2023-09-10")
    b.administration(Builder.drug("zoledronic acid", "Zometa 4 mg IV"), "2022-09-01")
    b.administration(Builder.drug("xyz", "Investigational agent XYZ-123"), "2023-01-05")
    b.disease_status("2023-08-30", "worsened")
    b.administration(Builder.drug("pomalidomide", "Pomalyst 4 mg capsule"), "2023-09-20", "2025-11-30")
    b.administration(Builder.drug("dexamethasone", "Dexamethasone"), "2023-09-20", "2025-11-30")
    b.disease_status("2025-11-20", "worsened")
    b.ecog("2025-06-01", 0)
    b.ecog("2026-01-05", 1)
    b.quantity("2164-2", "Creatinine renal clearance in 24 hour urine and serum", "2026-01-05", 82, "mL/min")
    b.quantity("2276-4", "Ferritin [Mass/volume] in Serum or Plasma", "2026-01-05", 310, "ng/mL")
    b.quantity("1988-5", "C reactive protein [Mass/volume] in Serum or Plasma", "2026-01-05", 0.4, "mg/dL")
    b.observation(
        {"coding": [{"system": "urn:cds-myeloma:fhir:lab", "code": "soluble-bcma", "display": "Soluble BCMA"}]},
        "2026-01-05",
        valueQuantity={"value": 120, "unit": "ng/mL", "system": UCUM, "code": "ng/mL"},
    )
    b.observation(
        {"coding": [{"system": "http://loinc.org", "code": "69548-6", "display": "Genetic variant assessment"}]},
        "2019-02-20",
        valueCodeableConcept={"coding": [{"system": "http://loinc.org", "code": "LA9633-4", "display": "Present"}]},
        component=[
            {
                "code": {"coding": [{"system": "http://loinc.org", "code": "81291-7", "display": "Variant ISCN"}]},
                "valueCodeableConcept": {"text": "nuc ish(CKS1B x3)[gain 1q21]"},
            }
        ],
    )
    b.add(
        {
            "resourceType": "Encounter",
            "id": "enc1",
            "status": "finished",
            "class": {"system": "http://terminology.hl7.org/CodeSystem/v3-ActCode", "code": "AMB"},
            "subject": b.subject,
        }
    )
    return b.bundle("collection", bundle_id="tb001-export")


def old_sender() -> dict:
    """An older sender: MedicationStatement only, text-only drug names and brands, month-precision
    periods, a searchset, a local FISH code per probe, eGFR-only kidney data, ECOG as an LL529-9
    answer code. Modelled on first_relapse_len_refractory."""
    b = Builder("old7")
    b.patient("1955-04-30", "female", mrn="TB-017")
    b.condition("C90.00", "Multiple myeloma", "2021-01-20")
    b.statement("Velcade", "2021-02", "2021-07")
    b.statement("Revlimid 25mg", "2021-02", "2021-07")
    b.statement("Decadron", "2021-02", "2021-07")
    b.statement("Revlimid 10 mg", "2021-09", "2025-10")  # maintenance without a transplant: same drug, within 90 days
    b.statement("Valtrex", "2021-02", "2025-10")
    b.disease_status("2025-10-01", "worsened")
    b.loinc(
        "89247-1",
        "ECOG Performance Status score",
        "2025-12-01",
        valueCodeableConcept={
            "coding": [{"system": "http://loinc.org", "code": "LA9623-5", "display": "Symptomatic but completely ambulatory"}]
        },
    )
    b.quantity(
        "62238-1",
        "Glomerular filtration rate/1.73 sq M.predicted [Volume Rate/Area] in Serum, Plasma or Blood by Creatinine-based formula (CKD-EPI)",
        "2025-12-01",
        58,
        "mL/min/{1.73_m2}",
    )
    b.observation(
        {"coding": [{"system": "urn:oid:1.2.3.4.5.lab", "code": "FISH17P", "display": "FISH del(17p) / TP53"}]},
        "2021-01-25",
        valueCodeableConcept={"coding": [{"system": SNOMED, "code": "260415000", "display": "Not detected"}]},
    )
    b.observation(
        {"coding": [{"system": "urn:oid:1.2.3.4.5.lab", "code": "FISH414", "display": "FISH t(4;14) IGH/FGFR3"}]},
        "2021-01-25",
        valueCodeableConcept={"coding": [{"system": SNOMED, "code": "260415000", "display": "Not detected"}]},
    )
    bundle = b.bundle("searchset", timestamp=None, bundle_id="old7-search")
    for e in bundle["entry"]:
        e["search"] = {"mode": "match"}
    return bundle


def request_only() -> dict:
    """MedicationRequest-only history (orders with boundsPeriod; one with authoredOn only), a
    transaction Bundle with urn:uuid fullUrls, Medication resources referenced from the bundle and
    contained, bortezomib stopped as not tolerated, dialysis, Cockcroft-Gault CrCl. Modelled on
    severe_renal_impairment (TB-006)."""
    b = Builder("tb006")
    b.patient("1948-11-15", "male", mrn="TB-006")
    b.condition("C90.00", "Multiple myeloma not having achieved remission", "2020-05-02")
    b.add({"resourceType": "Medication", "id": "med-velcade", "code": {"text": "VELCADE 3.5 MG Injection"}})
    b.request(None, "2020-06-01", "2020-12-20", medication_ref="Medication/med-velcade", reason=NOT_TOLERATED)
    b.request("cyclophosphamide", "2020-06-01", "2021-01-10")
    b.request(Builder.drug("dexamethasone", "dexamethasone 20 mg tablet"), "2020-06-01", "2021-01-10")
    b.disease_status("2020-09-01", "improved")
    b.request(Builder.drug("daratumumab", "daratumumab"), "2021-05-03", "2023-02-01")
    b.request("lenalidomide", "2021-05-03", "2023-02-01")
    b.request(Builder.drug("dexamethasone", "Dex"), "2021-05-03", "2023-02-01")
    b.disease_status("2023-01-20", "worsened")
    kd = b.request(None, "2023-02-15", None, medication_ref="#kyp", reason=NO_RESPONSE, bounds=False)
    kd["contained"] = [{"resourceType": "Medication", "id": "kyp", "code": {"text": "Kyprolis (carfilzomib) 60 mg vial"}}]
    b.request(Builder.drug("dexamethasone", "Decadron"), "2023-02-15", "2023-11-30")
    b.request(Builder.drug("filgrastim", "filgrastim-sndz (Zarxio)"), "2023-03-01")
    b.request(Builder.drug("ondansetron", "Zofran 8 mg"), "2023-03-01", status="cancelled")
    for day in ("2025-11-03", "2025-12-01", "2026-01-05"):
        b.procedure("Hemodialysis", day, snomed="108241001")
    b.ecog("2026-01-05", 2)
    b.quantity("35591-7", "Creatinine renal clearance predicted by Cockcroft-Gault formula", "2026-01-05", 18, "mL/min")
    b.observation({"text": "Myeloma FISH panel"}, "2020-05-10", valueString="1q21 gain (CKS1B 3 copies); no other abnormality")
    bundle = b.bundle("transaction", bundle_id="tb006-tx")
    for e in bundle["entry"]:
        r = e["resource"]
        e["request"] = {"method": "POST", "url": r["resourceType"]}
    return bundle


def car_t() -> dict:
    """CAR-T with apheresis, bridging (Kd), fludarabine/cyclophosphamide lymphodepletion, the ped-cancer
    line-of-therapy extension on the first line, response then relapse 14 months after infusion.
    Modelled on late_relapse_after_cilta_cel (TB-007)."""
    b = Builder("tb007")
    b.patient("1964-05-20", "female", mrn="TB-007")
    b.condition("C90.00", "Multiple myeloma not having achieved remission", "2018-01-10")
    for name in ("bortezomib", "lenalidomide", "dexamethasone"):
        b.administration(name, "2018-02-01", "2018-06-15", line=1)
    asct = b.procedure("Autologous hematopoietic stem cell transplant", "2018-08-01", snomed="234336002")
    b.administration("melphalan", "2018-07-30", part_of=f"Procedure/{asct['id']}", line=1)
    b.administration("lenalidomide", "2018-11-01", "2021-03-01", line=1)
    b.disease_status("2021-02-20", "worsened")
    for name in ("daratumumab", "pomalidomide", "dexamethasone"):
        b.administration(name, "2021-03-10", "2024-05-01")
    b.disease_status("2024-04-15", "worsened")
    b.procedure("Leukapheresis for CAR-T cell manufacturing", "2024-05-20")
    b.administration("carfilzomib", "2024-05-28", "2024-06-20")
    b.administration("dexamethasone", "2024-05-28", "2024-06-20")
    b.administration("fludarabine", "2024-07-01", "2024-07-03")
    b.administration("cyclophosphamide", "2024-07-01", "2024-07-03")
    b.administration(Builder.drug("ciltacabtagene autoleucel", "Carvykti"), "2024-07-08")
    b.administration(Builder.drug("tocilizumab", "Actemra"), "2024-07-12")
    b.observation({"text": "Best overall response"}, "2024-10-08", valueCodeableConcept={"text": "VGPR"})
    b.observation(
        {"text": "IMWG response assessment"}, "2025-01-08", valueCodeableConcept={"text": "stringent complete response"}
    )
    b.disease_status("2025-09-10", "worsened")
    b.ecog("2026-01-10", 1)
    b.quantity("2164-2", "Creatinine renal clearance", "2026-01-10", 1.3, "mL/s")
    b.quantity("2276-4", "Ferritin", "2026-01-10", 420, "ug/L")
    b.quantity("1988-5", "CRP", "2026-01-10", 3, "mg/L")
    b.quantity("751-8", "Neutrophils [#/volume] in Blood", "2026-01-10", 2.1, "10*3/uL")
    b.quantity("777-3", "Platelets [#/volume] in Blood", "2026-01-10", 145, "10*3/uL")
    b.quantity("2465-3", "IgG [Mass/volume] in Serum", "2026-01-10", 450, "mg/dL")
    b.observation({"text": "Soluble BCMA"}, "2026-01-10", valueQuantity={"value": 180, "unit": "ng/mL"})
    b.observation({"text": "FISH myeloma panel"}, "2018-01-15", valueCodeableConcept={"text": "t(4;14)(p16;q32) detected"})
    b.observation(
        {"coding": [{"system": "http://ncicb.nci.nih.gov/xml/owl/EVS/Thesaurus.owl", "code": "C141392"}]},
        "2018-01-20",
        valueCodeableConcept={
            "coding": [
                {
                    "system": "http://ncicb.nci.nih.gov/xml/owl/EVS/Thesaurus.owl",
                    "code": "C141395",
                    "display": "RISS Stage II Plasma Cell Myeloma",
                }
            ]
        },
    )
    return b.bundle("collection", timestamp="2026-01-15T10:30:00+01:00", bundle_id="tb007")


def bispecific_relapse() -> dict:
    """Relapse on a BCMA bispecific: teclistamab stopped for no response, after VRd+ASCT, DPd, Kd;
    a document Bundle (Composition first), Karnofsky as well as ECOG, ferritin in pmol/L (an unknown
    unit: reported, not guessed). Modelled on relapse_after_bcma_bispecific (TB-005)."""
    b = Builder("tb005")
    b.add(
        {
            "resourceType": "Composition",
            "id": "comp1",
            "status": "final",
            "type": {"text": "Tumor board summary"},
            "subject": {"reference": "Patient/tb005"},
            "date": "2026-01-14",
            "author": [{"display": "Haematology"}],
            "title": "Referral",
        }
    )
    b.patient("1959-08-08", "male", mrn="TB-005")
    b.condition("C90.02", "Multiple myeloma in relapse", "2017-03-01")
    for name in ("bortezomib", "lenalidomide", "dexamethasone"):
        b.administration(name, "2017-04-01", "2017-08-01")
    asct = b.procedure("Autologous hematopoietic stem cell transplant", "2017-10-02", snomed="234336002")
    b.administration("melphalan", "2017-09-30", part_of=f"Procedure/{asct['id']}")
    b.administration("lenalidomide", "2017-12-01", "2018-03-05")  # maintenance, stopped at the early relapse
    b.disease_status("2018-03-01", "worsened")
    for name in ("daratumumab", "pomalidomide", "dexamethasone"):
        b.administration(name, "2018-03-20", "2021-06-01")
    b.disease_status("2021-05-20", "worsened")
    b.administration("carfilzomib", "2021-06-15", "2023-10-01")
    b.administration("dexamethasone", "2021-06-15", "2023-10-01")
    b.disease_status("2023-09-15", "worsened")
    b.administration(Builder.drug("teclistamab", "teclistamab-cqyv"), "2023-10-20", "2025-12-01", reason=NO_RESPONSE)
    b.administration(Builder.drug("immune globulin", "IVIG 0.4 g/kg"), "2024-02-01")
    b.ecog("2026-01-05", 1)
    b.loinc("89243-0", "Karnofsky Performance Status score", "2026-01-05", valueInteger=80)
    b.quantity("2164-2", "Creatinine renal clearance", "2026-01-05", 64, "mL/min")
    b.quantity("2276-4", "Ferritin", "2026-01-05", 900, "pmol/L")
    b.observation({"text": "Myeloma FISH panel"}, "2017-03-05", valueCodeableConcept={"text": "No abnormalities detected"})
    return b.bundle("document", bundle_id="tb005-doc")


CASES = {
    "asct_maintenance": (asct_maintenance, "fit_tcr_bcma_naive"),
    "old_sender_statements": (old_sender, "first_relapse_len_refractory"),
    "request_only_dialysis": (request_only, "severe_renal_impairment"),
    "car_t_bridging": (car_t, "late_relapse_after_cilta_cel"),
    "relapse_on_bispecific": (bispecific_relapse, "relapse_after_bcma_bispecific"),
}


if __name__ == "__main__":
    HERE.mkdir(exist_ok=True)
    for name, (make, _) in CASES.items():
        (HERE / f"{name}.json").write_text(json.dumps(make(), indent=1, ensure_ascii=False) + "\n", encoding="utf-8")
        print(f"wrote {HERE / name}.json")
