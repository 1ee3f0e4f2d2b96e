"""What the Markdown and HTML templates show: a view model built from a `cds.report.model.Report`.

The presentation half of the results/presentation split (coverage.py's
``html.py`` beside ``results.py``): colours and labels of the drug categories,
the rows of the inputs table, which derived facts are listed with their
derivation and which in one line, the key-evidence table's columns, the
availability marker, the weight as "+10". The templates only loop over and
branch on this; none of it is in the JSON output.

`report_view(report)` returns plain dicts and lists (the report's JSON data
plus the view-only fields), so that the templates read ``r.options`` and
``o.marker`` alike; `board_view(board)` does the same for `cds board`.
"""

from __future__ import annotations

from typing import Any

from cds.decide.unknowns import field_description
from cds.knowledge.evidence import ABOUT_LABELS, MEASURE_LABELS
from cds.report.build import qualifier
from cds.report.model import Report, option_heading, to_data, why_parts
from cds.report.summary import Summary, summarize
from cds.report.timeline import CATEGORIES, CATEGORY_COLOUR, CATEGORY_LABEL
from cds.report.timeline import dates as line_dates

# The key-evidence table of an option: one column per measure a haematologist
# compares first. Other figures of a study are listed under it.
EVIDENCE_COLUMNS: tuple[tuple[str, str], ...] = (
    ("orr", "ORR"),
    ("cr", "CR"),
    ("median_pfs", "Median PFS"),
    ("median_os", "Median OS"),
    ("crs_grade3plus", "Grade \u22653 CRS"),
    ("neurotox_grade3plus", "Grade \u22653 ICANS / neurotox."),
)
_COLUMN_KEYS = frozenset(key for key, _ in EVIDENCE_COLUMNS)

# Derived facts in the order a case is presented (disease status first, then detail), and
# whether each is always shown with its derivation, even when false (the derivation says what
# is missing); the other false facts are listed in one line.
_CASE_FACTS: tuple[tuple[str, bool], ...] = (
    ("prior_line_count", True),
    ("prior_autologous_transplant", True),
    ("triple_class_exposed", True),
    ("triple_class_refractory", True),
    ("penta_refractory", True),
    ("refractory_to_last_line", True),
    ("refractory_lenalidomide", False),
    ("partner_imid_available", True),
    ("partner_pi_available", True),
    ("bcma_exposed", True),
    ("bcma_refractory", False),
    ("bcma_adc_exposed", False),
    ("bcma_adc_refractory", False),
    ("bcma_bispecific_exposed", False),
    ("bcma_bispecific_refractory", False),
    ("bcma_car_t_exposed", False),
    ("bcma_car_t_refractory", False),
    ("gprc5d_exposed", True),
    ("gprc5d_refractory", False),
    ("t_cell_redirecting_exposed", False),
    ("high_risk_cytogenetics", True),
)
_CASE_FACT_ORDER = tuple(name for name, _ in _CASE_FACTS)
_KEY_CASE_FACTS = frozenset(name for name, always in _CASE_FACTS if always)

# An option whose parts add up to at most this many items is kept on one printed page.
_KEEP_TOGETHER_ITEMS = 12

# Page 1 lists at most this many facts to obtain and exclusions; the rest are counted and in the appendix.
PAGE1_FACTS = 6
#: options page 1 shows at most (summarize gives the top 3): a fourth option with its why, evidence and caution
#: lines can push page 1's end onto page 2 when the case also has many lines and exclusions
#: (after_cart_bsab_talq_trial_first); options tied with the third beyond it are named on one line instead
#: (`tied_with_third`, "Tied with rank 3 at score N: ..."), the rest are "more ranked options in the appendix"
PAGE1_OPTIONS = 3
PAGE1_EXCLUDED = 12
# availability status -> (page-1 badge text, CSS class): "referral" is information, not an error
AVAILABILITY_BADGE = {
    "unavailable": ("Not available here", "bad"),
    "not_reimbursed": ("Not reimbursed here", "bad"),
    "referral": ("Referral needed", "info"),
    "available": ("Available here", "good"),
    "unknown": ("Availability not stated", "muted"),
}


def _num(value: Any) -> str:
    return f"{value:g}" if isinstance(value, float) else str(value)


def _yes_no(value: bool | None) -> str:
    return "unknown" if value is None else ("yes" if value else "no")


