"""`--with overrides.json`: a partial profile merged over the imported one, marked in the import report.

For facts EHRs rarely hold (`car_t_center_access`, `organ_function_adequate`,
`rapidly_progressive`, `frailty`, ...). Top-level fields replace the imported value; `labs`
is merged field by field; `prior_lines`, if given, replaces the derived lines whole. Every
key must be a profile field (the merged profile is validated by the profile contract);
each overridden fact is marked "overridden" with the imported value it replaced.
"""

from __future__ import annotations

from typing import Any

from cds.errors import ProfileError, printable

from .mapping import Fact, ImportResult


def apply_overrides(result: ImportResult, overrides: Any, source: str) -> None:
    """Merge `overrides` (decoded JSON) into result.profile and result.facts, in place."""
    if not isinstance(overrides, dict):
        raise ProfileError(
            "(file)", f"{source}: overrides must be a JSON object (a partial profile), got {type(overrides).__name__}"
        )
    facts = {f.field: f for f in result.facts}
    for key, value in overrides.items():
        if key == "labs" and isinstance(value, dict):
            labs = result.profile.setdefault("labs", {})
            for lab, v in value.items():
                _mark(facts, result, f"labs.{lab}", labs.get(lab), v, source)
                labs[lab] = v
            continue
        _mark(facts, result, key, result.profile.get(key), value, source)
        result.profile[key] = value
    result.facts = list(facts.values())


def _mark(facts: dict[str, Fact], result: ImportResult, name: str, old: Any, new: Any, source: str) -> None:
    before = "unknown" if old is None else f"imported {printable(repr(old))}"
    how = f"from {source} (was {before})"
    facts[name] = Fact(name, new, "overridden", [source], how)
