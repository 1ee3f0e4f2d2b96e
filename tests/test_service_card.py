"""The CDS Hooks card built from real reports, checked against the 2.0.1 spec's required fields; the committed OpenAPI document."""

from __future__ import annotations

import json
import re
import uuid
from pathlib import Path

import pytest
from live_server import ROOT

from cds.apps.http.card import SUMMARY_LIMIT, build_card, md
from cds.apps.http.openapi import text as openapi_text

EXAMPLES = sorted((ROOT / "reports" / "examples").glob("*.json"))


def check_card(card: dict) -> None:
    """Every field CDS Hooks 2.0.1 requires of a card, and the shape of each optional one we send."""
    assert isinstance(card["summary"], str) and 0 < len(card["summary"]) < SUMMARY_LIMIT
    assert card["indicator"] in ("info", "warning", "critical")
    assert isinstance(card["source"], dict) and isinstance(card["source"]["label"], str) and card["source"]["label"]
    uuid.UUID(card["uuid"])
    assert isinstance(card.get("detail", ""), str)
    for link in card.get("links", []):
        assert link["label"] and link["type"] in ("absolute", "smart") and re.match(r"https?://", link["url"])
    if "suggestions" in card:
        assert card.get("selectionBehavior") in ("at-most-one", "any")
    for reason in card.get("overrideReasons", []):
        assert reason["display"]


def card_for(report: dict) -> dict:
    return build_card(report, card_uuid=str(uuid.uuid4()), report_url="http://127.0.0.1:8040/reports/t", version="0.1.0")


@pytest.mark.parametrize("path", EXAMPLES, ids=lambda p: p.stem)
def test_cards_of_the_example_reports(path: Path):
    report = json.loads(path.read_text(encoding="utf-8"))
    card = card_for(report)
    check_card(card)
    top = report["options"][0]
    assert card["summary"].startswith("R/R MM: ") and card["summary"].endswith("(cds)") and "ranked 1st" in card["summary"]
    assert card["source"]["label"] == f"cds 0.1.0, rules {report['ruleset_hash'][:12]}"
    expected = (
        "warning"
        if report["unknown_facts_that_matter"] or top["availability"]["status"] in ("unavailable", "not_reimbursed")
        else "info"
    )
    assert card["indicator"] == expected
    for option in report["options"][:3]:
        assert md(option["title"]) in card["detail"]
    assert "Decision support, not decision making" in card["detail"]
    for fact in report["unknown_facts_that_matter"]:
        assert md(fact["description"]) in card["detail"]


def test_warning_when_rank_1_is_unavailable_at_the_site():
    report = json.loads(EXAMPLES[0].read_text(encoding="utf-8"))
    report["unknown_facts_that_matter"] = []
    report["options"][0]["availability"] = {**report["options"][0]["availability"], "status": "available"}
    assert card_for(report)["indicator"] == "info"
    report["options"][0]["availability"]["status"] = "unavailable"
    assert card_for(report)["indicator"] == "warning"


def test_chart_strings_are_escaped_for_markdown():
    report = json.loads(EXAMPLES[0].read_text(encoding="utf-8"))
    report["patient_id"] = "[click](javascript:alert(1)) <img src=x> **bold** # head"
    detail = card_for(report)["detail"]
    for raw in ("[click](", "<img", "**bold**", "# head"):
        assert not re.search(r"(?<!\\)" + re.escape(raw), detail), raw  # only ever preceded by a backslash
    assert r"\[click\]\(javascript:alert\(1\)\) \<img src=x\> \*\*bold\*\* \# head" in detail


def test_summary_stays_under_the_limit_for_long_titles():
    report = json.loads(EXAMPLES[0].read_text(encoding="utf-8"))
    report["options"][0]["title"] = "A" * 300
    card = card_for(report)
    check_card(card)


def test_openapi_document_is_committed_and_current():
    committed = ROOT / "schemas" / "openapi.json"
    assert committed.read_text(encoding="utf-8") == openapi_text(), "stale: regenerate with python -m cds.apps.http.openapi"
    doc = json.loads(committed.read_text(encoding="utf-8"))
    for path in (
        "/healthz",
        "/api/evaluate",
        "/cds-services",
        "/cds-services/mm-treatment-sequencing",
        "/cds-services/mm-treatment-sequencing/feedback",
        "/reports/{token}",
    ):
        assert path in doc["paths"]
