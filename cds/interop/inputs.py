"""One way in for every input: a patient profile or a FHIR Bundle, told apart by `resourceType`.

`cds evaluate`, `cds batch` and `cds.evaluate` accept either wherever a profile is accepted.
A JSON object with a ``resourceType`` is FHIR: a Bundle (collection, searchset, document or
transaction) is imported (`cds.interop.fhir`), anything else is refused naming its type; an
object without one is a profile. fhir.resources is imported only when a Bundle comes in.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from cds.errors import ProfileError
from cds.model.profile import PatientProfile, Shape, decode_profile_json, parse_profile, read_input_file
from cds.model.vocabulary import Vocabulary

if TYPE_CHECKING:
    from cds.interop.fhir.mapping import ImportResult


@dataclass(frozen=True)
class Loaded:
    profile: PatientProfile
    imported: ImportResult | None  # the import report when the input was a FHIR Bundle


def is_fhir(data: Any) -> bool:
    return isinstance(data, dict) and "resourceType" in data


def parse_input(
    data: Any,
    vocabulary: Vocabulary,
    evaluation_date: str | None = None,
    default_date: str | None = None,
    *,
    text: str | None = None,
    shape: Shape | None = None,
) -> Loaded:
    """A decoded profile or Bundle -> a validated profile (ProfileError / BundleError: exit 2).

    `default_date` is the evaluation time's date: a profile without evaluation_date is evaluated on it
    (none of its dates may be after it: checked with every other problem); a Bundle's evaluation date
    is `evaluation_date`, else its timestamp, else `default_date`. `text`: the JSON text `data` was
    decoded from, when there is one; `shape`: what `decode_profile_json` proved of it."""
    if not is_fhir(data):
        return Loaded(parse_profile(data, vocabulary, default_date, text=text, shape=shape), None)
    from cds.interop.fhir import import_bundle

    result = import_bundle(data, vocabulary, evaluation_date, default_date)
    return Loaded(validate_imported(result, vocabulary), result)


def validate_imported(result: ImportResult, vocabulary: Vocabulary) -> PatientProfile:
    """The imported profile through the profile contract; a missing fact's error says why FHIR did not give it."""
    try:
        return parse_profile(result.profile, vocabulary)
    except ProfileError as exc:
        why = next((f.how for f in result.facts if f.field == exc.field and f.status == "unknown"), None)
        hint = (
            f" (imported from FHIR: {why}; give it with `cds import-fhir --with`)"
            if why
            else " (in the profile imported from FHIR)"
        )
        raise ProfileError(exc.field, exc.problem + hint) from None


def load_input_text(
    text: str, vocabulary: Vocabulary, evaluation_date: str | None = None, default_date: str | None = None
) -> Loaded:
    data, shape = decode_profile_json(text)
    return parse_input(data, vocabulary, evaluation_date, default_date, text=text, shape=shape)


def load_input_profile(text: str, vocabulary: Vocabulary, default_date: str | None = None) -> PatientProfile:
    """``load_input_text(text, vocabulary, default_date=default_date).profile`` (the `cds batch` line path)."""
    data, shape = decode_profile_json(text)
    return parse_input(data, vocabulary, None, default_date, text=text, shape=shape).profile


def load_input(path: Path, vocabulary: Vocabulary, evaluation_date: str | None = None, default_date: str | None = None) -> Loaded:
    return load_input_text(read_input_file(path), vocabulary, evaluation_date, default_date)