def evaluation_date_text(date: str | None, source: str, short: bool = False) -> str:
    """Which evaluation date the date-relative facts count to, and where it came from."""
    if date is None:
        return (
            "not given"
            if short
            else "not given (no evaluation_date in the profile, no evaluation time): date-relative facts unknown"
        )
    if source == "profile":
        return f"{date} (profile)" if short else f"{date} (the profile's evaluation_date)"
    return f"{date} (evaluation time)" if short else f"{date} (the evaluation time: no evaluation_date in the profile)"


def _cytogenetics_text(cyto: list[str] | None, tested: list[str] | None) -> str | None:
    """The FISH result as entered: None (not tested), what was found, and for a partial panel its probes."""
    if cyto is None:
        return None
    if tested is None:
        return ", ".join(cyto) if cyto else "tested, none of the listed abnormalities"
    found = ", ".join(cyto) if cyto else "none found"
    return f"{found} (partial panel: {', '.join(tested)} tested; the others not tested, unknown)"


def case_inputs(inputs: dict[str, Any], evaluation_date: dict[str, Any] | None = None) -> list[dict[str, Any]]:
    """The profile's clinical inputs (other than the prior lines) as label/value rows; unknown is said.
    With the report's `evaluation_date`, its row says where the date came from."""
    p = inputs
    labs = p.get("labs") or {}
    cyto = p.get("cytogenetics")
    crcl = p.get("creatinine_clearance_ml_min")
    r_iss = p.get("r_iss")
    rows: list[tuple[str, Any]] = [
        ("Age", f"{p['age']} years"),
        ("Sex", p.get("sex")),
        ("ECOG performance status", str(p["ecog"])),
        ("Frailty", p.get("frailty")),
        ("R-ISS stage", None if r_iss is None else f"R-ISS {r_iss}"),
        ("Creatinine clearance", None if crcl is None else f"{_num(crcl)} mL/min"),
        ("Dialysis", _yes_no(p.get("dialysis"))),
        ("Cytogenetics (FISH)", _cytogenetics_text(cyto, p.get("cytogenetics_tested"))),
        ("Extramedullary disease", _yes_no(p.get("extramedullary_disease"))),
        ("Plasma cell leukaemia", _yes_no(p.get("plasma_cell_leukemia"))),
        ("CNS involvement", _yes_no(p.get("cns_involvement"))),
        ("Rapidly progressive disease", _yes_no(p.get("rapidly_progressive"))),
        ("Access to a CAR-T centre", _yes_no(p.get("car_t_center_access"))),
        ("Organ function adequate for CAR-T", _yes_no(p.get("organ_function_adequate"))),
        ("Active serious infection", _yes_no(p.get("active_serious_infection"))),
        ("Serious infections on earlier treatment", _yes_no(p.get("prior_serious_infections"))),
        ("Prior allogeneic transplant", _yes_no(p.get("prior_allogeneic_transplant"))),
    ]
    for field, label, unit in (
        ("soluble_bcma_ng_ml", "Soluble BCMA", "ng/mL"),
        ("ferritin_ng_ml", "Ferritin", "ng/mL"),
        ("crp_mg_l", "CRP", "mg/L"),
        ("neutrophils_10e9_l", "Neutrophils", "x10^9/L"),
        ("platelets_10e9_l", "Platelets", "x10^9/L"),
        ("igg_g_l", "IgG", "g/L"),
        ("ldh_u_l", "LDH", "U/L"),
    ):
        value = labs.get(field)
        rows.append((label, None if value is None else f"{_num(value)} {unit}"))
    if evaluation_date is not None:
        rows.insert(1, ("Evaluation date", evaluation_date_text(evaluation_date["date"], evaluation_date["source"])))
    elif p.get("evaluation_date"):
        rows.insert(1, ("Evaluation date", p["evaluation_date"]))
    if p.get("notes"):
        rows.append(("Notes (not read by the rules)", p["notes"]))
    return [
        {"label": label, "value": "unknown" if v is None else v, "known": v is not None and v != "unknown"} for label, v in rows
    ]


