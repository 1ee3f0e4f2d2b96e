"""`cds new-profile`: a commented profile template, every field with what it means.

The template is JSON with whole-line ``//`` comments (which profile files may
contain, see `cds.model.profile.decode_json`). Optional fields are commented
out: remove the ``//`` to use one. The required fields are present with empty
values, so that `cds validate` names each one until it is filled in; a
template never evaluates as a patient by accident.
"""

from __future__ import annotations

from cds.model.profile import LAB_FIELDS, LINE_FIELDS, PROFILE_FIELDS
from cds.model.vocabulary import Vocabulary

# (field, example value as JSON, what it means). Optional fields are written commented out.
_PATIENT: tuple[tuple[str, str, str], ...] = (
    ("sex", '"female"', '"female" | "male" | "other"'),
    (
        "evaluation_date",
        '"2026-03-01"',
        "the date the case is evaluated for, YYYY-MM-DD (default: now); no date below may be after it",
    ),
    ("frailty", '"fit"', '"fit" | "intermediate" | "frail"'),
    ("creatinine_clearance_ml_min", "62", "creatinine clearance, mL/min"),
    ("dialysis", "false", "on dialysis"),
    ("extramedullary_disease", "false", "extramedullary disease present"),
    ("plasma_cell_leukemia", "false", "plasma cell leukaemia"),
    ("cns_involvement", "false", "CNS myeloma"),
    ("r_iss", "2", "R-ISS stage 1-3"),
    ("cytogenetics", '["t(4;14)"]', "{cytogenetics}; [] = tested, none found; leave out = not tested"),
    (
        "cytogenetics_tested",
        '["t(4;14)", "t(14;16)", "del(17p)"]',
        "a partial panel: the probes done (the others are unknown); leave out when the whole list was tested",
    ),
    ("rapidly_progressive", "false", "disease that cannot wait weeks for therapy"),
    ("car_t_center_access", "true", "access to a certified CAR-T centre"),
    ("organ_function_adequate", "true", "cardiac, pulmonary, hepatic function adequate for lymphodepletion and CRS"),
    ("active_serious_infection", "false", "active serious infection"),
    ("prior_serious_infections", "false", "serious infections (grade >= 3 or admitted) on earlier treatment"),
    ("prior_allogeneic_transplant", "false", "prior allogeneic stem-cell transplant"),
    ("labs", "{labs}", "each lab optional: {lab_fields}"),
    ("notes", '"free text for the tumor board"', "printed in the report, never read by a rule"),
)
_REQUIRED: tuple[tuple[str, str, str], ...] = (
    ("patient_id", '""', "identifier printed in the report (use a case number, not a name)"),
    ("age", "null", "years, 18-120"),
    ("ecog", "null", "ECOG performance status 0-4"),
)
_LINE: tuple[tuple[str, str, str], ...] = (
    (
        "agents",
        '["daratumumab", "lenalidomide", "dexamethasone"]',
        "drug names, brands or abbreviations; may be left out when regimen is a known label; "
        'a trial agent: {"investigational": "XYZ-101", "class": "bcma_car_t"}',
    ),
    (
        "refractory_to",
        '["lenalidomide"]',
        "agents of this line the disease was refractory to; [] = none; leave out = not recorded",
    ),
    ("intolerant_to", "[]", "agents of this line stopped for toxicity; [] = none; leave out = not recorded"),
    ("autologous_transplant", "false", "an autologous transplant was part of this line"),
    ("transplant_date", '"2023-06-12"', "with autologous_transplant: true, the transplant's date (the last, if tandem)"),
    (
        "start_date",
        '"2023-01"',
        "YYYY-MM-DD or YYYY-MM; for a CAR-T line, the infusion date unless infusion_date is given",
    ),
    (
        "infusion_date",
        '"2023-03-02"',
        "a CAR-T line only: the infusion, when the line starts earlier (apheresis, bridging)",
    ),
    ("end_date", '"2024-06"', "last dose of the line"),
    ("progression_date", '"2024-06-15"', "progression on or after the line"),
    ("best_response", '"VGPR"', '"sCR" | "CR" | "VGPR" | "PR" | "MR" | "SD" | "PD" (IMWG)'),
    ("stop_reason", '"progression"', '"progression" | "toxicity" | "completed" | "patient_choice" | "other"'),
)


def profile_template(vocabulary: Vocabulary) -> str:
    labs = ", ".join(f'"{name}": null' for name in LAB_FIELDS)
    fill = {
        "cytogenetics": "any of " + ", ".join(vocabulary.cytogenetic_names),
        "labs": "{" + labs + "}",
        "lab_fields": ", ".join(LAB_FIELDS),
    }
    labels = ", ".join(r.label for r in vocabulary.regimen_labels())
    out = [
        "// cds patient profile (format v2): fill it in, then check it with `cds validate FILE`.",
        "// Lines starting with // are comments. Remove the // in front of an optional field to use it.",
        "// A field left out (or null) means UNKNOWN, never 'no'. See the README's profile table.",
        "{",
    ]
    for name, example, meaning in _PATIENT:
        out.append(f"  // {meaning.format(**fill)}")
        out.append(f"  // {_json_key(name)}: {example.format(**fill)},")
    for name, example, meaning in _REQUIRED:
        out.append(f"  // {meaning} (required)")
        out.append(f"  {_json_key(name)}: {example},")
    out += [
        "  // prior lines of therapy, oldest first (required, at least one); one line = induction + transplant +",
        "  // maintenance (IMWG). Copy the { ... } block for each further line, with a comma between blocks.",
        '  "prior_lines": [',
        "    {",
    ]
    for name, example, meaning in _LINE:
        out.append(f"      // {meaning}")
        out.append(f"      // {_json_key(name)}: {example},")
    out += [
        f"      // a known regimen label stands for its agents: {labels}; anything else is free text and needs agents",
        '      "regimen": ""',
        "    }",
        "  ]",
        "}",
    ]
    return "\n".join(out) + "\n"


def _json_key(name: str) -> str:
    return f'"{name}"'


def template_fields() -> tuple[set[str], set[str]]:
    """(profile fields, line fields) the template documents: every field of the format (checked by a test)."""
    return (
        {n for n, _, _ in (*_PATIENT, *_REQUIRED)} | {"prior_lines"},
        {n for n, _, _ in _LINE} | {"regimen"},
    )


__all__ = ["LINE_FIELDS", "PROFILE_FIELDS", "profile_template", "template_fields"]
