"""fhir-core's check for nulls in lists of complex types, with the fields it checks found once per model class.

fhir-core 1.1.12's ``FHIRAbstractModel.reject_null_complex_elements`` is a pydantic "before" validator that
runs on every model instance (about 165 per Bundle of a patient-view) and walks every field of the class,
testing each field's type, to find the lists of complex types that hold a null. That walk was about half of
reading a Bundle (`cds.interop.fhir.bundle.read_bundle`: 4.96 -> 2.17 ms CPU on the FHIR test cases). Here
the fields it would test are listed once per class; data without such a null is returned unchanged, as the
library returns it, and data with one is handed to the library's own function, which raises its own errors
(every one): the same result for every input, good or bad (tests/fhir/test_import.py).

Installed before the R4B models are built (pydantic binds a model validator by name when it builds a
class), and only on the pinned fhir-core (pyproject.toml): any other version runs as it comes.
"""

from __future__ import annotations

from importlib.metadata import version
from typing import Any

PINNED = "1.1.12"
NAME = "reject_null_complex_elements"
_installed: list[bool] = []
#: fhir-core's own function, once installed (the fallback)
library: Any = None
#: per model class, the (name, alias) of the fields the check looks at: filled as the models validate
FIELDS: dict[type, tuple[tuple[str, str | None], ...]] = {}


def install() -> bool:
    """Replace the validator (once per process); False when fhir-core is not the pinned version."""
    if _installed:
        return _installed[0]
    from fhir_core.fhirabstractmodel import FHIRAbstractModel
    from fhir_core.utils import is_list_type, is_primitive_type

    original = FHIRAbstractModel.__dict__.get(NAME)
    if version("fhir-core") != PINNED or not isinstance(original, classmethod):
        _installed.append(False)
        return False
    global library
    library = original.__func__
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
    _installed.append(True)
    return True