def case_facts(derived: list[dict[str, Any]]) -> dict[str, list[dict[str, Any]]]:
    """Derived facts for the case summary: the key ones and every one that holds (or is a count, or
    unknown, or was worked out as false from the lines) with how it was derived; then, by name only, the
    other ones that are false because no prior line shows them, and those that do not apply."""
    by_name = {f["name"]: f for f in derived}
    names = [n for n in _CASE_FACT_ORDER if n in by_name]
    names += [f["name"] for f in derived if f["name"] not in names and f["origin"] == "derived"]
    shown: list[dict[str, Any]] = []
    absent: list[dict[str, Any]] = []  # false because no prior line shows it
    inapplicable: list[dict[str, Any]] = []  # about a therapy or event the patient did not have
    no_intolerance = True
    unknown_intolerance: list[str] = []  # explanations of the unknown ones: one row for all of them
    for name in names:
        f = by_name[name]
        row = {"name": name, "description": f["description"], "value": f["value"], "explanation": f["explanation"]}
        not_applicable = not f.get("applies", True)
        not_shown = f["value"] is False and name not in _KEY_CASE_FACTS and _not_shown_by_a_line(f["explanation"])
        does_not_apply = not_applicable or not_shown
        if name.startswith("intolerant_"):
            if does_not_apply:
                continue  # one entry below for all of them
            no_intolerance = False
            if f["value"] is None:
                if name.removeprefix("intolerant_") in _INTOLERANCE_CLASSES:  # a drug's is part of its class's
                    unknown_intolerance.append(f["explanation"].removeprefix("unknown: "))
                continue
        (inapplicable if not_applicable else absent if not_shown else shown).append(row)
    if unknown_intolerance:
        prefix = "intolerance not recorded for "
        agents = [e.removeprefix(prefix) for e in unknown_intolerance if e.startswith(prefix)]
        other = [e for e in unknown_intolerance if not e.startswith(prefix)]
        parts = list(dict.fromkeys(other)) + ([prefix + ", ".join(agents)] if agents else [])
        shown.append(
            {
                "name": "intolerant_",
                "description": "Intolerance (agents stopped for toxicity)",
                "value": None,
                "explanation": "unknown: " + "; ".join(parts),
            }
        )
    if no_intolerance and any(n.startswith("intolerant_") for n in names):
        absent.append({"name": "intolerant_", "description": "Intolerance (no line records an agent stopped for toxicity)"})
    return {"shown": shown, "absent": absent, "inapplicable": inapplicable}


#: how the explanation of a fact that is false because no prior line shows it begins (cds/model/facts.py);
#: a fact worked out as false from the lines (e.g. early relapse after ASCT: later than 12 months) is shown
#: in the table with its derivation instead
_NOT_SHOWN_PREFIXES = ("no line ", "no prior ", "no bispecific line ")


def _not_shown_by_a_line(explanation: str) -> bool:
    return not explanation or explanation.startswith(_NOT_SHOWN_PREFIXES)


#: the intolerance facts of a class (each drug's intolerance fact is part of its class's)
_INTOLERANCE_CLASSES = frozenset({"imid", "pi", "anti_cd38", "bcma_bispecific", "gprc5d_bispecific"})


def _custom_label(fig: dict[str, Any]) -> bool:
    """Whether a figure carries its own label (then it is listed under the table, not in a column)."""
    name = MEASURE_LABELS[fig["measure"]]
    if fig["timepoint"]:
        name = f"{name} at {fig['timepoint']}"
    if fig["arm"]:
        name = f"{name} ({fig['arm']})"
    return bool(fig["label"] != name)


def erratum_mark(c: dict[str, Any]) -> str:
    """The words shown beside a figure or field an erratum concerns: what the trial's publication says."""
    return f"{'erratum' if c['certain'] else 'probable erratum'}: {c['published']}"


def _erratum_what(c: dict[str, Any], figures: list[dict[str, Any]]) -> str:
    """What an erratum is about, in words: the figure's own label ('mean PFS (first salvage)'), or the field's."""
    if c["measure"] is None:
        return ABOUT_LABELS[c["about"]]
    fig = next((f for f in figures if f["measure"] == c["measure"] and c["value"] in (None, f["value"])), None)
    return str(fig["label"]) if fig else MEASURE_LABELS[c["measure"]]


def _figure_erratum(f: dict[str, Any], errata: list[dict[str, Any]]) -> str | None:
    for c in errata:
        if c["about"] == "figure" and c["measure"] == f["measure"] and c["value"] in (None, f["value"]):
            return erratum_mark(c)
    return None


