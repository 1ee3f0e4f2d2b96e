"""A validated Bundle -> a v2 patient profile, with the resource(s) behind every fact.

`import_bundle(data, vocabulary, evaluation_date=None, overrides=None)` returns an
`ImportResult`: the profile (a dict in the profile contract's field names, unknown facts
left out), one `Fact` per profile field (imported / derived / overridden / unknown, with
source resources and how), the derived lines with the rule that opened each, and every
resource that was not used with the reason. The README's "Patients from FHIR" section is
the mapping table; `lines.py` holds the line-splitting algorithm.
"""

from __future__ import annotations

import dataclasses
import re
from dataclasses import dataclass
from datetime import UTC, date, datetime
from typing import Any

from cds.errors import BundleError, InputError, NoMyelomaDiagnosis, printable, quoted
from cds.model.vocabulary import Drug, Vocabulary

from . import codes
from .bundle import Bundle, Entry, read_bundle
from .dates import Day, age_on, parse_day
from .lines import RULES, Apheresis, Assessment, Exposure, Line, Transplant, derive_outcomes, split_lines
from .units import convert

# facts EHRs rarely hold: never imported, given with --with (overrides)
NOT_IN_FHIR = {
    "frailty": "no FHIR datum the importer reads (a geriatric assessment is not standardised)",
    "rapidly_progressive": "a clinical judgement, not recorded in FHIR",
    "car_t_center_access": "about the care pathway, not the patient's record",
    "organ_function_adequate": "a clinical judgement over several results",
    "active_serious_infection": "not read from FHIR (an infection Condition does not say 'serious' or 'active now')",
    "prior_serious_infections": "a clinical summary of the course (grade and admission of past infections), not one FHIR datum",
    "cns_involvement": "no verified code for CNS myeloma",
    "notes": "free text for the clinician",
}
TOP_FIELDS = (
    "patient_id",
    "age",
    "sex",
    "evaluation_date",
    "ecog",
    "frailty",
    "creatinine_clearance_ml_min",
    "dialysis",
    "extramedullary_disease",
    "plasma_cell_leukemia",
    "cns_involvement",
    "cytogenetics",
    "cytogenetics_tested",
    "r_iss",
    "rapidly_progressive",
    "car_t_center_access",
    "organ_function_adequate",
    "active_serious_infection",
    "prior_serious_infections",
    "prior_allogeneic_transplant",
    "notes",
)
LAB_FIELDS = ("soluble_bcma_ng_ml", "ferritin_ng_ml", "crp_mg_l", "ldh_u_l", "neutrophils_10e9_l", "platelets_10e9_l", "igg_g_l")
RESPONSES = {
    "scr": "sCR",
    "stringent complete response": "sCR",
    "cr": "CR",
    "complete response": "CR",
    "vgpr": "VGPR",
    "very good partial response": "VGPR",
    "pr": "PR",
    "partial response": "PR",
    "mr": "MR",
    "minimal response": "MR",
    "minor response": "MR",
    "sd": "SD",
    "stable disease": "SD",
    "pd": "PD",
    "progressive disease": "PD",
}
STOP_CATEGORY = {
    codes.STOP_NO_RESPONSE: "no_response",
    codes.STOP_NOT_TOLERATED: "not_tolerated",
    codes.STOP_COMPLETED: "completed",
    codes.STOP_PATIENT_REFUSAL: "patient_choice",
    **{c: "other" for c in codes.STOP_OTHER},
}
MED_TYPES = ("MedicationAdministration", "MedicationRequest", "MedicationStatement")


@dataclass
class Fact:
    field: str
    value: Any
    status: str  # "imported" | "derived" | "overridden" | "unknown"
    sources: list[str] = dataclasses.field(default_factory=list)
    how: str = ""

    def as_dict(self) -> dict[str, Any]:
        return {"field": self.field, "value": self.value, "status": self.status, "sources": self.sources, "how": self.how}


@dataclass
class ImportResult:
    profile: dict[str, Any]
    facts: list[Fact]
    lines: list[dict[str, Any]]
    not_used: list[dict[str, Any]]
    bundle: dict[str, Any]
    evaluation_date: str
    warnings: list[str]
    referenced: list[str] = dataclasses.field(default_factory=list)  # Medication resources the medication resources refer to

    def as_dict(self) -> dict[str, Any]:
        return {
            "format": "cds-fhir-import/1",
            "bundle": self.bundle,
            "evaluation_date": self.evaluation_date,
            "facts": [f.as_dict() for f in self.facts],
            "lines": self.lines,
            "not_used": self.not_used,
            "referenced": self.referenced,
            "warnings": self.warnings,
        }

    def used_refs(self) -> set[str]:
        refs = {r for f in self.facts for r in f.sources} | set(self.referenced)
        for ln in self.lines:
            refs.update(ln["sources"])
        return refs

    def text(self) -> str:
        """The import report as plain text (what `cds import-fhir` prints on stderr)."""
        b = self.bundle
        out = [
            f"FHIR import: Bundle {b.get('id') or '(no id)'} ({b['type']}, {b['entries']} entries), evaluation date {self.evaluation_date}"
        ]
        out.append("facts:")
        for f in self.facts:
            if f.field == "prior_lines":
                continue
            value = "unknown" if f.status == "unknown" else _short(f.value)
            src = f" [{', '.join(f.sources)}]" if f.sources else ""
            out.append(f"  {f.field}: {value} ({f.status}{'; ' + f.how if f.how else ''}){src}")
        out.append(f"lines of therapy: {len(self.lines)}")
        for ln in self.lines:
            end = ln.get("end_date") or "ongoing"
            out.append(f"  line {ln['line']}: {ln.get('start_date')} to {end}: {', '.join(ln['agents'])}")
            out.append(
                f"    opened by {ln['opened_by']['rule']}: {ln['opened_by']['text']}"
                + (f" ({ln['opened_by']['detail']})" if ln["opened_by"]["detail"] else "")
            )
            for a in ln["members"]:
                out.append(
                    f"    {a['drug']} {a['start']}{'..' + a['end'] if a['end'] != a['start'] else ''}: {a['rule']} [{a['source']}]"
                )
            for key in (
                "autologous_transplant",
                "transplant_date",
                "infusion_date",
                "refractory_to",
                "intolerant_to",
                "best_response",
                "progression_date",
                "stop_reason",
            ):
                if key in ln["derived"]:
                    d = ln["derived"][key]
                    out.append(f"    {key}: {_short(d['value'])} ({d['how']}) [{', '.join(d['sources'])}]")
        if self.not_used:
            out.append(f"not used: {len(self.not_used)} resource(s)")
            out += [f"  {n['entry']}: {n['reason']}" for n in self.not_used]
        for w in self.warnings:
            out.append(f"warning: {w}")
        return "\n".join(out) + "\n"


