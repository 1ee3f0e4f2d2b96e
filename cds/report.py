"""The report: one plain data structure, rendered as JSON or through Jinja templates.

`build_report` turns an Evaluation into a JSON-ready dict (the JSON output is
exactly this dict); the Markdown and HTML templates in ``reports/templates``
only loop over and branch on it. Autoescaping is on for both; the Markdown
template additionally escapes Markdown syntax in anything that comes from the
profile (`md` filter).
"""

from __future__ import annotations

import datetime as _dt
import json
import os
import re
from typing import Any

from jinja2 import Environment, FileSystemLoader, StrictUndefined, select_autoescape
from markupsafe import Markup, escape

from .evaluate import Evaluation
from .evidence import MEASURE_LABELS, EvidenceEntry
from .facts import FACTS
from .ranking import Reason
from .resources import templates_dir

FORMAT_VERSION = "cds-evaluation/1"
DISCLAIMER = (
    "Decision support, not decision making: this report supports and does not replace the clinical "
    "judgement of the treating haematologist and the tumor board. Check every recommendation against "
    "its inputs, rules and sources."
)


def evaluation_time(fixed: str | None = None) -> str:
    """ISO-8601 UTC time of the evaluation; fixed by the argument or SOURCE_DATE_EPOCH for reproducible output."""
    if fixed:
        return fixed
    epoch = os.environ.get("SOURCE_DATE_EPOCH")
    if epoch and epoch.isdigit():
        moment = _dt.datetime.fromtimestamp(int(epoch), tz=_dt.timezone.utc)
    else:
        moment = _dt.datetime.now(tz=_dt.timezone.utc)
    return moment.replace(microsecond=0).isoformat().replace("+00:00", "Z")


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


def _evidence(entry: EvidenceEntry, ev: Evaluation) -> dict[str, Any]:
    src = ev.ruleset.registry.source_for(entry)
    out: dict[str, Any] = {
        "id": entry.id,
        "kind": entry.kind,
        "title": entry.title,
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
    out["conflicts"] = [{"with": c.with_, "measure": c.measure, "note": c.note} for c in entry.conflicts]
    return out


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


def build_report(ev: Evaluation, evaluated_at: str | None = None) -> dict[str, Any]:
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
        options.append(
            {
                "id": o.id,
                "rank": o.rank,
                "title": o.title,
                "summary": o.summary,
                "score": o.score,
                "why": "; ".join(r.title for r in o.rationale if r.weight > 0) or "eligible; no preference rule applies",
                "rationale": [_reason(r) for r in o.rationale],
                "cautions": [_reason(r) for r in o.cautions],
                "next_steps": [_reason(r) for r in o.next_steps],
                "key_evidence": list(dict.fromkeys(e for r in o.rationale for e in r.evidence)),
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
            key = tuple(sorted((i, c.with_))) + (c.measure,)
            if key in seen_pairs:
                continue
            seen_pairs.add(key)  # type: ignore[arg-type]
            other = rs.registry.get(c.with_)
            if c.with_ not in evidence:
                evidence[c.with_] = _evidence(other, ev)
            sides = []
            for e in (entry, other):
                vals = [f.value for f in e.figures if f.measure == c.measure]
                sides.append({"evidence": e.id, "source_file": e.source, "location": e.location, "figures": vals})
            conflicts.append({"measure": MEASURE_LABELS[c.measure], "note": c.note, "sides": sides})

    settings_used = {}
    for rule in rs.rules:
        if rule.id in ev.fired or any(r["rule_id"] == rule.id for x in excluded for r in x["reasons"]):
            from .ruleset import leaves

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
        "options": options,
        "excluded": excluded,
        "derived_facts": [
            {
                "name": name,
                "description": FACTS[name].description,
                "value": fv.value,
                "known": fv.known,
                "explanation": fv.explanation,
            }
            for name, fv in ev.facts.items()
        ],
        "unknown_facts_that_matter": [unknown(u) for u in ev.unknown_facts if u.changes_top],
        "unknown_facts_affecting_ranking": [unknown(u) for u in ev.unknown_facts if not u.changes_top],
        "unknown_facts_without_effect": list(ev.unknown_without_effect),
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


def to_json(report: dict[str, Any]) -> str:
    return json.dumps(report, indent=2, ensure_ascii=False) + "\n"


_MD_SPECIAL = re.compile(r"([\\`*_{}\[\]()#+\-.!|~>])")


def _md(value: Any) -> Markup:
    """Escape HTML, then Markdown syntax, in a value that comes from the profile."""
    text = str(escape(str(value)))
    return Markup(_MD_SPECIAL.sub(r"\\\1", text))


def _fmt(value: Any) -> str:
    if value is None:
        return "unknown"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float) and value.is_integer():
        return f"{value:g}"
    return str(value)


_ENV: Environment | None = None


def environment() -> Environment:
    global _ENV
    if _ENV is None:
        env = Environment(
            loader=FileSystemLoader(str(templates_dir())),
            autoescape=select_autoescape(enabled_extensions=("html", "md", "j2"), default_for_string=True, default=True),
            undefined=StrictUndefined,
            trim_blocks=True,
            lstrip_blocks=True,
            keep_trailing_newline=True,
        )
        env.filters["md"] = _md
        env.filters["fmt"] = _fmt
        _ENV = env
    return _ENV


def render(report: dict[str, Any], fmt: str) -> str:
    if fmt == "json":
        return to_json(report)
    template = {"markdown": "report.md", "html": "report.html"}[fmt]
    return environment().get_template(template).render(r=report)
