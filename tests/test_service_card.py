"""The CDS Hooks card built from real reports, checked against the 2.0.1 spec's required fields; the committed OpenAPI document."""

from __future__ import annotations

import json
import re
import uuid
from pathlib import Path

import pytest
from live_server import ROOT

import schemas
from cds.api import option_heading
from cds.apps.http.card import SUMMARY_LIMIT, build_card, md
from cds.apps.http.openapi import text as openapi_text

EXAMPLES = sorted((ROOT / "reports" / "examples").glob("*.json"))
EXAMPLE_PROFILES = sorted((ROOT / "patient_profiles").glob("*.json"))


def check_card(card: dict) -> None:
    """Every field CDS Hooks 2.0.1 requires of a card, and the shape of each optional one we send."""
    schemas.validate_component("Card", card)  # the shape schemas/openapi.json documents
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
        assert md(option_heading(option["title"], option["products_supported"])) in card["detail"]
    assert "Decision support, not decision making" in card["detail"]
    for fact in report["unknown_facts_that_matter"]:
        assert md(fact["description"]) in card["detail"]


FHIR_CASES = sorted(p for p in (ROOT / "tests" / "fhir" / "cases").glob("*.json") if not p.name.endswith(".expected.json"))
SITES = [None, ROOT / "tests" / "data" / "site_no_cart.yaml"]


@pytest.mark.parametrize("site", SITES, ids=["default site", "site without CAR-T"])
@pytest.mark.parametrize("case", [*FHIR_CASES, *EXAMPLE_PROFILES], ids=lambda p: p.stem)
def test_the_card_from_the_typed_report_is_the_card_of_its_json(case: Path, site: Path | None):
    """A patient-view builds its card from `cds.build_card_data` of the evaluation, never the report: the same
    dict as the report JSON's part the card reads (`card_data_of`), hence the same card (and stored summary)."""
    import cds
    from cds.apps.http.card import card_data_of
    from cds.apps.http.hooks import bundle_from_prefetch, prefetch_for
    from cds.interop.fhir import NoMyelomaDiagnosis

    data = json.loads(case.read_text(encoding="utf-8"))
    if data.get("resourceType") == "Bundle":
        data = bundle_from_prefetch(prefetch_for(data))
    try:
        evaluation = cds.evaluate(data, evaluated_at="2026-03-01T09:00:00Z")
    except NoMyelomaDiagnosis:
        pytest.skip("no myeloma diagnosis: no card")
    at_site = cds.load_site(site, evaluation.ruleset) if site else None
    full = cds.build_report(evaluation, None, at_site).to_dict()
    light = cds.build_card_data(evaluation, None, at_site)
    assert json.dumps(light) == json.dumps(card_data_of(full))  # same keys, same order, same values
    same = {"card_uuid": "00000000-0000-4000-8000-000000000000", "report_url": "http://x/reports/t", "version": "0.1.0"}
    assert build_card(light, **same) == build_card(full, **same)


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


def test_a_report_under_another_rule_set_is_gone_unless_its_json_was_stored():
    """GET /reports of an evaluation made under other rules: a stored report JSON is still served as stored;
    a CDS Hooks card stored only its part of the report, so nothing can be served (410), in any format."""
    from cds.apps.http.work import WorkerState

    state = WorkerState(None, {})
    profile = (EXAMPLE_PROFILES[0]).read_text(encoding="utf-8")
    stored = {
        "output_json": None,
        "profile_json": profile,
        "evaluated_at": "2026-03-01T09:00:00Z",
        "ruleset_hash": "0" * 64,
        "site_hash": (state.ready_info()["default_site"] or {}).get("hash"),
    }
    for fmt in ("json", "html"):
        kind, message = state.handle({"kind": "report", "format": fmt, "stored": stored})
        assert kind == "gone" and "another rule set" in message and "still available" not in message
    kept = {**stored, "output_json": '{"schema_version":"2.4","x":[1.5e-07]}'}
    assert state.handle({"kind": "report", "format": "json", "stored": kept}) == (
        "ok",
        '{\n  "schema_version": "2.4",\n  "x": [\n    1.5e-07\n  ]\n}\n',
    )
    kind, message = state.handle({"kind": "report", "format": "html", "stored": kept})
    assert kind == "gone" and "still available (?format=json)" in message
    same = {**stored, "ruleset_hash": state.evaluator.ruleset.digest}  # the same rules: built again
    kind, text = state.handle({"kind": "report", "format": "json", "stored": same})
    assert kind == "ok" and json.loads(text)["evaluated_at"] == "2026-03-01T09:00:00Z"


def test_the_card_names_only_the_product_the_evidence_supports_at_one_prior_line():
    """R12-08: at 1 prior line (lenalidomide-refractory) the card's CAR-T line names cilta-cel as the only product
    with trial evidence (PROD-CART-003's restricts_products), not the catalogue title's 'cilta-cel, ide-cel'; at 2
    prior lines, triple-class exposed (KarMMa-3's population), both products are named."""
    import cds

    def detail_of(case: str) -> str:
        evaluation = cds.evaluate(
            json.loads((ROOT / "patient_profiles" / f"{case}.json").read_text()), evaluated_at="2026-03-01T09:00:00Z"
        )
        data = cds.build_card_data(evaluation)
        return card_for(data)["detail"]

    early = detail_of("first_relapse_len_refractory")
    assert md("BCMA-directed CAR-T cell therapy (cilta-cel: the only product with trial evidence here") in early
    assert md("cilta-cel, ide-cel") not in early
    assert md("BCMA-directed CAR-T cell therapy (cilta-cel, ide-cel)") in detail_of("karmma3_two_lines_tce")
