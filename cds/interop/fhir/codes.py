"""Every code the FHIR importer reads, with where it was verified.

Nothing here is guessed: each code was checked in a readable source (named beside
it). A code that could not be verified is not listed; the importer then falls back
to text (a coding's `display`, a CodeableConcept's `text`) where the README says so.

Main sources:
- mCODE STU4 IG source, HL7/fhir-mCODE-ig 4.0.0 (CC0): `input/fsh/SD_Medications.fsh`,
  `VS_Other.fsh` (TreatmentTerminationReasonVS), `SD_PerformanceStatus.fsh`,
  `SD_DiseaseStatus.fsh`, `SD_Genomics.fsh`, the staging profiles MyelomaRISSStage /
  MyelomaRISSValueVS, and the `EX_*.fsh` examples (ECOG example: valueInteger 0 with
  interpretation LA9622-7).
- standardhealth/ped-cancer-ig: `input/fsh/SD_LineOfTherapy.fsh` (extension id
  pedcan-line-of-therapy-number, positiveInt, on MedicationRequest/Administration; canonical
  http://hl7.org/fhir/us/pedcan from `sushi-config.yaml`) and `SD_StemCellTransplant.fsh`
  (StemCellTransplantVS: is-a 234336002 "Hemopoietic stem cell transplant").
- LOINC answer list LL529-9 (ECOG): LA9622-7 ... LA9626-8 for ECOG 0-4, as listed in the
  German tumour-board IG IDGRLP/Tumorkonferenzen-IG `resources/input/fsh/valueSets.fsh`
  (ECOGPerformanceStatusVS) and used by the mCODE example.
- ICD-10-CM C90.0x / C90.1x / C90.2x and SNOMED 109989006: the issue's list, as in
  /work/shared/notes/fhir-mcode.md (mCODE's PrimaryCancerCondition examples).
"""

from __future__ import annotations

LOINC = "http://loinc.org"
SNOMED = "http://snomed.info/sct"
ICD10CM = "http://hl7.org/fhir/sid/icd-10-cm"
RXNORM = "http://www.nlm.nih.gov/research/umls/rxnorm"
NCIT_PREFIX = "http://ncicb.nci.nih.gov/xml/owl/EVS/Thesaurus.owl"  # mCODE's alias NCIT (also with '#')
UCUM = "http://unitsofmeasure.org"

# --- extensions: an explicit line-of-therapy number (positiveInt) on a medication resource
LINE_NUMBER_EXTENSIONS = (
    "http://hl7.org/fhir/us/pedcan/StructureDefinition/pedcan-line-of-therapy-number",  # ped-cancer-ig
    "urn:cds-myeloma:fhir:line-of-therapy-number",  # ours, for senders without an IG of their own
)

# --- diagnosis (Condition.code): ICD-10-CM by prefix, SNOMED exact
ICD10_MYELOMA_PREFIX = "C90.0"  # C90.00 not in remission, C90.01 in remission, C90.02 in relapse
ICD10_PCL_PREFIX = "C90.1"  # plasma cell leukaemia
ICD10_EXTRAMEDULLARY_PREFIX = "C90.2"  # extramedullary plasmacytoma
SNOMED_MYELOMA = "109989006"  # Multiple myeloma (disorder)
# end-stage renal disease on dialysis: ICD-10-CM Z99.2 "Dependence on renal dialysis"
# (the dialysis status code in published ESRD phenotypes, e.g. QRISK3's and PEDSnet's codesets)
ICD10_DIALYSIS_DEPENDENCE = "Z99.2"

# --- medication stop reasons (statusReason), mCODE TreatmentTerminationReasonVS (SNOMED)
STOP_NO_RESPONSE = "266721009"  # No response to treatment
STOP_NOT_TOLERATED = "407563006"  # Treatment not tolerated
STOP_COMPLETED = "182992009"  # Treatment completed
STOP_PATIENT_REFUSAL = "105480006"  # Refusal of treatment by patient
STOP_OTHER = {  # the rest of TreatmentTerminationReasonVS -> stop_reason "other"
    "160932005": "financial problem",
    "184081006": "patient moved away",
    "309846006": "treatment not available",
    "399307001": "lost to follow-up",
    "419620001": "death",
    "7058009": "noncompliance with treatment",
    "443729008": "completion of clinical trial",
    "77386006": "pregnancy",
}

