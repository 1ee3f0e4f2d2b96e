"""Building the report: one plain data structure from an evaluation.

`build_report` turns an Evaluation into a JSON-ready dict (the JSON output is
exactly this dict); `cds.report.render` renders it, and the Markdown and HTML
templates only loop over and branch on it.
"""

from __future__ import annotations

import datetime as _dt
import os
from typing import Any

from cds.decide.pipeline import Evaluation
from cds.decide.ranking import Reason
from cds.decide.unknowns import field_description
from cds.errors import InputError
from cds.knowledge.evidence import MEASURE_LABELS, EvidenceEntry
from cds.model.facts import FACTS
from cds.report.timeline import CATEGORIES, CATEGORY_COLOUR, CATEGORY_LABEL, category

FORMAT_VERSION = "cds-evaluation/1"
DISCLAIMER = (
    "Decision support, not decision making: this report supports and does not replace the clinical "
    "judgement of the treating haematologist and the tumor board. Check every recommendation against "
    "its inputs, rules and sources."
)


def evaluation_time(fixed: str | None = None) -> str:
    """ISO-8601 UTC time of the evaluation, e.g. ``2026-01-01T00:00:00Z``.

    Fixed by `fixed` (``--timestamp``: an ISO-8601 date-time; without a zone it
    is taken as UTC) or by ``SOURCE_DATE_EPOCH`` (seconds since 1970) for
    reproducible output. An unreadable value is an input error, never ignored.
    """
    if fixed is not None:
        try:
            moment = _dt.datetime.fromisoformat(fixed.strip())
        except ValueError:
            raise InputError(f"--timestamp: {fixed!r} is not an ISO-8601 date-time (e.g. 2026-01-01T00:00:00Z)") from None
        if moment.tzinfo is None:
            moment = moment.replace(tzinfo=_dt.UTC)
    elif "SOURCE_DATE_EPOCH" in os.environ:
        epoch = os.environ["SOURCE_DATE_EPOCH"].strip()
        if not epoch.isdigit():
            raise InputError(f"SOURCE_DATE_EPOCH: {epoch!r} is not a whole number of seconds since 1970")
        try:
            moment = _dt.datetime.fromtimestamp(int(epoch), tz=_dt.UTC)
        except (OverflowError, OSError, ValueError):
            raise InputError(f"SOURCE_DATE_EPOCH: {epoch} is out of range") from None
    else:
        moment = _dt.datetime.now(tz=_dt.UTC)
    return moment.astimezone(_dt.UTC).replace(microsecond=0).isoformat().replace("+00:00", "Z")


def _reason(r: Reason) -> dict[str, Any]:
    out: dict[str, Any] = {
        "rule_id": r.rule_id,
        "kind": r.kind,
        "title": r.title,
        "text": r.text,
        "evidence": list(r.evidence),
        "weight": r.weight,
        "category": r.category,
        "unknown_facts": list(r.unknown_facts),
    }
    return out


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


def _qualifier(f) -> str | None:
    parts = [p for p in (f.arm, f"at {f.timepoint}" if f.timepoint else None) if p]
    return ", ".join(parts) or None


def _evidence(entry: EvidenceEntry, ev: Evaluation) -> dict[str, Any]:
    src = ev.ruleset.registry.source_for(entry)
    out: dict[str, Any] = {
        "id": entry.id,
        "kind": entry.kind,
        "title": entry.title,
        "source_id": src.id,
        "source_file": entry.source,
        "source_title": src.title,
        "source_citation": src.citation,
        "location": entry.location,
        "quote": " ".join(entry.quote.split()),
    }
    for key in ("trial", "agent", "publication", "population", "n", "phase", "note"):
        out[key] = getattr(entry, key)
    out["figures"] = [
        {
            "measure": f.measure,
            "label": f.display_measure(),
            "value": f.value,
            "arm": f.arm,
            "timepoint": f.timepoint,
        }
        for f in entry.figures
    ]
    columns = {key for key, _ in EVIDENCE_COLUMNS}
    out["table"] = {
        key: [{"value": f.value, "qualifier": _qualifier(f)} for f in entry.figures if f.measure == key and not f.label]
        for key, _ in EVIDENCE_COLUMNS
    }
    out["other_figures"] = [
        {"label": f.display_measure(), "value": f.value} for f in entry.figures if f.measure not in columns or f.label
    ]
    out["conflicts"] = [{"with": c.with_, "measure": c.measure, "note": c.note} for c in entry.conflicts]
    return out


