"""Unit conversion for the quantities the importer reads: an explicit table, checkable by a clinician.

Each profile field has one unit; a FHIR Quantity is converted only when its unit (the UCUM
`code`, else the printed `unit`) is in that field's table below, by the factor shown.
Anything else (an unknown unit, a missing unit, mL/min/1.73 m2 for a creatinine clearance)
is reported in the import report and the value is not used: never guessed.

Factors: 1 mg/dL = 10 mg/L; 1 g/dL = 10 g/L; 1 mg/dL = 0.01 g/L; 1 ukat/L = 60 U/L (1 U =
1 umol/min); 10*3/uL = 10*9/L = /nL; 1 /uL = 0.001 x 10*9/L; 1 mL/s = 60 mL/min; ng/mL = ug/L.
"""

from __future__ import annotations

from cds.errors import quoted

_COUNT = {
    "10*9/l": 1.0,
    "10^9/l": 1.0,
    "x10*9/l": 1.0,
    "x10^9/l": 1.0,
    "10*3/ul": 1.0,
    "10^3/ul": 1.0,
    "k/ul": 1.0,
    "/nl": 1.0,
    "/ul": 0.001,
    "/mm3": 0.001,
    "cells/ul": 0.001,
    "10*3/mm3": 1.0,
}

TABLE: dict[str, tuple[str, dict[str, float]]] = {
    "creatinine_clearance_ml_min": ("mL/min", {"ml/min": 1.0, "ml/s": 60.0}),
    "ferritin_ng_ml": ("ng/mL", {"ng/ml": 1.0, "ug/l": 1.0}),
    "soluble_bcma_ng_ml": ("ng/mL", {"ng/ml": 1.0, "ug/l": 1.0}),
    "crp_mg_l": ("mg/L", {"mg/l": 1.0, "mg/dl": 10.0}),
    "ldh_u_l": ("U/L", {"u/l": 1.0, "[iu]/l": 1.0, "iu/l": 1.0, "ukat/l": 60.0}),
    "neutrophils_10e9_l": ("10*9/L", _COUNT),
    "platelets_10e9_l": ("10*9/L", _COUNT),
    "igg_g_l": ("g/L", {"g/l": 1.0, "g/dl": 10.0, "mg/dl": 0.01}),
}


def _key(unit: str) -> str:
    return unit.strip().replace("µ", "u").replace("μ", "u").replace(" ", "").lower()


def convert(field: str, value: float, unit: str | None) -> tuple[float | None, str]:
    """(value in the field's unit, how) or (None, why not)."""
    target, factors = TABLE[field]
    if not unit:
        return None, f"no unit given (expected {target})"
    factor = factors.get(_key(unit))
    if factor is None:
        known = ", ".join(sorted({u for u in factors}))
        return None, f"unit {quoted(unit)} is not one the importer converts to {target} (known: {known})"
    converted = round(value * factor, 6)
    if factor == 1.0:
        return converted, f"{value:g} {unit}"
    return converted, f"{value:g} {unit} x {factor:g} = {converted:g} {target}"