def _evidence_view(e: dict[str, Any]) -> dict[str, Any]:
    errata = [c for c in e["conflicts"] if c["kind"] == "erratum"]
    for c in errata:
        c["mark"] = erratum_mark(c)
        c["label"] = "Erratum" if c["certain"] else "Probable erratum"
        c["what"] = _erratum_what(c, e["figures"])
    figures = [(f, _custom_label(f), _figure_erratum(f, errata)) for f in e["figures"]]
    e["table"] = {
        key: [
            {"value": f["value"], "qualifier": qualifier(f["arm"], f["timepoint"]), "erratum": mark}
            for f, custom, mark in figures
            if f["measure"] == key and not custom
        ]
        for key, _ in EVIDENCE_COLUMNS
    }
    e["other_figures"] = [
        {"label": f["label"], "value": f["value"], "erratum": mark}
        for f, custom, mark in figures
        if f["measure"] not in _COLUMN_KEYS or custom
    ]
    e["errata"] = errata
    # per field an erratum concerns (phase, population, n, ...): the words shown beside it
    e["marks"] = {about: "; ".join(c["mark"] for c in errata if c["about"] == about) for about in ABOUT_LABELS}
    e["location_text"] = e["location"] or "text"
    return e


# Evidence levels that are a statement about results, not a study's own results (a review's range,
# an expert's recollection), whatever the entry's kind: shown as quoted statements with their level.
STATEMENT_LEVELS = frozenset({"review_statement", "expert_statement"})


def _is_statement(e: dict[str, Any]) -> bool:
    return e["kind"] == "statement" or e["level"] in STATEMENT_LEVELS


def _reasons_view(items: list[dict[str, Any]]) -> list[dict[str, Any]]:
    for x in items:
        x["weight_text"] = f"{x['weight']:+d}" if x["weight"] else None
    return items


def _marker(item: dict[str, Any]) -> str | None:
    a = item.get("availability")
    return a["marker"] if a else None


def _marker_class(item: dict[str, Any]) -> str:
    """A referral is information (blue), not the red box of 'not available'."""
    a = item.get("availability")
    return "info" if a and a["status"] == "referral" else "bad"


_STOP_REASON = {
    "progression": "stopped for progression",
    "toxicity": "stopped for toxicity",
    "completed": "completed as planned",
    "patient_choice": "stopped by the patient's choice",
    "other": "stopped for another reason",
}


def course(line: dict[str, Any]) -> str:
    """The line's course in words: dates, best response, progression, why it stopped, intolerance ('' if none)."""
    parts = []
    start, end = line.get("start_date"), line.get("end_date")
    if start or end:
        parts.append((f"{start} to {end}" if end else f"from {start}") if start else f"until {end}")
    if line.get("transplant_date"):
        parts.append(f"ASCT {line['transplant_date']}")
    if line.get("infusion_date"):
        parts.append(f"CAR-T infused {line['infusion_date']}")
    if line.get("best_response"):
        parts.append(f"best response {line['best_response']}")
    if line.get("progression_date"):
        parts.append(f"progression {line['progression_date']}")
    if line.get("stop_reason"):
        parts.append(_STOP_REASON[line["stop_reason"]])
    if line.get("intolerant_to"):
        parts.append("intolerant to " + ", ".join(line["intolerant_to"]))
    return "; ".join(parts)


def _lines_view(lines: list[dict[str, Any]]) -> list[dict[str, Any]]:
    for i, line in enumerate(lines):
        agents = line["agents"]
        for a in agents:
            a["colour"] = CATEGORY_COLOUR[a["category"]]
            a["category_label"] = CATEGORY_LABEL[a["category"]]
            a["alias"] = a["name"] if a["name"].lower() != a["generic"] else None
        line["dates"] = line_dates(line, lines[i + 1] if i + 1 < len(lines) else None)
        line["course"] = course(line)
        line["class_summary"] = ", ".join(
            f"{CATEGORY_LABEL[c]}{' (R)' if any(x['refractory'] for x in agents if x['category'] == c) else ''}"
            for c in dict.fromkeys(x["category"] for x in agents)
        )
    return lines


def summary_view(summary: Summary) -> dict[str, Any]:
    """Page 1: the summary's data with badges, and its lists cut to what fits one page."""
    from cds.report.model import to_data

    v: dict[str, Any] = to_data(summary)
    for o in [*v["options"], *([v["best_available"]] if v["best_available"] else [])]:
        badge = AVAILABILITY_BADGE.get(o["availability_status"] or "")
        o["badge"], o["badge_class"] = badge if badge else (None, None)
        o["raised_text"], o["lowered_text"] = why_parts((r["weight"], r["text"]) for r in [*o["raised"], *o["lowered"]])
        k = o["key_figure"]
        if k:
            # n is the study's; beside one arm's figure it would read as that arm's, so it is left out there
            k["text"] = f"{k['study']}: {k['measure']} {k['value']}" + (f" (n={k['n']})" if k["n"] and not k["arm"] else "")
            k["conflict_text"] = "; ".join(k["conflicts"]) or None
    facts, excluded = v["facts_to_obtain"], v["excluded"]
    v["facts_to_obtain"], v["facts_more"] = facts[:PAGE1_FACTS], max(len(facts) - PAGE1_FACTS, 0)
    v["excluded"], v["excluded_more"] = excluded[:PAGE1_EXCLUDED], max(len(excluded) - PAGE1_EXCLUDED, 0)
    v["ruleset_hash_short"] = v["ruleset_hash"][:12]
    v["evaluated_date"] = v["evaluated_at"][:10]
    v["evaluation_date_text"] = evaluation_date_text(v["evaluation_date"], v["evaluation_date_source"], short=True)
    v["options"] = v["options"][:PAGE1_OPTIONS]
    v["tied_text"] = tied_text(summary)
    v["ranked_more"] = v["ranked_count"] - len(v["options"]) - len(summary.tied_with_third)
    return v


