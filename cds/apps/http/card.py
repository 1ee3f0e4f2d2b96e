"""The CDS Hooks card for one evaluation, built from the report (nothing clinical is decided here).

One small module on purpose: the card reads only `card_data_of` the report (top 3, cautions of
rank 1, facts to obtain, the stamp), which `cds.build_card_data` builds from the evaluation, so a
patient-view never builds the report (its JSON and typed model were about 45% of a worker's time
per call); the full report is built again when its link is opened.

The card: `summary` (< 140 characters) naming rank 1 (and rank 2 when it fits), `indicator`
`warning` when a fact that could change the top option is unknown or rank 1 is not
available/reimbursed at the site, else `info`; `detail` in GitHub-flavoured Markdown (top 3
with the net why, the cautions of rank 1, the facts to obtain, the disclaimer); `links` to
the full report served by this service. Every string is escaped for Markdown.
"""

from __future__ import annotations

import re
from typing import Any

from cds.api import option_heading, short_title

SUMMARY_LIMIT = 140  # CDS Hooks 2.0.1: "<140 characters"
TOP = 3
ORDINALS = {1: "1st", 2: "2nd", 3: "3rd"}
UNAVAILABLE = {"unavailable", "not_reimbursed"}
TOPIC = {"system": "urn:cds-myeloma:topic", "code": "mm-treatment-sequencing", "display": "Myeloma treatment sequencing"}

_MD_SPECIAL = re.compile(r"([\\`*_{}\[\]()<>#+\-.!|~&])")


# What the card (and the case list of the web pages) reads of a report: these keys, at these paths, of the
# report JSON. `cds.build_card_data` builds them from the evaluation without building the report (the
# patient-view's path); `card_data_of` projects them out of a report's JSON. The two are the same dict (tested).
STAMP_KEYS = ("patient_id", "evaluated_at", "engine_version", "ruleset_hash", "input_hash", "site_name", "site_hash")


def card_data_of(report: dict[str, Any]) -> dict[str, Any]:
    """The part of a report's JSON the card reads: the same dict `cds.build_card_data` builds from its evaluation."""
    return {
        **{key: report[key] for key in STAMP_KEYS},
        "disclaimer": report["disclaimer"],
        "synopsis": report["synopsis"],
        "options": [
            {
                **{key: o[key] for key in ("id", "rank", "title", "tied_with", "why", "availability")},
                "cautions": [{"rule_id": c["rule_id"], "title": c["title"]} for c in o["cautions"]],
                "products_supported": o.get("products_supported"),  # absent from a stored report before 2.5
            }
            for o in report["options"][:TOP]
        ],
        "unknown_facts_that_matter": [
            {
                **{key: u[key] for key in ("field", "description", "changes_top_option")},
                "effects": [{"text": e["text"]} for e in u["effects"]],
            }
            for u in report["unknown_facts_that_matter"]
        ],
    }


def md(value: Any) -> str:
    """Text safe inside Markdown: one line, every Markdown (and HTML) syntax character backslash-escaped."""
    return _MD_SPECIAL.sub(r"\\\1", " ".join(str(value).split()))


def summary_line(options: list[dict[str, Any]]) -> str:
    if not options:
        return "R/R MM: no option ranked for this patient; see the report (cds)"
    first = f"R/R MM: {short_title(options[0]['title'])} ranked 1st"
    if len(options) > 1:
        both = f"{first}; {short_title(options[1]['title'])} 2nd (cds)"
        if len(both) < SUMMARY_LIMIT:
            return both
    line = f"{first} (cds)"
    if len(line) >= SUMMARY_LIMIT:  # a very long title: cut it, keep the rank and the tag
        room = SUMMARY_LIMIT - len("R/R MM:  ranked 1st (cds)") - 2
        line = f"R/R MM: {short_title(options[0]['title'])[:room]}… ranked 1st (cds)"
    return line


def _status(option: dict[str, Any]) -> str | None:
    return (option.get("availability") or {}).get("status")


def indicator(report: dict[str, Any]) -> str:
    options = report["options"]
    if not options or report["unknown_facts_that_matter"] or _status(options[0]) in UNAVAILABLE:
        return "warning"
    return "info"


def detail(report: dict[str, Any]) -> str:
    options = report["options"][:TOP]
    out = [f"**{md(report['patient_id'])}**: {md(' · '.join(report['synopsis']))}", ""]
    if options:
        out.append("**Ranked options**")
        out.append("")
        for o in options:
            tie = " (tie: catalogue order)" if o.get("tied_with") else ""
            # a stored card of an earlier report format has no products_supported: its title as it was
            heading = option_heading(o["title"], o.get("products_supported"))
            out.append(f"{o['rank']}. **{md(heading)}**{md(tie)}: {md(o['why'])}")
            availability = o.get("availability") or {}
            if availability.get("status") in UNAVAILABLE | {"referral"} and availability.get("marker"):
                out.append(f"   *{md(availability['marker'])}*")
        out.append("")
        cautions = options[0].get("cautions") or []
        if cautions:
            out.append(f"**Cautions for {md(short_title(options[0]['title']))}**")
            out.append("")
            out.extend(f"- {md(c['title'])}" for c in cautions)
            out.append("")
    else:
        out += ["**No option is ranked**: every option is excluded; the report lists the reasons.", ""]
    facts = report["unknown_facts_that_matter"]
    if facts:
        out.append("**Facts to obtain** (each could change the top option)")
        out.append("")
        for f in facts:
            effects = "; ".join(e["text"] for e in f["effects"])
            out.append(f"- {md(f['description'])}: {md(effects)}")
        out.append("")
    out.append(f"*{md(report['disclaimer'])}*")
    return "\n".join(out) + "\n"


def build_card(report: dict[str, Any], *, card_uuid: str, report_url: str, version: str) -> dict[str, Any]:
    """The card of a report's JSON, or of its `card_data` (the same card: it reads nothing else)."""
    return {
        "uuid": card_uuid,
        "summary": summary_line(report["options"]),
        "indicator": indicator(report),
        "detail": detail(report),
        "source": {"label": f"cds {version}, rules {report['ruleset_hash'][:12]}", "url": report_url, "topic": TOPIC},
        "links": [{"label": "Full report (ranked options, evidence, exclusions)", "url": report_url, "type": "absolute"}],
    }
