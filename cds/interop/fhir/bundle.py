"""Read a FHIR R4 Bundle strictly: every entry validated by fhir.resources' R4B models.

`read_bundle(data)` returns the entries (each with its index, resource type, id, raw JSON
and validated model) or raises `BundleError` with every problem at once, each naming the
entry (``entry[12] MedicationAdministration/abc: effectiveDateTime: ...``). It checks:
the top-level resourceType and Bundle.type; each entry's resource against its R4B model
(unknown keys, wrong types, bad dates and codes' lexical forms are errors); the status
codes of the resources the importer reads (the models accept any code); duplicate
resources; exactly one Patient; and that every resource with a subject/patient reference
points at that Patient (a Bundle mixing two patients is refused, naming the entry).

fhir.resources is imported here only, when a Bundle is read: ``import cds`` and profile
evaluations never pay for it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from cds.errors import BundleError, printable, quoted
from cds.model.base import schema_problems

from . import codes

if TYPE_CHECKING:
    from pydantic import ValidationError

BUNDLE_TYPES = ("collection", "searchset", "document", "transaction")


@dataclass(frozen=True)
class Entry:
    index: int
    resource_type: str
    id: str | None
    full_url: str | None
    raw: dict[str, Any]
    model: Any

    @property
    def ref(self) -> str:
        """How the import report names it: ``Type/id`` (or the fullUrl when there is no id)."""
        if self.id:
            return f"{self.resource_type}/{self.id}"
        return self.full_url or f"{self.resource_type}#entry[{self.index}]"

    @property
    def label(self) -> str:
        return f"entry[{self.index}] {self.ref}"


@dataclass(frozen=True)
class Bundle:
    id: str | None
    type: str
    timestamp: Any
    entries: tuple[Entry, ...]
    patient: Entry

    def resolve(self, reference: str | None, container: Entry | None = None) -> Any | None:
        """The model a reference points at: ``Type/id``, a fullUrl, or ``#id`` (contained in `container`)."""
        if not reference:
            return None
        if reference.startswith("#") and container is not None:
            for c in getattr(container.model, "contained", None) or []:
                if getattr(c, "id", None) == reference[1:]:
                    return c
            return None
        entry = self._index().get(reference)
        return entry.model if entry is not None else None

    def entry_for(self, reference: str | None) -> Entry | None:
        return self._index().get(reference or "")

    def _index(self) -> dict[str, Entry]:
        idx = self.__dict__.get("_idx")
        if idx is None:
            idx = {}
            for e in self.entries:
                if e.id:
                    idx[f"{e.resource_type}/{e.id}"] = e
                if e.full_url:
                    idx[e.full_url] = e
                    if e.id and e.full_url.endswith(f"/{e.resource_type}/{e.id}"):
                        idx[e.full_url] = e
            object.__setattr__(self, "_idx", idx)
        return idx


def _errors(exc: ValidationError) -> list[str]:
    """One line per error of a FHIR model: ``code.coding[0].system: <problem>`` (every part through `printable`)."""
    return schema_problems(exc, noun=None, brackets=True)


def _describe(value: Any) -> str:
    return type(value).__name__ if not isinstance(value, str) else repr(value[:40])


def check_kind(data: Any) -> None:
    """A Bundle of one of the accepted types, or a BundleError saying what it is instead."""
    if not isinstance(data, dict):
        raise BundleError([f"(file): expected a JSON object (a FHIR Bundle), got {type(data).__name__}"])
    rtype = data.get("resourceType")
    if rtype is None:
        raise BundleError(
            [
                f"resourceType: missing, so this is not a FHIR Bundle ({', '.join(BUNDLE_TYPES)}); a patient profile needs no import: give it to cds evaluate or cds validate"
            ]
        )
    if rtype != "Bundle":
        raise BundleError(
            [
                f"resourceType: {_describe(rtype)} is not a Bundle; cds reads a FHIR Bundle ({', '.join(BUNDLE_TYPES)}) or a patient profile"
            ]
        )
    btype = data.get("type")
    if btype not in BUNDLE_TYPES:
        raise BundleError([f"type: {_describe(btype)} is not one of {', '.join(BUNDLE_TYPES)}"])


