"""The evidence registry is exactly what the sources say."""

from __future__ import annotations

from conftest import seeds_dir

from cds.knowledge.evidence import verify_against_sources


def test_seeds_are_present():
    # Not a skip: without the sources nothing below would be checked.
    assert seeds_dir().is_dir(), f"source documents not found at {seeds_dir()} (set CDS_SEEDS_DIR)"


def test_every_quote_and_figure_is_verbatim_in_its_source(ruleset):
    problems = verify_against_sources(ruleset.registry, seeds_dir())
    assert problems == []


def test_every_source_document_is_registered(ruleset):
    files = sorted(p.name for p in seeds_dir().glob("*.txt"))
    assert sorted(ruleset.registry.sources) == files


def test_known_disagreement_cartitude1_pfs_is_kept_both_ways(ruleset):
    reg = ruleset.registry
    s000 = reg.get("CARTITUDE-1.S000.TABLE1")
    s001 = reg.get("CARTITUDE-1.S001.TABLE2")
    assert [f.value for f in s000.figures if f.measure == "median_pfs"] == ["Not reached"]
    assert [f.value for f in s001.figures if f.measure == "median_pfs"] == ["34.9m"]
    assert any(c.with_ == s001.id and c.measure == "median_pfs" for c in s000.conflicts)
    assert any(c.with_ == s000.id and c.measure == "median_pfs" for c in s001.conflicts)


def test_a_tampered_quote_is_caught(ruleset, tmp_path):
    import dataclasses

    reg = ruleset.registry
    entry = reg.get("STMT.S002.CHEMO")
    bad = entry.model_copy(update={"quote": entry.quote.replace("not very effective", "very effective")})
    tampered = dataclasses.replace(reg, entries={**reg.entries, entry.id: bad})
    problems = verify_against_sources(tampered, seeds_dir())
    assert any("STMT.S002.CHEMO" in p and "quote" in p for p in problems)


def test_a_figure_not_in_its_quote_is_caught(ruleset):
    import dataclasses

    reg = ruleset.registry
    entry = reg.get("MAJESTEC-1.S000.TABLE1")
    figs = [f.model_copy(update={"value": "64%"}) if f.measure == "orr" else f for f in entry.figures]
    tampered = dataclasses.replace(reg, entries={**reg.entries, entry.id: entry.model_copy(update={"figures": figs})})
    problems = verify_against_sources(tampered, seeds_dir())
    assert any("MAJESTEC-1.S000.TABLE1" in p and "64" in p for p in problems)


def figure_problems(rules, registry) -> list[str]:
    """Figures ('ORR 60%', '9.1 months') in rule texts that none of the rule's cited entries contains."""
    import re

    from cds.knowledge.evidence import normalize_text

    figure = re.compile(r"(\d+(?:\.\d+)?)\s*(?:%|percent\b|months?\b|m\b|-month\b|years?\b|-year\b)")
    problems = []
    for rule in rules:
        pool = set()
        for cid in rule.cites:
            entry = registry.get(cid)
            text = normalize_text(entry.quote) + " " + " ".join(f.value for f in entry.figures)
            pool |= set(re.findall(r"\d+(?:\.\d+)?", text))
        for m in figure.finditer(rule.rationale):
            if m.group(1) not in pool:
                problems.append(f"{rule.id}: {m.group(0)!r} is in none of {', '.join(rule.cites)}")
    return problems


def test_every_figure_in_a_rule_text_is_in_its_cited_evidence(ruleset):
    """A figure a report prints in a rule's text must come from the registry."""
    assert figure_problems((*ruleset.rules, *ruleset.retired), ruleset.registry) == []


def test_the_figure_check_catches_an_invented_figure(ruleset):
    import dataclasses

    rule = ruleset.rule("CAUT-CART-007")
    fake = dataclasses.replace(rule, rationale=rule.rationale + " Median PFS 61.3 months.")
    assert figure_problems([fake], ruleset.registry) == ["CAUT-CART-007: '61.3 months' is in none of " + ", ".join(rule.cites)]