def _short(value: Any) -> str:
    if isinstance(value, list):
        return "[" + ", ".join(map(str, value)) + "]"
    return str(value)


# --- small readers over the R4B models ------------------------------------------------------------


def _codings(cc: Any) -> list[Any]:
    return list(getattr(cc, "coding", None) or []) if cc is not None else []


def _has_code(cc: Any, system: str, code: str) -> bool:
    return any(c.system == system and c.code == code for c in _codings(cc))


def _texts(cc: Any) -> list[str]:
    if cc is None:
        return []
    out = [c.display for c in _codings(cc) if c.display]
    if getattr(cc, "text", None):
        out.append(cc.text)
    return out


def _observation_day(model: Any) -> Day | None:
    day = parse_day(getattr(model, "effectiveDateTime", None))
    if day is None and getattr(model, "effectivePeriod", None) is not None:
        day = parse_day(model.effectivePeriod.start) or parse_day(model.effectivePeriod.end)
    if day is None:
        day = parse_day(getattr(model, "effectiveInstant", None)) or parse_day(getattr(model, "issued", None))
    return day


def _ref_text(bundle: Bundle, reference: Any) -> str | None:
    target = getattr(reference, "reference", None)
    if not target:
        return None
    entry = bundle.entry_for(target)
    return entry.ref if entry is not None else target


_DOSE_WORDS = re.compile(
    r"[\d/]|^(mg|mcg|ug|g|ml|iv|sc|po|oral|subcutaneous|intravenous|tablet|tablets|capsule|capsules|injection|infusion|vial|solution|pen)$",
    re.I,
)


def _name_lookup(text: str, find: Any) -> Any:
    """Match a drug name as profiles do, also with a dose/route/form, a bracketed synonym or a US suffix after it.

    "Revlimid 25 mg capsule", "Kyprolis (carfilzomib) 60 mg vial", "teclistamab-cqyv": the longest
    leading run of words that names a drug, provided every word after it is a dose, route or form
    (a number, a unit, "mg", "IV", "tablet", ...) or names the same drug.
    """
    hit = find(text)
    if hit is not None:
        return hit
    words = [w for w in re.split(r"[\s,()\[\]]+", text.strip()) if w]
    for n in range(len(words) - 1, 0, -1):
        hit = find(" ".join(words[:n]))
        if hit is not None and all(_DOSE_WORDS.search(w) or find(w) == hit for w in words[n:]):
            return hit
    m = re.match(r"^([A-Za-z]+(?: [A-Za-z]+)?)-[a-z]{4}\b", text.strip())  # US biologic suffix: teclistamab-cqyv
    return find(m.group(1)) if m else None


# --- the importer ----------------------------------------------------------------------------------


