"""CDS Hooks 2.0.1 plumbing: the discovery document, request and feedback models, prefetch -> Bundle.

Nothing clinical: the prefetch is gathered into one FHIR Bundle and handed to the FHIR
importer (issue 14) in the worker, which decides what a profile is and whether the chart
has myeloma at all.
"""

from __future__ import annotations

import datetime as _dt
from typing import Any, Literal
from uuid import UUID

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from cds.api import error_field, error_text

SERVICE_ID = "mm-treatment-sequencing"
HOOK = "patient-view"

# What the FHIR mapping reads, fetched by the EHR before the call. Every key is required: a key
# the client omitted (it could not fetch it) gives 412; null means "no such data".
PREFETCH = {
    "patient": "Patient/{{context.patientId}}",
    "conditions": "Condition?patient={{context.patientId}}",
    "medicationAdministrations": "MedicationAdministration?patient={{context.patientId}}",
    "medicationRequests": "MedicationRequest?patient={{context.patientId}}",
    "medicationStatements": "MedicationStatement?patient={{context.patientId}}",
    "procedures": "Procedure?patient={{context.patientId}}",
    "observations": "Observation?patient={{context.patientId}}",
}


def discovery() -> dict[str, Any]:
    return {
        "services": [
            {
                "hook": HOOK,
                "id": SERVICE_ID,
                "title": "Relapsed/refractory myeloma: treatment options ranked",
                "description": (
                    "For a patient with relapsed/refractory multiple myeloma: the treatment options ranked for this "
                    "patient, with the rules that fired, their evidence, the cautions and the facts still to obtain "
                    "(decision support, not decision making). No card for patients without a myeloma diagnosis."
                ),
                "prefetch": dict(PREFETCH),
            }
        ]
    }


class _Open(BaseModel):
    model_config = ConfigDict(extra="allow")  # the spec lets clients add fields (extensions)


class PatientViewContext(_Open):
    userId: str = Field(min_length=1, max_length=500)
    patientId: str = Field(min_length=1, max_length=500)
    encounterId: str | None = Field(default=None, max_length=500)


class FhirAuthorization(_Open):
    access_token: str
    token_type: Literal["Bearer"]
    expires_in: int
    scope: str
    subject: str
    patient: str | None = None


class HookRequest(_Open):
    hook: str
    hookInstance: UUID
    context: PatientViewContext
    fhirServer: str | None = None
    fhirAuthorization: FhirAuthorization | None = None
    prefetch: dict[str, Any] | None = None

    @field_validator("hook")
    @classmethod
    def _patient_view(cls, value: str) -> str:
        if value != HOOK:
            raise ValueError(f"this service answers the {HOOK!r} hook, not {value!r}")
        return value

    @model_validator(mode="after")
    def _server_with_authorization(self) -> HookRequest:
        if self.fhirAuthorization is not None and not self.fhirServer:
            raise ValueError("fhirServer is required when fhirAuthorization is given")
        return self


class OverrideReason(_Open):
    reason: dict[str, Any] | None = None
    userComment: str | None = Field(default=None, max_length=10_000)


class FeedbackItem(_Open):
    card: str = Field(min_length=1, max_length=100)
    outcome: Literal["accepted", "overridden"]
    acceptedSuggestions: list[dict[str, Any]] | None = None
    overrideReason: OverrideReason | None = None
    outcomeTimestamp: str

    @field_validator("outcomeTimestamp")
    @classmethod
    def _iso(cls, value: str) -> str:
        try:
            _dt.datetime.fromisoformat(value.replace("Z", "+00:00"))
        except ValueError:
            raise ValueError("must be an ISO 8601 date-time, e.g. 2026-01-01T10:00:00Z") from None
        return value


class FeedbackRequest(_Open):
    feedback: list[FeedbackItem] = Field(min_length=1, max_length=1000)


def first_problem(exc: ValidationError) -> tuple[str, str]:
    """(field, one-line message) for a pydantic error: the first problem, with a count of the others."""
    errors = exc.errors()
    err = errors[0]
    field = error_field(err["loc"], brackets=True) or "(body)"
    message = f"{field}: {error_text(err['msg'])}"
    if len(errors) > 1:
        message += f" (and {len(errors) - 1} more problem(s))"
    return field, message


class PrefetchMissing(Exception):
    """The data the service needs is not in the request (412)."""


PREFETCH_TYPES = {
    "conditions": "Condition",
    "medicationAdministrations": "MedicationAdministration",
    "medicationRequests": "MedicationRequest",
    "medicationStatements": "MedicationStatement",
    "procedures": "Procedure",
    "observations": "Observation",
}


def prefetch_for(bundle: dict[str, Any]) -> dict[str, Any]:
    """What an EHR would send as prefetch for the patient of `bundle` (tests, benchmark, README example).

    The Patient resource, and one searchset Bundle per search of the discovery entry; resources
    the searches would not return are left out.
    """
    resources = [e["resource"] for e in bundle.get("entry") or [] if isinstance(e, dict) and isinstance(e.get("resource"), dict)]
    prefetch: dict[str, Any] = {"patient": next((r for r in resources if r.get("resourceType") == "Patient"), None)}
    for key, kind in PREFETCH_TYPES.items():
        found = [{"resource": r} for r in resources if r.get("resourceType") == kind]
        prefetch[key] = {"resourceType": "Bundle", "type": "searchset", "total": len(found), "entry": found}
    return prefetch


def bundle_from_prefetch(prefetch: dict[str, Any] | None) -> dict[str, Any]:
    """One collection Bundle of every resource in the prefetch; PrefetchMissing when a key is absent or unusable.

    A key the client omitted, an OperationOutcome in its place (the client's fetch failed) or a
    searchset with a `next` link (more pages than were sent) is missing data; `null` is no data.
    """
    prefetch = prefetch or {}
    entries: list[dict[str, Any]] = []
    for key in PREFETCH:
        if key not in prefetch:
            raise PrefetchMissing(f"prefetch {key!r} is missing")
        value = prefetch[key]
        if value is None:
            continue
        if not isinstance(value, dict) or not isinstance(value.get("resourceType"), str):
            raise PrefetchMissing(f"prefetch {key!r} is not a FHIR resource")
        kind = value["resourceType"]
        if kind == "OperationOutcome":
            raise PrefetchMissing(f"prefetch {key!r}: the client could not fetch it (OperationOutcome)")
        if kind == "Bundle":
            if any(isinstance(link, dict) and link.get("relation") == "next" for link in value.get("link") or []):
                raise PrefetchMissing(f"prefetch {key!r} has more pages than were sent (fetching them is not supported yet)")
            for entry in value.get("entry") or []:
                if isinstance(entry, dict) and isinstance(entry.get("resource"), dict):
                    entries.append({"resource": entry["resource"]})
        else:
            entries.append({"resource": value})
    return {"resourceType": "Bundle", "type": "collection", "entry": entries}


def hook_request(bundle: dict[str, Any], hook_instance: str = "d1577c69-dfbe-44ad-ba6d-3e05e953b2ea") -> dict[str, Any]:
    """The patient-view request an EHR would send for the patient of `bundle` (README example, tests, benchmark)."""
    prefetch = prefetch_for(bundle)
    patient = prefetch["patient"] or {}
    return {
        "hook": HOOK,
        "hookInstance": hook_instance,
        "context": {"userId": "Practitioner/example", "patientId": str(patient.get("id", "example"))},
        "prefetch": prefetch,
    }