def _lines(ev: Evaluation) -> list[dict[str, Any]]:
    """The prior lines with the class and target of every agent, from the vocabulary."""
    vocabulary = ev.ruleset.vocabulary
    out = []
    for n, line in enumerate(ev.profile.prior_lines, 1):
        refractory = set()
        for a in line.refractory_to:
            drug = vocabulary.lookup(a)
            refractory.add(drug.name if drug else a)
        agents = []
        for a in line.agents:
            drug = vocabulary.lookup(a)
            assert drug is not None  # validated with the profile
            cat = category(drug.drug_class, drug.targets)
            agents.append(
                {
                    "name": a,
                    "generic": drug.name,
                    "drug_class": drug.drug_class,
                    "class_label": vocabulary.classes.get(drug.drug_class, drug.drug_class),
                    "targets": list(drug.targets),
                    "category": cat,
                    "category_label": CATEGORY_LABEL[cat],
                    "colour": CATEGORY_COLOUR[cat],
                    "refractory": drug.name in refractory,
                }
            )
        summary = ", ".join(
            f"{CATEGORY_LABEL[c]}{' (R)' if any(x['refractory'] for x in agents if x['category'] == c) else ''}"
            for c in dict.fromkeys(x["category"] for x in agents)
        )
        out.append(
            {
                "index": n,
                "regimen": line.regimen,
                "agents": agents,
                "refractory_to": [x["generic"] for x in agents if x["refractory"]],
                "autologous_transplant": line.autologous_transplant,
                "bcma_directed": any("BCMA" in x["targets"] for x in agents),
                "class_summary": summary,
            }
        )
    return out


def _yes_no(value: bool | None) -> str:
    return "unknown" if value is None else ("yes" if value else "no")


def _case_inputs(ev: Evaluation) -> list[dict[str, Any]]:
    """The profile's clinical inputs (other than the prior lines) as label/value rows; unknown is said."""
    p = ev.profile
    labs = p.labs
    rows: list[tuple[str, Any]] = [
        ("Age", f"{p.age} years"),
        ("ECOG performance status", str(p.ecog)),
        ("Frailty", p.frailty),
        (
            "Creatinine clearance",
            None if p.creatinine_clearance_ml_min is None else f"{_num(p.creatinine_clearance_ml_min)} mL/min",
        ),
        ("Dialysis", _yes_no(p.dialysis)),
        (
            "Cytogenetics (FISH)",
            None
            if p.cytogenetics is None
            else (", ".join(p.cytogenetics) if p.cytogenetics else "tested, none of the listed abnormalities"),
        ),
        ("Extramedullary disease", _yes_no(p.extramedullary_disease)),
        ("Rapidly progressive disease", _yes_no(p.rapidly_progressive)),
        ("Access to a CAR-T centre", _yes_no(p.car_t_center_access)),
        ("Organ function adequate for CAR-T", _yes_no(p.organ_function_adequate)),
        ("Active serious infection", _yes_no(p.active_serious_infection)),
        ("Prior allogeneic transplant", _yes_no(p.prior_allogeneic_transplant)),
    ]
    for field, label, unit in (
        ("soluble_bcma_ng_ml", "Soluble BCMA", "ng/mL"),
        ("ferritin_ng_ml", "Ferritin", "ng/mL"),
        ("crp_mg_l", "CRP", "mg/L"),
    ):
        value = getattr(labs, field) if labs is not None else None
        rows.append((label, None if value is None else f"{_num(value)} {unit}"))
    return [
        {"label": label, "value": "unknown" if v is None else v, "known": v is not None and v != "unknown"} for label, v in rows
    ]


def _num(value: float) -> str:
    return f"{value:g}" if isinstance(value, float) else str(value)


def _synopsis(ev: Evaluation) -> list[str]:
    """A few words a chairperson reads out first: fitness, lines, refractoriness, prior BCMA."""
    f = {k: v.value for k, v in ev.facts.items()}
    p = ev.profile
    out = [f"{p.age} years", f"ECOG {p.ecog}"]
    if p.frailty:
        out.append(p.frailty)
    n = f["prior_line_count"]
    out.append(f"{n} prior line{'s' if n != 1 else ''}")
    if f["penta_refractory"]:
        out.append("penta-refractory")
    elif f["triple_class_refractory"]:
        out.append("triple-class refractory")
    elif f["triple_class_exposed"]:
        out.append("triple-class exposed")
    elif f["refractory_lenalidomide"]:
        out.append("lenalidomide-refractory")
    if f["bcma_exposed"]:
        out.append("BCMA-refractory" if f["bcma_refractory"] else "BCMA-exposed")
    else:
        out.append("BCMA-naive")
    if f["gprc5d_exposed"]:
        out.append("GPRC5D-exposed")
    if f["high_risk_cytogenetics"]:
        hr = [a for a in (p.cytogenetics or []) if a in ("del(17p)", "t(4;14)", "t(14;16)", "gain(1q)", "amp(1q)")]
        out.append("high-risk cytogenetics: " + ", ".join(hr))
    if p.extramedullary_disease:
        out.append("extramedullary disease")
    if p.rapidly_progressive:
        out.append("rapidly progressive")
    if p.dialysis:
        out.append("on dialysis")
    return out


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