class _Import:
    def __init__(self, bundle: Bundle, vocabulary: Vocabulary, evaluation_date: date, eval_how: str):
        self.b = bundle
        self.v = vocabulary
        self.on = evaluation_date
        self.eval_how = eval_how
        self.facts: dict[str, Fact] = {}
        self.not_used: dict[str, str] = {}
        self.warnings: list[str] = []
        self.problems: list[str] = []
        self.labs: dict[str, Fact] = {}
        self.egfr: list[Entry] = []
        self.drug_how: dict[str, str] = {}
        self.assessment_how: dict[str, str] = {}
        self.karnofsky: Entry | None = None
        self.medication_used: set[str] = set()
        self.dialysis_procedures: list[tuple[Entry, Day]] = []
        self.dialysis_conditions: list[Entry] = []
        self.diagnosis_refs: list[str] = []

    def skip(self, entry: Entry, reason: str) -> None:
        self.not_used.setdefault(entry.ref, reason)

    def put(self, name: str, value: Any, sources: list[str], how: str, status: str = "imported") -> None:
        self.facts[name] = Fact(name, value, status, sources, how)

    # patient and diagnosis
    def patient(self) -> None:
        p = self.b.patient
        m = p.model
        ident = next((i.value for i in (m.identifier or []) if i.value), None)
        pid = ident or p.id or p.full_url
        if not pid:
            self.problems.append(f"{p.label}: neither an identifier nor an id: the profile needs a patient_id")
        else:
            self.put("patient_id", pid, [p.ref], "Patient.identifier[0].value" if ident else "Patient.id")
        birth = m.birthDate
        if birth is None:
            self.facts["age"] = Fact("age", None, "unknown", [p.ref], "Patient.birthDate is missing")
        else:
            day = parse_day(birth)
            assert day is not None
            if day.precision != "day":
                self.warnings.append(f"{p.label}: birthDate {day.iso()} is partial; age uses its earliest day")
            self.put("age", age_on(day.earliest, self.on), [p.ref], f"birthDate {day.iso()} -> age on {self.on.isoformat()}")
        if m.gender in ("female", "male", "other"):
            self.put("sex", m.gender, [p.ref], "Patient.gender")
        self.put("evaluation_date", self.on.isoformat(), [], self.eval_how, "derived")

    def conditions(self) -> None:
        mm, pcl, emd, dialysis = [], [], [], []
        for e in self._of("Condition"):
            m = e.model
            ver = _codings(m.verificationStatus)
            if any(c.code in codes.CONDITION_VERIFICATION_VOID for c in ver):
                self.skip(e, f"verificationStatus {ver[0].code}: not a diagnosis")
                continue
            icd = [c.code or "" for c in _codings(m.code) if c.system == codes.ICD10CM]
            if any(c.startswith(codes.ICD10_MYELOMA_PREFIX) for c in icd) or _has_code(
                m.code, codes.SNOMED, codes.SNOMED_MYELOMA
            ):
                mm.append(e)
            if any(c.startswith(codes.ICD10_PCL_PREFIX) for c in icd):
                pcl.append(e)
            if any(c.startswith(codes.ICD10_EXTRAMEDULLARY_PREFIX) for c in icd):
                emd.append(e)
            if codes.ICD10_DIALYSIS_DEPENDENCE in icd:
                active = not any(c.code in ("inactive", "resolved", "remission") for c in _codings(m.clinicalStatus))
                if active:
                    dialysis.append(e)
                else:
                    self.skip(e, "dependence on renal dialysis (Z99.2) with clinicalStatus inactive/resolved")
            if e not in mm + pcl + emd + dialysis and e.ref not in self.not_used:
                self.skip(
                    e,
                    "Condition code is not one the importer reads (multiple myeloma, plasma cell leukaemia, plasmacytoma, Z99.2)",
                )
        if not mm:
            raise NoMyelomaDiagnosis(
                ["no multiple myeloma diagnosis in the bundle (a Condition with ICD-10-CM C90.0x or SNOMED 109989006)"]
            )
        self.diagnosis_refs = [e.ref for e in mm]
        if pcl:
            self.put("plasma_cell_leukemia", True, [e.ref for e in pcl], "Condition ICD-10-CM C90.1x (plasma cell leukaemia)")
        if emd:
            self.put(
                "extramedullary_disease", True, [e.ref for e in emd], "Condition ICD-10-CM C90.2x (extramedullary plasmacytoma)"
            )
        self.dialysis_conditions = dialysis

    # medications
    def drug_of(self, entry: Entry) -> tuple[Drug | None, Any, str, str]:
        """(drug, supportive (name, category) or None, how, the name seen)."""
        m = entry.model
        concepts = []
        if getattr(m, "medicationCodeableConcept", None) is not None:
            concepts.append(m.medicationCodeableConcept)
        ref = getattr(m, "medicationReference", None)
        if ref is not None:
            med = self.b.resolve(ref.reference, entry)
            if med is None:
                return None, None, "", f"medicationReference {ref.reference} (not in the bundle)"
            if med.code is not None:
                concepts.append(med.code)
            for ing in med.ingredient or []:
                if getattr(ing, "itemCodeableConcept", None) is not None:
                    concepts.append(ing.itemCodeableConcept)
            target = self.b.entry_for(ref.reference)
            if target is not None:
                self.medication_used.add(target.ref)
        seen = ""
        for cc in concepts:
            for c in _codings(cc):
                if c.system == codes.RXNORM and c.code:
                    drug = self.v.by_rxnorm(c.code)
                    if drug is not None:
                        return drug, None, f"RxNorm {c.code}", c.display or c.code
                    seen = seen or f"RxNorm {c.code}" + (f" {quoted(c.display)}" if c.display else "")
            for text in _texts(cc):
                drug = _name_lookup(text, self.v.lookup)
                if drug is not None:
                    return drug, None, f"name {quoted(text)}", text
                sup = _name_lookup(text, self.v.supportive)
                if sup is not None:
                    return None, sup, f"name {quoted(text)}", text
                seen = seen or repr(text)
        return None, None, "", seen or "(no code or text)"

    def medications(self) -> list[Exposure]:
        out = []
        for e in [x for x in self.b.entries if x.resource_type in MED_TYPES]:
            m = e.model
            if m.status in codes.NOT_HAPPENED[e.resource_type]:
                self.skip(e, f"status {m.status}: not given")
                continue
            if e.resource_type == "MedicationRequest" and m.intent in codes.MEDICATION_REQUEST_INTENTS_NOT_GIVEN:
                self.skip(e, f"intent {m.intent}: a suggestion, not a treatment decision")
                continue
            drug, sup, how, seen = self.drug_of(e)
            if sup is not None:
                self.skip(e, f"supportive drug ({sup[1]}: {sup[0]}), not part of a line")
                continue
            if drug is None:
                sugg = (
                    self.v.suggestions(seen.strip("'"))
                    if seen and not seen.startswith(("RxNorm", "(", "medicationReference"))
                    else []
                )
                hint = f"; did you mean {', '.join(sugg)}?" if sugg else ""
                self.skip(e, f"unknown drug {seen} (not in rules/catalog/drugs.yaml){hint}: not used")
                continue
            start, end = self._med_period(e)
            if start is None:
                self.skip(e, f"{drug.name}: no date (effective[x], boundsPeriod or authoredOn): cannot be placed in a line")
                continue
            out.append(
                Exposure(
                    ref=e.ref,
                    drug=drug.name,
                    drug_class=drug.drug_class,
                    start=start,
                    end=end or start,
                    line_number=self._line_number(e),
                    stop=self._stop(e),
                    ongoing=m.status in codes.ONGOING.get(e.resource_type, ()) and end is None,
                    part_of=tuple(r for r in (_ref_text(self.b, p) for p in (getattr(m, "partOf", None) or [])) if r),
                )
            )
            self.drug_how[e.ref] = how
        return out

    def _med_period(self, e: Entry) -> tuple[Day | None, Day | None]:
        m = e.model
        if e.resource_type == "MedicationRequest":
            starts: list[Day] = []
            ends: list[Day] = []
            for d in m.dosageInstruction or []:
                bp = d.timing.repeat.boundsPeriod if d.timing and d.timing.repeat else None
                if bp is not None:
                    if (first := parse_day(bp.start)) is not None:
                        starts.append(first)
                    if (last := parse_day(bp.end)) is not None:
                        ends.append(last)
            if starts:
                return min(starts), (max(ends, key=lambda d: d.latest) if ends else None)
            day = parse_day(m.authoredOn)
            return day, (day if m.status != "active" else None)
        if getattr(m, "effectiveDateTime", None) is not None:
            day = parse_day(m.effectiveDateTime)
            return day, day
        period = getattr(m, "effectivePeriod", None)
        if period is not None:
            return parse_day(period.start) or parse_day(period.end), parse_day(period.end)
        return None, None

    def _line_number(self, e: Entry) -> int | None:
        for ext in e.model.extension or []:
            if ext.url in codes.LINE_NUMBER_EXTENSIONS:
                value = ext.valuePositiveInt if ext.valuePositiveInt is not None else ext.valueInteger
                if isinstance(value, int) and value >= 1:
                    return value
                self.problems.append(f"{e.label}: extension {ext.url}: expected a positive integer line number")
        return None

    def _stop(self, e: Entry) -> str | None:
        reasons = e.model.statusReason
        if reasons is None:
            return None
        for cc in reasons if isinstance(reasons, list) else [reasons]:
            for c in _codings(cc):
                if c.system == codes.SNOMED and c.code in STOP_CATEGORY:
                    return STOP_CATEGORY[c.code]
        return None

    # procedures
    def procedures(self) -> tuple[list[Transplant], list[Apheresis]]:
        transplants, apheresis = [], []
        for e in self._of("Procedure"):
            m = e.model
            if m.status in codes.NOT_HAPPENED["Procedure"]:
                self.skip(e, f"status {m.status}: not performed")
                continue
            day = parse_day(m.performedDateTime)
            if day is None and m.performedPeriod is not None:
                day = parse_day(m.performedPeriod.start)
            text = " ".join(_texts(m.code)).lower()
            if day is None:
                self.skip(e, "no performed date: cannot be placed")
                continue
            if (
                _has_code(m.code, codes.SNOMED, codes.SNOMED_HSCT)
                or "stem cell transplant" in text
                or "bone marrow transplant" in text
            ):
                donor = any(ext.url.endswith("/pedcan-donor") for ext in (m.extension or []))
                allo = donor or "allogen" in text or re.search(r"\ballo\b|\ballo-", text) is not None
                transplants.append(Transplant(e.ref, day, allo))
            elif _has_code(m.code, codes.SNOMED, codes.SNOMED_DIALYSIS) or "dialysis" in text:
                self.dialysis_procedures.append((e, day))
            elif "apheresis" in text and "stem cell" not in text:
                apheresis.append(Apheresis(e.ref, day))
            else:
                self.skip(e, "Procedure code is not one the importer reads (stem-cell transplant, dialysis, apheresis)")
        return transplants, apheresis

    # observations
    def observations(self) -> list[Assessment]:
        latest: dict[str, tuple[Day, Entry, Any, str]] = {}
        assessments: list[Assessment] = []
        cyto_tested: list[Entry] = []
        cyto_found: dict[str, list[str]] = {}
        cyto_probes: set[str] = set()  # the probes of single-probe results
        whole_panel = False  # a panel or karyotype result: every abnormality tested

        def offer(key: str, day: Day, e: Entry, value: Any, how: str) -> None:
            old = latest.get(key)
            if old is None or (day.latest, e.index) > (old[0].latest, old[1].index):
                if old is not None:
                    self.skip(old[1], f"{key}: superseded by the later {e.ref} ({day.iso()})")
                latest[key] = (day, e, value, how)
            else:
                self.skip(e, f"{key}: superseded by the later {old[1].ref} ({old[0].iso()})")

        for e in self._of("Observation"):
            m = e.model
            if m.status in codes.NOT_HAPPENED["Observation"]:
                self.skip(e, f"status {m.status}: no result")
                continue
            day = _observation_day(m)
            loinc = [c.code for c in _codings(m.code) if c.system == codes.LOINC]
            label = " ".join(_texts(m.code))
            if day is None:
                self.skip(e, "no effective date: cannot tell which result is the latest")
                continue
            if codes.LOINC_ECOG in loinc:
                score = self._ecog(e)
                if score is not None:
                    offer("ecog", day, e, score[0], score[1])
            elif codes.LOINC_KARNOFSKY in loinc:
                self.skip(
                    e,
                    f"Karnofsky performance status {m.valueInteger}: not converted to ECOG (no conversion is documented as exact)",
                )
                self.karnofsky = e
            elif codes.LOINC_CRCL_MEASURED in loinc or codes.LOINC_CRCL_COCKCROFT_GAULT in loinc:
                kind = "measured (LOINC 2164-2)" if codes.LOINC_CRCL_MEASURED in loinc else "Cockcroft-Gault (LOINC 35591-7)"
                q = self._quantity(e, "creatinine_clearance_ml_min")
                if q is not None:
                    offer("creatinine_clearance_ml_min", day, e, q[0], f"{kind}: {q[1]}")
            elif any(c in codes.LOINC_EGFR for c in loinc):
                name = next(codes.LOINC_EGFR[c] for c in loinc if c in codes.LOINC_EGFR)
                vq = m.valueQuantity
                shown = f"{vq.value} {vq.unit or vq.code or ''}".strip() if vq is not None else "no value"
                self.egfr.append(e)
                self.skip(e, f"{name} {shown}: mL/min/1.73 m2, not a creatinine clearance; not used (CrCl stays unknown)")
            elif any(c in codes.LAB_CODES for c in loinc):
                lab = next(codes.LAB_CODES[c][0] for c in loinc if c in codes.LAB_CODES)
                q = self._quantity(e, lab)
                if q is not None:
                    offer(f"labs.{lab}", day, e, q[0], q[1])
            elif _has_code(m.code, *codes.SBCMA_LOCAL) or re.search(r"soluble\s*bcma|\bsbcma\b", label, re.I):
                q = self._quantity(e, "soluble_bcma_ng_ml")
                if q is not None:
                    offer("labs.soluble_bcma_ng_ml", day, e, q[0], q[1])
            elif codes.LOINC_DISEASE_STATUS in loinc:
                value = [
                    c.code
                    for c in _codings(m.valueCodeableConcept)
                    if c.system == codes.SNOMED and c.code in codes.DISEASE_STATUS_VALUES
                ]
                if not value:
                    self.skip(e, "disease status without a value from ConditionStatusTrendVS")
                    continue
                assessments.append(Assessment(e.ref, day, worsened=value[0] == codes.SNOMED_WORSENED))
                self.assessment_how[e.ref] = f"disease status {codes.DISEASE_STATUS_VALUES[value[0]]} ({day.iso()})"
            elif any(c.code == codes.NCIT_RISS and (c.system or "").startswith(codes.NCIT_PREFIX) for c in _codings(m.code)):
                stage = [
                    codes.NCIT_RISS_VALUES[c.code] for c in _codings(m.valueCodeableConcept) if c.code in codes.NCIT_RISS_VALUES
                ]
                if stage:
                    offer("r_iss", day, e, stage[0], f"R-ISS stage (NCIT {codes.NCIT_RISS})")
                else:
                    self.skip(e, "R-ISS stage without a value from MyelomaRISSValueVS")
            elif re.search(r"\bresponse\b", label, re.I):
                cat = self._response(m)
                if cat is None:
                    self.skip(e, f"response assessment {quoted(label)} without an IMWG category (sCR, CR, VGPR, PR, MR, SD, PD)")
                    continue
                assessments.append(Assessment(e.ref, day, worsened=False, response=cat))
                self.assessment_how[e.ref] = f"IMWG response {cat} ({day.iso()})"
            else:
                found, tested, probes = self._cytogenetics(e)
                if tested:
                    cyto_tested.append(e)
                    for abn in found:
                        cyto_found.setdefault(abn, []).append(e.ref)
                    if probes is None:
                        whole_panel = True
                    else:
                        cyto_probes.update(probes)
                else:
                    self.skip(
                        e,
                        f"Observation {quoted(label or '(no code text)')} ({', '.join(loinc) or 'no LOINC'}) is not one the importer reads",
                    )
        for key, (day, e, value, how) in latest.items():
            if key.startswith("labs."):
                self.labs[key[5:]] = Fact(key, value, "imported", [e.ref], f"{how}, {day.iso()} (the latest)")
            else:
                self.put(key, value, [e.ref], f"{how}, {day.iso()} (the latest)")
        if cyto_tested:
            found = sorted(cyto_found)
            refs = [e.ref for e in cyto_tested]
            how = (
                "abnormalities named in FISH/cytogenetic results"
                if found
                else "FISH/cytogenetic results, none detected: tested, none found"
            )
            self.put("cytogenetics", found, refs, how)
            if not whole_panel:  # single-probe results only: what was not probed stays unknown (review R12-09)
                probes = sorted(cyto_probes | set(found))
                self.put("cytogenetics_tested", probes, refs, "single-probe FISH results: a partial panel of these probes")
        return assessments

    def _ecog(self, e: Entry) -> tuple[int, str] | None:
        m, raw = e.model, e.raw
        if "valueInteger" in raw:
            if type(raw["valueInteger"]) is not int or not 0 <= raw["valueInteger"] <= 4:
                self.problems.append(f"{e.label}: valueInteger: {printable(repr(raw['valueInteger']))} is not an ECOG score 0-4")
                return None
            return raw["valueInteger"], "ECOG (LOINC 89247-1) valueInteger"
        for cc in [m.valueCodeableConcept, *(m.interpretation or [])]:
            for c in _codings(cc):
                if c.system == codes.LOINC and c.code in codes.ECOG_ANSWERS:
                    return codes.ECOG_ANSWERS[c.code], f"ECOG (LOINC 89247-1) answer {c.code}"
        self.skip(e, "ECOG without a score (valueInteger or an LL529-9 answer code for 0-4)")
        return None

    def _quantity(self, e: Entry, name: str) -> tuple[float, str] | None:
        q = e.model.valueQuantity
        raw = e.raw.get("valueQuantity", {})
        if q is None or q.value is None:
            self.skip(e, f"{name}: no valueQuantity")
            return None
        if isinstance(raw.get("value"), bool) or not isinstance(raw.get("value"), (int, float)):
            self.problems.append(f"{e.label}: valueQuantity.value: expected a number, got {type(raw.get('value')).__name__}")
            return None
        if q.comparator:
            self.skip(e, f"{name}: value {q.comparator}{q.value} is a bound, not a result")
            return None
        unit = q.code if q.system == codes.UCUM and q.code else (q.unit or q.code)
        value, how = convert(name, float(q.value), unit)
        if value is None:
            self.skip(e, f"{name}: {how}; not used")
            self.warnings.append(f"{e.label}: {name}: {how}")
            return None
        return value, how

    def _response(self, m: Any) -> str | None:
        for text in _texts(m.valueCodeableConcept) + ([m.valueString] if m.valueString else []):
            cat = RESPONSES.get(text.strip().lower())
            if cat:
                return cat
        for c in _codings(m.valueCodeableConcept):
            if c.code and c.code.strip().lower() in RESPONSES:
                return RESPONSES[c.code.strip().lower()]
        return None

    def _cytogenetics(self, e: Entry) -> tuple[list[str], bool, list[str] | None]:
        """(abnormalities detected, whether this is a cytogenetic/FISH result at all, the probes it speaks
        for: those it names for a single-probe result, None for a panel or karyotype, i.e. all of them)."""
        m = e.model
        code_text = " ".join(_texts(m.code))
        loinc = [c.code for c in _codings(m.code) if c.system == codes.LOINC]
        iscn = [
            comp.valueString or " ".join(_texts(comp.valueCodeableConcept))
            for comp in (m.component or [])
            if _has_code(comp.code, codes.LOINC, codes.LOINC_ISCN)
        ]
        value_text = " ".join(_texts(m.valueCodeableConcept) + ([m.valueString] if m.valueString else []))
        value_codes = {c.code for c in _codings(m.valueCodeableConcept) if c.system == codes.SNOMED}
        if codes.LOINC_GENOMIC_VARIANT in loinc:
            found = find_abnormalities(" ".join(iscn) + " " + value_text + " " + code_text)
            negative = bool(value_codes & codes.RESULT_NOT_DETECTED) or _negative(value_text)
            return ([] if negative else found), True, None
        named = find_abnormalities(code_text)
        fish = re.search(r"\bfish\b|cytogenetic|karyotype|\biscn\b", code_text, re.I) is not None
        if named:  # one probe: "del(17p) by FISH" = Detected / Not detected
            negative = bool(value_codes & codes.RESULT_NOT_DETECTED) or _negative(value_text)
            positive = bool(value_codes & codes.RESULT_DETECTED) or re.search(
                r"\b(detected|positive|present)\b", value_text, re.I
            )
            if negative:
                return [], True, named
            if positive:
                return named, True, named
            self.warnings.append(f"{e.label}: {quoted(code_text)} without a Detected/Not detected value: not used")
            return [], False, None
        if fish:  # a panel: its value names what was found, or says nothing was
            found = find_abnormalities(value_text + " " + " ".join(iscn))
            if found or _negative(value_text) or value_codes & codes.RESULT_NOT_DETECTED:
                return found, True, None
        return [], False, None

    def _of(self, rtype: str) -> list[Entry]:
        return [e for e in self.b.entries if e.resource_type == rtype]