# --- procedures
SNOMED_HSCT = "234336002"  # Hemopoietic stem cell transplant (procedure); autologous unless said otherwise
SNOMED_DIALYSIS = "108241001"  # Dialysis procedure (procedure); VSAC/ACC value sets include codes is-a 108241001
DIALYSIS_LOOKBACK_DAYS = 90
# apheresis / leukapheresis before a CAR-T: no SNOMED code verified in a readable source; matched by text

# --- observations (LOINC)
LOINC_ECOG = "89247-1"
LOINC_KARNOFSKY = "89243-0"
ECOG_ANSWERS = {"LA9622-7": 0, "LA9623-5": 1, "LA9624-3": 2, "LA9625-0": 3, "LA9626-8": 4}  # LL529-9 (LA9627-6 = 5, dead)
LOINC_CRCL_MEASURED = "2164-2"  # Creatinine renal clearance in 24 hour urine and serum
LOINC_CRCL_COCKCROFT_GAULT = "35591-7"  # Creatinine renal clearance predicted by Cockcroft-Gault
LOINC_EGFR = {"33914-3": "eGFR (MDRD)", "62238-1": "eGFR (CKD-EPI)", "98979-8": "eGFR (CKD-EPI 2021)"}
LOINC_DISEASE_STATUS = "97509-4"  # mCODE CancerDiseaseStatus
DISEASE_STATUS_VALUES = {  # mCODE ConditionStatusTrendVS (SNOMED)
    "268910001": "improved",
    "359746009": "stable",
    "271299001": "worsened",
    "709137006": "undetermined",
}
SNOMED_WORSENED = "271299001"
LOINC_GENOMIC_VARIANT = "69548-6"  # mCODE GenomicVariant
LOINC_ISCN = "81291-7"  # component: variation ISCN
# FISH / cytogenetic result values (SNOMED qualifier values; listed together in the
# laboratory-result-value-set of an HL7 FHIR IG: 10828004, 260373001, 260385009, 260415000)
RESULT_DETECTED = {"260373001", "10828004"}  # Detected, Positive
RESULT_NOT_DETECTED = {"260415000", "260385009"}  # Not detected, Negative
# R-ISS (mCODE MyelomaRISSStage: code NCIT C141392, values MyelomaRISSValueVS)
NCIT_RISS = "C141392"
NCIT_RISS_VALUES = {"C141394": 1, "C141395": 2, "C141396": 3}

# labs: LOINC -> (profile field under labs, label)
LAB_CODES = {
    "2276-4": ("ferritin_ng_ml", "ferritin"),
    "1988-5": ("crp_mg_l", "C-reactive protein"),
    "2532-0": ("ldh_u_l", "lactate dehydrogenase"),
    "14804-9": ("ldh_u_l", "lactate dehydrogenase"),
    "751-8": ("neutrophils_10e9_l", "neutrophils"),
    "777-3": ("platelets_10e9_l", "platelets"),
    "2465-3": ("igg_g_l", "IgG"),
}
# soluble BCMA has no common LOINC: our local code, or a code text/display naming it
SBCMA_LOCAL = ("urn:cds-myeloma:fhir:lab", "soluble-bcma")

# --- status codes of the resources read (FHIR R4 required bindings; fhir.resources accepts any code)
STATUS = {
    "MedicationAdministration": {"in-progress", "not-done", "on-hold", "completed", "entered-in-error", "stopped", "unknown"},
    "MedicationRequest": {"active", "on-hold", "cancelled", "completed", "entered-in-error", "stopped", "draft", "unknown"},
    "MedicationStatement": {"active", "completed", "entered-in-error", "intended", "stopped", "on-hold", "unknown", "not-taken"},
    "Observation": {"registered", "preliminary", "final", "amended", "corrected", "cancelled", "entered-in-error", "unknown"},
    "Procedure": {"preparation", "in-progress", "not-done", "on-hold", "stopped", "completed", "entered-in-error", "unknown"},
}
# statuses whose resource says the thing did not happen (or is void): not used, and listed
NOT_HAPPENED = {
    "MedicationAdministration": {"not-done", "entered-in-error"},
    "MedicationRequest": {"cancelled", "entered-in-error", "draft"},
    "MedicationStatement": {"entered-in-error", "intended", "not-taken"},
    "Observation": {"registered", "cancelled", "entered-in-error"},
    "Procedure": {"preparation", "not-done", "entered-in-error"},
}
ONGOING = {"MedicationAdministration": {"in-progress"}, "MedicationRequest": {"active"}, "MedicationStatement": {"active"}}
MEDICATION_REQUEST_INTENTS_NOT_GIVEN = {"proposal", "option"}  # a suggestion, not a treatment decision
CONDITION_VERIFICATION_VOID = {"refuted", "entered-in-error"}