def _case_facts(ev: Evaluation) -> dict[str, list[dict[str, Any]]]:
    """Derived facts for the case summary: the key ones and every one that holds (or is a count,
    or unknown) with how it was derived; then the other ones that do not hold, by name only."""
    names = [n for n in _CASE_FACT_ORDER if n in ev.facts]
    names += [n for n in ev.facts if n not in names and _origin(n) == "derived"]
    shown, absent = [], []
    for name in names:
        fv = ev.facts[name]
        row = {"name": name, "description": FACTS[name].description, "value": fv.value, "explanation": fv.explanation}
        (absent if fv.value is False and name not in _KEY_CASE_FACTS else shown).append(row)
    return {"shown": shown, "absent": absent}


def _origin(name: str) -> str:
    """'profile' for a fact the profile states (one cytogenetic finding included), else 'derived'."""
    spec = FACTS[name]
    if name == "high_risk_cytogenetics":
        return "derived"
    if spec.input_field or name in ("age", "ecog"):
        return "profile"
    return "derived"


def _effect_text(effect, ev: Evaluation, field: str) -> str:
    titles = {o.id: o.title for o in ev.ruleset.options}
    parts = []
    base_top = ev.ranking.top
    if effect.top != base_top:
        parts.append(
            f"top option would be {titles.get(effect.top, 'none')} instead of {titles.get(base_top, 'none')}"
            if effect.top
            else "no option would remain"
        )
    if effect.newly_excluded:
        parts.append("excluded: " + ", ".join(titles[i] for i in effect.newly_excluded))
    if effect.newly_offered:
        parts.append("newly offered: " + ", ".join(titles[i] for i in effect.newly_offered))
    if not parts:
        parts.append("the order of the options would change")
    return f"If {field} were {effect.label}: " + "; ".join(parts) + "."


def build_report(ev: Evaluation, evaluated_at: str | None = None, site=None) -> dict[str, Any]:
    """The report dict, with availability at `site` (a cds.knowledge.site.Site; None: the rule folder's default site)."""
    from cds.knowledge.site import apply_site, default_site

    site = site if site is not None else default_site(ev.ruleset)
    return apply_site(_build_report(ev, evaluated_at), site, ev.ruleset, ev.facts["car_t_center_access"].value)


