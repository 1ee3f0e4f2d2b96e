"""A small FHIR R4 resource builder for the tests: the synthetic case bundles and the profile exporter.

`export_profile(profile)` writes a v2 profile (with dated lines) as a Bundle the way an EHR
would hold it: one MedicationAdministration per drug per line over the line's period, an
autologous transplant Procedure with melphalan conditioning, a disease-status Observation
('worsened') at each progression and, for a refractory drug that the progression does not
cover, a stop with statusReason 'No response to treatment'. The property test imports it
back and compares the derived facts.
"""

from __future__ import annotations

import itertools
from datetime import date, timedelta
from typing import Any

LOINC = "http://loinc.org"
SNOMED = "http://snomed.info/sct"
ICD10CM = "http://hl7.org/fhir/sid/icd-10-cm"
RXNORM = "http://www.nlm.nih.gov/research/umls/rxnorm"
UCUM = "http://unitsofmeasure.org"
MCODE = "http://hl7.org/fhir/us/mcode/StructureDefinition/"
LINE_EXT = "http://hl7.org/fhir/us/pedcan/StructureDefinition/pedcan-line-of-therapy-number"
RX = {
    "lenalidomide": "342369",
    "bortezomib": "358258",
    "carfilzomib": "1302966",
    "daratumumab": "1721947",
    "melphalan": "6718",
    "cyclophosphamide": "3002",
    "thalidomide": "10432",
    "ixazomib": "1723735",
    "elotuzumab": "1726104",
}


class Builder:
    def __init__(self, patient_id: str = "p1", prefix: str = ""):
        self.pid = patient_id
        self.prefix = prefix
        self.entries: list[dict[str, Any]] = []
        self._n = itertools.count(1)

    def _id(self, kind: str) -> str:
        return f"{self.prefix}{kind}{next(self._n)}"

    @property
    def subject(self) -> dict[str, str]:
        return {"reference": f"Patient/{self.pid}"}

    def add(self, resource: dict[str, Any], **entry: Any) -> dict[str, Any]:
        self.entries.append(
            {"fullUrl": f"http://ehr.example.org/fhir/{resource['resourceType']}/{resource['id']}", "resource": resource, **entry}
        )
        return resource

    def patient(self, birth: str, gender: str | None = "female", mrn: str | None = None) -> dict[str, Any]:
        r: dict[str, Any] = {
            "resourceType": "Patient",
            "id": self.pid,
            "meta": {"profile": [MCODE + "mcode-cancer-patient"]},
            "birthDate": birth,
        }
        if gender:
            r["gender"] = gender
        if mrn:
            r["identifier"] = [{"system": "http://ehr.example.org/mrn", "value": mrn}]
        return self.add(r)

    def condition(self, icd: str, display: str, onset: str, snomed: str | None = None) -> dict[str, Any]:
        coding = [{"system": ICD10CM, "code": icd, "display": display}]
        if snomed:
            coding.append({"system": SNOMED, "code": snomed, "display": "Multiple myeloma (disorder)"})
        return self.add(
            {
                "resourceType": "Condition",
                "id": self._id("cond"),
                "meta": {"profile": [MCODE + "mcode-primary-cancer-condition"]},
                "clinicalStatus": {
                    "coding": [{"system": "http://terminology.hl7.org/CodeSystem/condition-clinical", "code": "active"}]
                },
                "verificationStatus": {
                    "coding": [{"system": "http://terminology.hl7.org/CodeSystem/condition-ver-status", "code": "confirmed"}]
                },
                "category": [
                    {
                        "coding": [
                            {"system": "http://terminology.hl7.org/CodeSystem/condition-category", "code": "problem-list-item"}
                        ]
                    }
                ],
                "code": {"coding": coding},
                "subject": self.subject,
                "onsetDateTime": onset,
            }
        )

    @staticmethod
    def drug(name: str, text: str | None = None, rxnorm: bool = True) -> dict[str, Any]:
        if rxnorm and name in RX:
            return {"coding": [{"system": RXNORM, "code": RX[name], "display": name}], "text": text or name}
        return {"text": text or name}

    def administration(
        self,
        drug: dict[str, Any] | str,
        start: str,
        end: str | None = None,
        *,
        status: str = "completed",
        reason: tuple[str, str] | None = None,
        line: int | None = None,
        part_of: str | None = None,
    ) -> dict[str, Any]:
        r: dict[str, Any] = {
            "resourceType": "MedicationAdministration",
            "id": self._id("ma"),
            "meta": {"profile": [MCODE + "mcode-cancer-related-medication-administration"]},
            "status": status,
            "medicationCodeableConcept": self.drug(drug) if isinstance(drug, str) else drug,
            "subject": self.subject,
        }
        if end and end != start:
            r["effectivePeriod"] = {"start": start, "end": end}
        else:
            r["effectiveDateTime"] = start
        self._stop(r, reason, list_=True)
        if line is not None:
            r["extension"] = [{"url": LINE_EXT, "valuePositiveInt": line}]
        if part_of:
            r["partOf"] = [{"reference": part_of}]
        return self.add(r)

    def request(
        self,
        drug: dict[str, Any] | str | None,
        start: str,
        end: str | None = None,
        *,
        status: str = "completed",
        reason: tuple[str, str] | None = None,
        medication_ref: str | None = None,
        bounds: bool = True,
        **entry: Any,
    ) -> dict[str, Any]:
        r: dict[str, Any] = {
            "resourceType": "MedicationRequest",
            "id": self._id("mr"),
            "meta": {"profile": [MCODE + "mcode-cancer-related-medication-request"]},
            "status": status,
            "intent": "order",
            "subject": self.subject,
            "authoredOn": start,
        }
        if medication_ref:
            r["medicationReference"] = {"reference": medication_ref}
        else:
            r["medicationCodeableConcept"] = self.drug(drug) if isinstance(drug, str) else drug
        if bounds:
            r["dosageInstruction"] = [{"timing": {"repeat": {"boundsPeriod": {"start": start, **({"end": end} if end else {})}}}}]
        self._stop(r, reason, list_=False)
        return self.add(r, **entry)

    def statement(self, text: str, start: str, end: str | None = None, *, status: str = "completed") -> dict[str, Any]:
        r: dict[str, Any] = {
            "resourceType": "MedicationStatement",
            "id": self._id("ms"),
            "status": status,
            "medicationCodeableConcept": {"text": text},
            "subject": self.subject,
            "effectivePeriod": {"start": start, **({"end": end} if end else {})},
        }
        return self.add(r)

    @staticmethod
    def _stop(r: dict[str, Any], reason: tuple[str, str] | None, list_: bool) -> None:
        if reason:
            cc = {"coding": [{"system": SNOMED, "code": reason[0], "display": reason[1]}]}
            r["status"] = "stopped"
            r["statusReason"] = [cc] if list_ else cc

    def procedure(self, text: str, day: str, snomed: str | None = None, **extra: Any) -> dict[str, Any]:
        code: dict[str, Any] = {"text": text}
        if snomed:
            code["coding"] = [{"system": SNOMED, "code": snomed, "display": text}]
        return self.add(
            {
                "resourceType": "Procedure",
                "id": self._id("proc"),
                "status": "completed",
                "code": code,
                "subject": self.subject,
                "performedDateTime": day,
                **extra,
            }
        )

    def observation(self, code: dict[str, Any], day: str, **value: Any) -> dict[str, Any]:
        return self.add(
            {
                "resourceType": "Observation",
                "id": self._id("obs"),
                "status": "final",
                "code": code,
                "subject": self.subject,
                "effectiveDateTime": day,
                **value,
            }
        )

    def loinc(self, code: str, display: str, day: str, **value: Any) -> dict[str, Any]:
        return self.observation({"coding": [{"system": LOINC, "code": code, "display": display}]}, day, **value)

    def quantity(self, code: str, display: str, day: str, value: float, unit: str) -> dict[str, Any]:
        return self.loinc(code, display, day, valueQuantity={"value": value, "unit": unit, "system": UCUM, "code": unit})

    def ecog(self, day: str, score: int) -> dict[str, Any]:
        return self.loinc("89247-1", "ECOG Performance Status score", day, valueInteger=score)

    def disease_status(self, day: str, status: str = "worsened") -> dict[str, Any]:
        codes = {"worsened": "271299001", "improved": "268910001", "stable": "359746009"}
        return self.loinc(
            "97509-4",
            "Cancer disease progression",
            day,
            valueCodeableConcept={"coding": [{"system": SNOMED, "code": codes[status], "display": status.capitalize()}]},
        )

    def bundle(
        self, type_: str = "collection", timestamp: str | None = "2026-01-15T09:00:00Z", bundle_id: str = "b1"
    ) -> dict[str, Any]:
        b: dict[str, Any] = {"resourceType": "Bundle", "id": bundle_id, "type": type_}
        if timestamp:
            b["timestamp"] = timestamp
        b["entry"] = self.entries
        return b