def _negative(text: str) -> bool:
    return re.search(r"not detected|no abnormalit|negative|\bnormal\b|\babsent\b|none detected", text, re.I) is not None


_CYTO = [
    ("t(11;14)", r"t\s*\(\s*11\s*[;,]\s*14\s*\)"),
    ("t(4;14)", r"t\s*\(\s*4\s*[;,]\s*14\s*\)"),
    ("t(14;16)", r"t\s*\(\s*14\s*[;,]\s*16\s*\)"),
    ("t(14;20)", r"t\s*\(\s*14\s*[;,]\s*20\s*\)"),
    ("del(17p)", r"del\s*\(?\s*17\s*\)?\s*\(?\s*p|17p\s*(-|del|deletion|loss)|loss of 17p"),
    ("amp(1q)", r"amp\s*\(?\s*1\s*q|1q(21)?\s*amp"),
    ("gain(1q)", r"gain\s*\(?\s*1\s*q|gain of 1q|\+\s*1q|1q(21)?\s*(\+|gain)"),
    ("del(1p)", r"del\s*\(?\s*1\s*\)?\s*\(?\s*p|1p\s*(-|del|deletion|loss)"),
    ("del(13q)", r"del\s*\(?\s*13\s*\)?\s*\(?\s*q|13q\s*(-|del|deletion)|monosomy\s*13"),
]


