"""fhir-core's per-instance checks, with what they look at found once per model class.

fhir-core 1.1.12's ``FHIRAbstractModel.reject_null_complex_elements`` is a pydantic "before" validator that
runs on every model instance (about 165 per Bundle of a patient-view) and walks every field of the class,
testing each field's type, to find the lists of complex types that hold a null. That walk was about half of
reading a Bundle (`cds.interop.fhir.bundle.read_bundle`: 4.96 -> 2.17 ms CPU on the FHIR test cases). Here
the fields it would test are listed once per class; data without such a null is returned unchanged, as the
library returns it, and data with one is handed to the library's own function, which raises its own errors
(every one): the same result for every input, good or bad (tests/fhir/test_import.py).

The same for fhir-core's "after" validator ``validate_after_model_construction``, which runs on every model
instance, twice on average (66,240 calls for 33,120 instances in a profile of the test cases), and asks the class each time for its required elements, its name-to-alias map (a walk
of every field) and its choice-of-type ([x]) groups. Here they are asked once per class; an instance whose
required elements all have values and whose choice groups have at most one (or, where required, exactly
one) value passes, as it does in the library, and any other instance is handed to the library's own
function, which decides (a required element may be absent when an extension explains why) and raises its
own errors (tests/fhir/test_import.py). `read_bundle` of the test cases 1.41-1.63 -> 1.10-1.25 ms CPU
(3 interleaved pairs at load average 6-7).

Installed before the R4B models are built (pydantic binds a model validator by name when it builds a
class), and only on the pinned fhir-core (pyproject.toml): any other version runs as it comes.
"""

from __future__ import annotations

from importlib.metadata import version
from typing import Any

PINNED = "1.1.12"
NAME = "reject_null_complex_elements"
AFTER = "validate_after_model_construction"
_installed: list[bool] = []
#: fhir-core's own function, once installed (the fallback)
library: Any = None
#: per model class, the (name, alias) of the fields the check looks at: filled as the models validate
FIELDS: dict[type, tuple[tuple[str, str | None], ...]] = {}
#: fhir-core's own after validator, once installed (the fallback)
library_after: Any = None
#: per model class, (the fields of its required elements, its choice groups as (fields, required)); None: the library decides
PLANS: dict[type, tuple[tuple[str, ...], tuple[tuple[tuple[str, ...], bool], ...]] | None] = {}
_MISSING = object()


def install() -> bool:
    """Replace the validator (once per process); False when fhir-core is not the pinned version."""
    if _installed:
        return _installed[0]
    from fhir_core.fhirabstractmodel import FHIRAbstractModel
    from fhir_core.utils import is_list_type, is_primitive_type

    original = FHIRAbstractModel.__dict__.get(NAME)
    after = FHIRAbstractModel.__dict__.get(AFTER)
    if version("fhir-core") != PINNED or not isinstance(original, classmethod) or not callable(after):
        _installed.append(False)
        return False
    global library, library_after
    library = original.__func__
    library_after = after
    fields = FIELDS

    def reject_null_complex_elements(cls: Any, data: Any) -> Any:
        if not isinstance(data, dict):
            return data
        checked = fields.get(cls)
        if checked is None:  # the library's own choice of fields, made once for the class
            checked = fields[cls] = tuple(
                (name, field.alias)
                for name, field in cls.model_fields.items()
                if is_list_type(field) and not is_primitive_type(field) and not name.endswith("__ext")
            )
        for name, alias in checked:
            value = data.get(alias if alias and alias in data else name)
            if isinstance(value, list) and any(item is None for item in value):
                return original.__func__(cls, data)  # raises the library's errors, every one
        return data

    reject_null_complex_elements.__doc__ = original.__func__.__doc__
    setattr(FHIRAbstractModel, NAME, classmethod(reject_null_complex_elements))  # a validator, not a typed method
    setattr(FHIRAbstractModel, AFTER, _after_validator(after))
    _installed.append(True)
    return True


def _plan(model: Any) -> tuple[tuple[str, ...], tuple[tuple[tuple[str, ...], bool], ...]] | None:
    """What fhir-core's after validator looks at for `model`'s class, as it finds it; None if it cannot be listed."""
    try:
        aliases = model.get_alias_mapping()
        required = tuple(aliases[name] for name, _ext in model.get_required_fields())
        fields = type(model).model_fields
        choices = []
        for prefix, group in model.get_one_of_many_fields().items():
            extra = fields[group[0]].json_schema_extra
            if extra["one_of_many"] != prefix:  # the library asserts it: let it
                return None
            choices.append((tuple(group), extra["one_of_many_required"] is True))
    except Exception:  # noqa: BLE001 - anything unexpected: the library's own function decides, every time
        return None
    return required, tuple(choices)


def _after_validator(after: Any) -> Any:
    plans = PLANS

    def validate_after_model_construction(self: Any) -> Any:
        cls = type(self)
        if cls in plans:
            plan = plans[cls]
        else:
            plan = plans[cls] = _plan(self)
        if plan is None:
            return after(self)
        required, choices = plan
        for key in required:
            if getattr(self, key, _MISSING) in (_MISSING, None):  # the library's test; it decides (an extension may explain)
                return after(self)
        for group, needed in choices:
            found = 0
            for key in group:
                if getattr(self, key, None) is not None:
                    found += 1
            if found > 1 or (needed and not found):
                return after(self)  # raises the library's error
        return self

    validate_after_model_construction.__doc__ = after.__doc__
    return validate_after_model_construction