# --- profile -> bundle (the property test's exporter) -----------------------------------------------

NO_RESPONSE = ("266721009", "No response to treatment")


def _d(text: str) -> date:
    return date.fromisoformat(text)


def export_profile(profile: dict[str, Any], vocabulary: Any) -> dict[str, Any]:
    """A Bundle holding the profile's facts as an EHR would (see the module docstring)."""
    b = Builder(patient_id="exp")
    on = _d(profile["evaluation_date"])
    birth = date(on.year - profile["age"], 1, 1) if (on.month, on.day) >= (1, 1) else None
    b.patient(birth.isoformat() if birth else "1950-01-01", gender=profile.get("sex"), mrn=profile["patient_id"])
    b.condition("C90.00", "Multiple myeloma not having achieved remission", "2015-01-01")
    if "ecog" in profile:
        b.ecog(profile["evaluation_date"], profile["ecog"])
    if "creatinine_clearance_ml_min" in profile:
        b.quantity(
            "35591-7",
            "Creatinine renal clearance predicted by Cockcroft-Gault",
            profile["evaluation_date"],
            profile["creatinine_clearance_ml_min"],
            "mL/min",
        )
    for line in profile["prior_lines"]:
        start, end = _d(line["start_date"]), _d(line["end_date"])
        progression = _d(line["progression_date"]) if "progression_date" in line else None
        refractory = set(line.get("refractory_to", []))
        for agent in line["agents"]:
            drug = vocabulary.lookup(agent)
            if drug.drug_class == "chemotherapy" and drug.name == "melphalan" and line.get("autologous_transplant"):
                continue  # given below as conditioning
            covered = progression is not None and start < progression <= end + timedelta(days=60)
            reason = NO_RESPONSE if drug.name in refractory and not covered and drug.drug_class != "steroid" else None
            b.administration(Builder.drug(drug.name), start.isoformat(), end.isoformat(), reason=reason)
        if line.get("autologous_transplant"):
            asct = b.procedure(
                "Autologous hematopoietic stem cell transplant", (start + timedelta(days=10)).isoformat(), snomed="234336002"
            )
            b.administration(
                Builder.drug("melphalan"), (start + timedelta(days=8)).isoformat(), part_of=f"Procedure/{asct['id']}"
            )
        if progression is not None:
            b.disease_status(progression.isoformat(), "worsened")
        elif "refractory_to" in line:
            b.disease_status((start + timedelta(days=20)).isoformat(), "improved")
    return b.bundle(timestamp=profile["evaluation_date"] + "T08:00:00Z")