def find_abnormalities(text: str) -> list[str]:
    """Myeloma cytogenetic abnormalities named in free text (FISH results often come as local codes or text)."""
    found = [name for name, pattern in _CYTO if re.search(pattern, text, re.I)]
    if "amp(1q)" in found and "gain(1q)" in found and not re.search(r"gain", text, re.I):
        found.remove("gain(1q)")
    return found


def _evaluation_date(bundle: Bundle, given: str | None, default: str | None = None) -> tuple[date, str]:
    if given:
        try:
            return date.fromisoformat(given), "--evaluation-date"
        except ValueError:
            raise InputError(f"--evaluation-date: {quoted(given)} is not a date (YYYY-MM-DD)") from None
    if bundle.timestamp is not None:
        day = parse_day(bundle.timestamp)
        assert day is not None
        return day.earliest, "Bundle.timestamp (the export date)"
    if default is not None:
        return date.fromisoformat(default), "the evaluation time (no --evaluation-date and no Bundle.timestamp)"
    return datetime.now(UTC).date(), "today (no --evaluation-date and no Bundle.timestamp)"


def _regimen_label(agents: list[str], vocabulary: Vocabulary) -> str | None:
    wanted = sorted(agents)
    for label, members in vocabulary.regimen_items():
        if sorted(members) == wanted:
            return label
    return None