def read_bundle(data: Any) -> Bundle:
    check_kind(data)
    from .nullcheck import install

    install()  # before the models are built: fhir-core's null check, the same result for half the cost
    from fhir.resources.R4B import get_fhir_model_class  # lazy: ~0.15 s and ~37 MB, only for Bundles
    from fhir.resources.R4B.bundle import Bundle as BundleModel
    from fhir.resources.R4B.bundle import BundleEntry
    from pydantic import ValidationError

    problems: list[str] = []
    shell = {k: v for k, v in data.items() if k != "entry"}
    try:
        shell_model = BundleModel.model_validate(shell)
    except ValidationError as exc:
        problems += [f"Bundle.{p}" for p in _errors(exc)]
        shell_model = None
    raw_entries = data.get("entry", [])
    if not isinstance(raw_entries, list):
        raise BundleError([*problems, f"entry: expected a list, got {type(raw_entries).__name__}"])
    entries: list[Entry] = []
    seen: dict[str, int] = {}
    for i, raw_entry in enumerate(raw_entries):
        if not isinstance(raw_entry, dict):
            problems.append(f"entry[{i}]: expected an object, got {type(raw_entry).__name__}")
            continue
        resource = raw_entry.get("resource")
        rtype = resource.get("resourceType") if isinstance(resource, dict) else None
        rid = resource.get("id") if isinstance(resource, dict) else None
        label = f"entry[{i}] {printable(rtype)}/{printable(rid)}" if rid else f"entry[{i}] {printable(rtype or '(no resource)')}"
        try:
            BundleEntry.model_validate({k: v for k, v in raw_entry.items() if k != "resource"})
        except ValidationError as exc:
            problems += [f"{label}: {p}" for p in _errors(exc)]
        if not isinstance(resource, dict):
            problems.append(f"{label}: resource: missing (an entry without a resource carries no patient data)")
            continue
        if not isinstance(rtype, str):
            problems.append(f"{label}: resourceType: missing or not a string")
            continue
        try:
            model_class = get_fhir_model_class(rtype)
        except (ValueError, KeyError):
            problems.append(f"{label}: resourceType: {quoted(rtype)} is not an R4 resource type")
            continue
        try:
            model = model_class.model_validate(resource)
        except ValidationError as exc:
            problems += [f"{label}: {p}" for p in _errors(exc)]
            continue
        except Exception as exc:  # noqa: BLE001 - the model library raises KeyError/TypeError on some malformed input
            problems.append(f"{label}: not a valid {rtype} ({type(exc).__name__}: {exc})")
            continue
        problems += [f"{label}: {p}" for p in _status_problems(rtype, resource)]
        entry = Entry(i, rtype, rid, raw_entry.get("fullUrl"), resource, model)
        key = entry.ref
        if key in seen:
            problems.append(f"{label}: the same resource as entry[{seen[key]}] (a resource must appear once)")
            continue
        seen[key] = i
        entries.append(entry)
    if problems:
        raise BundleError(problems)
    patients = [e for e in entries if e.resource_type == "Patient"]
    if not patients:
        raise BundleError(["no Patient resource: the bundle must contain the patient it describes"])
    if len(patients) > 1:
        raise BundleError(
            [f"{len(patients)} Patient resources ({', '.join(p.label for p in patients)}): a bundle must describe one patient"]
        )
    patient = patients[0]
    bundle = Bundle(
        id=data.get("id"),
        type=data["type"],
        timestamp=getattr(shell_model, "timestamp", None),
        entries=tuple(entries),
        patient=patient,
    )
    problems = _subject_problems(bundle)
    if problems:
        raise BundleError(problems)
    return bundle


def _status_problems(rtype: str, resource: dict[str, Any]) -> list[str]:
    allowed = codes.STATUS.get(rtype)
    if allowed is None or "status" not in resource:
        return []
    status = resource["status"]
    if status not in allowed:
        return [f"status: {_describe(status)} is not one of {', '.join(sorted(allowed))}"]
    return []


def _patient_refs(bundle: Bundle) -> set[str]:
    p = bundle.patient
    refs = {f"Patient/{p.id}"} if p.id else set()
    if p.full_url:
        refs.add(p.full_url)
    return refs


def _subject_problems(bundle: Bundle) -> list[str]:
    """Every subject/patient reference must name the bundle's Patient."""
    mine = _patient_refs(bundle)
    problems = []
    for e in bundle.entries:
        for key in ("subject", "patient"):
            ref = e.raw.get(key)
            if not isinstance(ref, dict):
                continue
            target = ref.get("reference")
            if not isinstance(target, str):
                continue
            names_patient = target.startswith(("Patient/", "urn:")) or "/Patient/" in target
            if (
                names_patient
                and target not in mine
                and not any(target.endswith("/" + m) for m in mine if m.startswith("Patient/"))
            ):
                problems.append(
                    f"{e.label}: {key} {target} is not this bundle's patient ({', '.join(sorted(mine))}); "
                    "a bundle must hold one patient's resources"
                )
    return problems