def _build_report(ev: Evaluation, evaluated_at: str | None = None) -> dict[str, Any]:
    rs = ev.ruleset
    cited: list[str] = []

    def cite(ids) -> None:
        for i in ids:
            if i not in cited:
                cited.append(i)

    options = []
    for o in ev.ranking.options:
        for group in (o.rationale, o.cautions, o.next_steps):
            for r in group:
                cite(r.evidence)
        key = list(dict.fromkeys(e for r in o.rationale for e in r.evidence))
        options.append(
            {
                "id": o.id,
                "rank": o.rank,
                "title": o.title,
                "summary": o.summary,
                "score": o.score,
                # options with the same score: their relative order is the catalogue's, not a clinical preference
                "tied_with": [t.id for t in ev.ranking.options if t.score == o.score and t.id != o.id],
                "why": "; ".join(r.title for r in o.rationale if r.weight > 0) or "eligible; no preference rule applies",
                "rationale": [_reason(r) for r in o.rationale],
                "cautions": [_reason(r) for r in o.cautions],
                "next_steps": [_reason(r) for r in o.next_steps],
                "key_evidence": key,
                "key_studies": [e for e in key if rs.registry.get(e).kind != "statement"],
                "key_statements": [e for e in key if rs.registry.get(e).kind == "statement"],
            }
        )
    excluded = []
    for x in ev.ranking.excluded:
        for r in x.reasons:
            cite(r.evidence)
        excluded.append({"id": x.id, "title": x.title, "reasons": [_reason(r) for r in x.reasons]})

    def unknown(u) -> dict[str, Any]:
        return {
            "field": u.field,
            "description": u.description,
            "changes_top_option": u.changes_top,
            "effects": [
                {
                    "if_value": e.label,
                    "top_option": e.top,
                    "ranking": list(e.order),
                    "newly_excluded": list(e.newly_excluded),
                    "newly_offered": list(e.newly_offered),
                    "text": _effect_text(e, ev, u.field),
                }
                for e in u.effects
            ],
        }

    evidence = {i: _evidence(rs.registry.get(i), ev) for i in cited}
    conflicts = []
    seen_pairs: set[tuple[str, str, str]] = set()
    for i in cited:
        entry = rs.registry.get(i)
        for c in entry.conflicts:
            key = (*tuple(sorted((i, c.with_))), c.measure)
            if key in seen_pairs:
                continue
            seen_pairs.add(key)  # type: ignore[arg-type]
            other = rs.registry.get(c.with_)
            if c.with_ not in evidence:
                evidence[c.with_] = _evidence(other, ev)
            sides = []
            for e in (entry, other):
                figs = [f for f in e.figures if f.measure == c.measure]
                shown = [
                    (f"{f.label}: " if f.label else "") + f.value + (f" ({_qualifier(f)})" if _qualifier(f) else "") for f in figs
                ]
                if not figs and c.measure == "other" and entry.n != other.n and e.n is not None:
                    shown = [f"n={e.n}"]
                sides.append(
                    {
                        "evidence": e.id,
                        "title": e.title,
                        "source_id": rs.registry.source_for(e).id,
                        "source_file": e.source,
                        "location": e.location,
                        "figures": [f.value for f in figs],
                        "shown": shown,
                    }
                )
            measure = MEASURE_LABELS[c.measure]
            if (
                c.measure == "other"
                and entry.n != other.n
                and not any(f.measure == "other" for f in entry.figures + other.figures)
            ):
                measure = "number of patients"
            conflicts.append({"measure": measure, "note": c.note, "sides": sides})

    settings_used = {}
    for rule in rs.rules:
        if rule.id in ev.fired or any(r["rule_id"] == rule.id for x in excluded for r in x["reasons"]):
            from cds.knowledge.ruleset import leaves

            for leaf in leaves(rule.condition):
                if leaf.setting:
                    s = rs.settings[leaf.setting]
                    settings_used[leaf.setting] = {"value": s.value, "unit": s.unit, "why": s.why}

    profile = ev.profile
    return {
        "format": FORMAT_VERSION,
        "patient_id": profile.patient_id,
        "age": profile.age,
        "evaluated_at": evaluation_time(evaluated_at),
        "engine_version": ev.engine_version,
        "ruleset_hash": rs.digest,
        "input_hash": ev.input_hash,
        "disclaimer": DISCLAIMER,
        "synopsis": _synopsis(ev),
        "case_inputs": _case_inputs(ev),
        "case_facts": _case_facts(ev),
        "lines": _lines(ev),
        "drug_categories": [{"id": k, "label": label, "colour": colour} for k, label, colour in CATEGORIES],
        "evidence_columns": [{"key": k, "label": label} for k, label in EVIDENCE_COLUMNS],
        "options": options,
        "excluded": excluded,
        "derived_facts": [
            {
                "name": name,
                "description": FACTS[name].description,
                "value": fv.value,
                "known": fv.known,
                "explanation": fv.explanation,
                "origin": _origin(name),
            }
            for name, fv in ev.facts.items()
        ],
        "unknown_facts_that_matter": [unknown(u) for u in ev.unknown_facts if u.changes_top],
        "unknown_facts_affecting_ranking": [unknown(u) for u in ev.unknown_facts if not u.changes_top],
        "unknown_facts_without_effect": list(ev.unknown_without_effect),
        "unknown_facts_without_effect_described": [
            {"field": f, "description": field_description(f)} for f in ev.unknown_without_effect
        ],
        "fired_rules": sorted(ev.fired),
        "settings_used": settings_used,
        "inputs": profile.model_dump(mode="json"),
        "evidence": evidence,
        "evidence_conflicts": conflicts,
        "sources": [
            {"id": s.id, "file": s.file, "title": s.title, "citation": s.citation}
            for s in sorted(rs.registry.sources.values(), key=lambda s: s.id)
            if any(e["source_file"] == s.file for e in evidence.values())
        ],
    }