def import_bundle(
    data: Any, vocabulary: Vocabulary, evaluation_date: str | None = None, default_date: str | None = None
) -> ImportResult:
    """Map a decoded Bundle to a profile with provenance. Raises BundleError / InputError (exit 2).

    The profile's evaluation date: `evaluation_date` (``--evaluation-date``), else the Bundle's
    timestamp, else `default_date` (the evaluation time's date), else today.
    """
    bundle = read_bundle(data)
    on, how = _evaluation_date(bundle, evaluation_date, default_date)
    imp = _Import(bundle, vocabulary, on, how)
    imp.patient()
    imp.conditions()
    exposures = imp.medications()
    transplants, apheresis = imp.procedures()
    assessments = imp.observations()
    if imp.problems:
        raise BundleError(imp.problems)
    future = [x.ref for x in exposures if x.first > on]
    if future:
        imp.warnings.append(
            f"{len(future)} medication(s) dated after the evaluation date {on.isoformat()} ({', '.join(future[:3])}...)"
        )
    lines, unplaced = split_lines(exposures, transplants, apheresis, assessments)
    derive_outcomes(lines, assessments)
    for x, why in unplaced:
        imp.not_used[x.ref] = f"{x.drug}: {why}"
    _kidney(imp)
    line_dicts, profile_lines = _lines_out(imp, lines, transplants)
    allo = [t for t in transplants if t.allogeneic]
    if allo:
        imp.put("prior_allogeneic_transplant", True, [t.ref for t in allo], "allogeneic stem-cell transplant Procedure")
    for t in allo:
        imp.not_used.pop(t.ref, None)
    for a in apheresis:
        if not any(a.ref in ln["sources"] for ln in line_dicts):
            imp.not_used[a.ref] = "apheresis not followed by a CAR-T infusion within 180 days: not used"
    profile: dict[str, Any] = {}
    facts: list[Fact] = [
        Fact(
            "diagnosis",
            "multiple myeloma",
            "imported",
            imp.diagnosis_refs,
            "Condition ICD-10-CM C90.0x or SNOMED 109989006 (required)",
        )
    ]
    for name in TOP_FIELDS:
        f = imp.facts.get(name)
        if f is None and name == "cytogenetics_tested":
            continue  # given only for a partial panel (single-probe results); absent: cytogenetics is the whole panel
        if f is None:
            why = NOT_IN_FHIR.get(name) or _unknown_why(imp, name)
            f = Fact(name, None, "unknown", [], why)
        elif f.value is not None:
            profile[name] = f.value
        facts.append(f)
    labs = {}
    for lab in LAB_FIELDS:
        f = imp.labs.get(lab)
        if f is None:
            facts.append(Fact(f"labs.{lab}", None, "unknown", [], "no result in the bundle"))
        else:
            labs[lab] = f.value
            facts.append(f)
    if labs:
        profile["labs"] = labs
    profile["prior_lines"] = profile_lines
    facts.append(
        Fact(
            "prior_lines",
            f"{len(profile_lines)} line(s)",
            "derived",
            [r for ln in line_dicts for r in ln["sources"]],
            "see lines",
        )
    )
    used = {r for f in facts for r in f.sources} | {r for ln in line_dicts for r in ln["sources"]} | imp.medication_used
    not_used = []
    for e in bundle.entries:
        if e.ref in used and e.ref not in imp.not_used:
            continue
        reason = imp.not_used.get(e.ref)
        if reason is None:
            reason = (
                "a Medication resource no medication resource refers to"
                if e.resource_type == "Medication"
                else f"resource type {e.resource_type} is not read by the importer"
            )
        not_used.append({"entry": e.label, "resource": e.ref, "reason": reason})
    if "ecog" not in profile and imp.karnofsky is not None:
        imp.warnings.append(
            f"no ECOG in the bundle; {imp.karnofsky.label} has a Karnofsky score (not converted): give ECOG with --with"
        )
    return ImportResult(
        profile=profile,
        facts=facts,
        lines=line_dicts,
        not_used=not_used,
        bundle={"id": bundle.id, "type": bundle.type, "entries": len(bundle.entries), "patient": bundle.patient.ref},
        evaluation_date=on.isoformat(),
        warnings=imp.warnings,
        referenced=sorted(imp.medication_used),
    )