def tied_text(summary: Summary) -> str | None:
    """Page 1's line for the options beyond the top 3 tied with the third, or None: 'Tied with rank 3 at
    score 20 (order between them: catalogue, not a clinical preference): Clinical trial enrolment (rank 4).'"""
    tied = summary.tied_with_third
    if not tied:
        return None
    third = summary.options[-1]
    names = ", ".join(f"{t.short_title} (rank {t.rank})" for t in tied)
    return f"Tied with rank {third.rank} at score {third.score} (in catalogue order, not a clinical preference): {names}."


def board_view(board: Any) -> dict[str, Any]:
    """`cds board`'s data (a `cds.cohort.board.Board`, a layer above) with the fields only its templates need."""
    b: dict[str, Any] = to_data(board)
    for row in b["rows"]:
        top = row["top"]
        if top:
            top["badge"], top["badge_class"] = AVAILABILITY_BADGE.get(top["availability_status"] or "", (None, None))
    b["has_reports"] = any(row["report"] for row in b["rows"])
    b["evaluated_date"] = b["evaluated_at"][:10]
    b["ruleset_hash_short"] = b["ruleset_hash"][:12]
    return b


def report_view(report: Report) -> dict[str, Any]:
    """The report's data with the fields only the templates need (see the module docstring)."""
    r = report.to_dict()
    evidence = {eid: _evidence_view(e) for eid, e in r["evidence"].items()}
    for o in r["options"]:
        for group in ("rationale", "cautions", "next_steps"):
            _reasons_view(o[group])
        # a review's or an expert's statement is quoted as a statement with its level, never a study row
        o["key_studies"] = [e for e in o["key_evidence"] if not _is_statement(evidence[e])]
        o["key_statements"] = [e for e in o["key_evidence"] if _is_statement(evidence[e])]
        o["marker"], o["marker_class"] = _marker(o), _marker_class(o)
        o["heading"] = option_heading(o["title"], o["products_supported"])
        size = len(o["rationale"]) + len(o["key_evidence"]) + len(o["cautions"]) + len(o["next_steps"])
        o["keep"] = size <= _KEEP_TOGETHER_ITEMS
    for c in r["evidence_conflicts"]:
        for side in c["sides"]:
            side["location_text"] = side["location"] or "text"
    r["source_conflicts"] = [c for c in r["evidence_conflicts"] if c["kind"] == "sources"]
    r["errata"] = [c for c in r["evidence_conflicts"] if c["kind"] == "erratum"]
    for x in r["excluded"]:
        _reasons_view(x["reasons"])
        x["marker"], x["marker_class"] = _marker(x), _marker_class(x)
    r.update(
        case_inputs=case_inputs(r["inputs"], r["evaluation_date"]),
        evaluation_date_text=evaluation_date_text(r["evaluation_date"]["date"], r["evaluation_date"]["source"]),
        case_facts=case_facts(r["derived_facts"]),
        lines=_lines_view(r["lines"]),
        drug_categories=[{"id": k, "label": label, "colour": colour} for k, label, colour in CATEGORIES],
        evidence_columns=[{"key": k, "label": label} for k, label in EVIDENCE_COLUMNS],
        unknown_facts_without_effect_described=[
            {"field": f, "description": field_description(f)} for f in r["unknown_facts_without_effect"]
        ],
        site_hash_short=(r["site"]["hash"] or "")[:16],
        ruleset_hash_short=r["ruleset_hash"][:16],
        input_hash_short=r["input_hash"][:16],
        evaluated_date=r["evaluated_at"][:10],
        summary=summary_view(summarize(report)),
    )
    return r