def _unknown_why(imp: _Import, name: str) -> str:
    return {
        "ecog": "no ECOG Observation (LOINC 89247-1)",
        "creatinine_clearance_ml_min": (
            "no creatinine clearance (LOINC 2164-2 or 35591-7)"
            + (f"; eGFR only ({', '.join(e.ref for e in imp.egfr)}), which is not a creatinine clearance" if imp.egfr else "")
        ),
        "dialysis": "no dialysis Procedure in the last 90 days and no Z99.2 Condition (absence is not 'no dialysis')",
        "extramedullary_disease": "no C90.2x Condition (absence in the problem list is not 'no EMD')",
        "plasma_cell_leukemia": "no C90.1x Condition (absence is not 'no PCL')",
        "cytogenetics": "no FISH or cytogenetic result",
        "r_iss": "no R-ISS stage Observation (NCIT C141392)",
        "prior_allogeneic_transplant": "no allogeneic transplant Procedure (absence is not 'none')",
        "sex": "Patient.gender missing or 'unknown'",
        "age": "Patient.birthDate missing",
    }.get(name, "not in the bundle")


def _kidney(imp: _Import) -> None:
    recent = [(e, d) for e, d in imp.dialysis_procedures if 0 <= (imp.on - d.latest).days <= codes.DIALYSIS_LOOKBACK_DAYS]
    for e, d in imp.dialysis_procedures:
        if (e, d) not in recent:
            imp.skip(e, f"dialysis on {d.iso()}: not within the {codes.DIALYSIS_LOOKBACK_DAYS} days before the evaluation date")
    if recent or imp.dialysis_conditions:
        refs = [e.ref for e, _ in recent] + [e.ref for e in imp.dialysis_conditions]
        how = []
        if recent:
            how.append(f"dialysis Procedure within {codes.DIALYSIS_LOOKBACK_DAYS} days (last {max(d for _, d in recent).iso()})")
        if imp.dialysis_conditions:
            how.append("Condition Z99.2 dependence on renal dialysis")
        imp.put("dialysis", True, refs, "; ".join(how))


def _lines_out(
    imp: _Import, lines: list[Line], transplants: list[Transplant]
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    out, profile_lines = [], []
    numbers = [ln.explicit_number for ln in lines if ln.explicit_number is not None]
    if numbers:
        if numbers != sorted(numbers):
            imp.warnings.append(f"the bundle's line numbers {numbers} are not in date order; lines are listed by date")
        if min(numbers) > 1:
            imp.warnings.append(
                f"the bundle numbers its first line {min(numbers)}: earlier lines are not in the bundle, so prior_lines is incomplete"
            )
    for i, ln in enumerate(lines, 1):
        agents = ln.drugs()
        prof: dict[str, Any] = {}
        label = _regimen_label(agents, imp.v)
        if label:
            prof["regimen"] = label
        prof["agents"] = agents
        derived: dict[str, dict[str, Any]] = {}
        autos = ln.autologous_transplant()
        if autos:
            prof["autologous_transplant"] = True
            derived["autologous_transplant"] = {
                "value": True,
                "how": "autologous stem-cell transplant in this line",
                "sources": [t.ref for t in autos],
            }
            last = max(autos, key=lambda t: (t.day.earliest, t.ref))
            if last.day.precision != "year":  # early relapse after ASCT counts from it
                prof["transplant_date"] = last.day.profile_text()
                derived["transplant_date"] = {
                    "value": prof["transplant_date"],
                    "how": "the performed date of the line's (last) autologous stem-cell transplant Procedure",
                    "sources": [last.ref],
                }
        assessed = bool(ln.assessed_by) or any(m.exposure.stop for m in ln.members)
        if assessed:
            prof["refractory_to"] = [d for d in agents if d in ln.refractory]
            srcs = sorted({r for v in ln.refractory.values() for r in v[1:]} | set(ln.assessed_by))
            how = (
                "; ".join(f"{d}: {RULES[v[0]]}" for d, v in ln.refractory.items())
                or "disease assessed, no progression or no-response stop attributable to its drugs"
            )
            derived["refractory_to"] = {
                "value": prof["refractory_to"],
                "how": f"derived (no FHIR datum exists): {how}",
                "sources": srcs,
            }
        if ln.intolerant:
            prof["intolerant_to"] = [d for d in agents if d in ln.intolerant]
            derived["intolerant_to"] = {
                "value": prof["intolerant_to"],
                "how": RULES["INTOL-NOT-TOLERATED"],
                "sources": [r for v in ln.intolerant.values() for r in v[1:]],
            }
        prof["start_date"] = ln.start_day().profile_text()
        if ln.car_t is not None and ln.car_t.start.precision != "year":
            # the line starts at its apheresis (or bridging, lymphodepletion): the facts count from the infusion
            prof["infusion_date"] = ln.car_t.start.profile_text()
            derived["infusion_date"] = {
                "value": prof["infusion_date"],
                "how": f"the {ln.car_t.drug} administration that opened the line (LOT-OPEN-CAR-T)",
                "sources": [ln.car_t.ref],
            }
        end = ln.end_day()
        if end is not None:
            prof["end_date"] = end.profile_text()
        if ln.best_response is not None:
            prof["best_response"] = ln.best_response.response
            derived["best_response"] = {
                "value": ln.best_response.response,
                "how": imp.assessment_how[ln.best_response.ref],
                "sources": [ln.best_response.ref],
            }
        if ln.progression is not None:
            prof["progression_date"] = ln.progression.day.profile_text()
            derived["progression_date"] = {
                "value": prof["progression_date"],
                "how": imp.assessment_how[ln.progression.ref],
                "sources": [ln.progression.ref],
            }
        if ln.stop_reason is not None:
            prof["stop_reason"] = ln.stop_reason[0]
            derived["stop_reason"] = {
                "value": ln.stop_reason[0],
                "how": "progression in the line, or the statusReason of its last-stopped drug",
                "sources": [ln.stop_reason[1]],
            }
        profile_lines.append(prof)
        out.append(
            {
                "line": i,
                "explicit_number": ln.explicit_number,
                "start_date": prof["start_date"],
                "end_date": prof.get("end_date"),
                "agents": agents,
                "opened_by": {"rule": ln.opened_by, "text": RULES[ln.opened_by], "detail": ln.opened_detail},
                "members": [
                    {
                        "drug": m.exposure.drug,
                        "start": m.exposure.start.iso(),
                        "end": m.exposure.end.iso(),
                        "rule": m.rule,
                        "source": m.exposure.ref,
                        "matched_by": imp.drug_how.get(m.exposure.ref, ""),
                    }
                    for m in sorted(ln.members, key=lambda m: (m.exposure.first, m.exposure.drug, m.exposure.ref))
                ]
                + [
                    {
                        "drug": "(transplant)",
                        "start": t.day.iso(),
                        "end": t.day.iso(),
                        "rule": "LOT-JOIN-TRANSPLANT",
                        "source": t.ref,
                        "matched_by": "allogeneic" if t.allogeneic else "autologous",
                    }
                    for t in ln.transplants
                ],
                "derived": derived,
                "sources": ln.sources() + sorted({r for d in derived.values() for r in d["sources"]} - set(ln.sources())),
            }
        )
    return out, profile_lines
