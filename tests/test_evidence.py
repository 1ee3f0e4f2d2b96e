"""The evidence registry is exactly what the sources say."""

from __future__ import annotations

import pytest
from conftest import load_case, seeds_dir

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
        # an erratum's mark ("[erratum: 12.1 months]") gives the publication's figure: erratum_mark_problems checks it
        marks = [range(*k.span()) for k in re.finditer(r"\[(?:probable )?erratum: [^\]]+\]", rule.rationale)]
        for m in figure.finditer(rule.rationale):
            if any(m.start() in span for span in marks):
                continue
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


# --------------------------------------------------------------------------- errata


def _errata(registry, entry_id, about):
    return [c for c in registry.get(entry_id).errata if c.about == about]


def test_the_sources_errata_are_flagged_and_the_figures_kept_as_printed(ruleset):
    """Issue 12 §B / review M1-M4: the source's words stay; the publication stands beside them."""
    reg = ruleset.registry
    for eid in ("CARTITUDE-4.S001.TABLE2", "CARTITUDE-4.S001.TEXT"):
        assert reg.get(eid).phase == "II"  # as printed
        (phase,) = _errata(reg, eid, "phase")
        assert phase.published == "phase 3" and "N Engl J Med 2023;389:335-347" in phase.reference
    (nct,) = _errata(reg, "CARTITUDE-4.S001.TABLE2", "trial_number")
    assert nct.printed.endswith("NCT03361748") and nct.published == "NCT04181827"
    for eid in ("KARMMA-2A.S001.TABLE1", "KARMMA-2C.S001.TABLE1"):  # KarMMa's number on the KarMMa-2 rows
        (nct,) = _errata(reg, eid, "trial_number")
        assert "NCT03361748" in nct.printed and nct.published.startswith("NCT03601078")
    (pop,) = _errata(reg, "KARMMA-3.S001.TABLE1", "population")
    assert "triple-class refractory" in reg.get("KARMMA-3.S001.TABLE1").population
    assert pop.published.startswith("triple-class exposed") and "N Engl J Med 2023;388:1002-1014" in pop.reference
    for eid in ("KARMMA-1.S001.TABLE1", "KARMMA-1.S001.TEXT"):
        (pop,) = _errata(reg, eid, "population")
        assert pop.published.startswith("triple-class exposed") and "N Engl J Med 2021;384:705-716" in pop.reference
    (mean,) = _errata(reg, "POST-CART-RELAPSE-79.S001.TEXT", "figure")
    assert mean.certain is False and "mean PFS" in mean.printed and mean.published.startswith("median PFS")
    assert mean.value in [f.value for f in reg.get("POST-CART-RELAPSE-79.S001.TEXT").figures]
    (pfs,) = [c for c in reg.get("POLLUX.S000.TABLE1").errata if c.measure == "median_pfs"]
    assert "Leukemia 2020;34:1875-1884" in pfs.reference
    # review R12-01: POLLUX ORR printed 91%, published 92.9% (vs 76.4%)
    for eid in ("POLLUX.S000.TEXT", "POLLUX.S000.TABLE1"):
        (orr,) = [c for c in reg.get(eid).errata if c.measure == "orr"]
        assert "91%" in orr.printed and orr.published.startswith("ORR 92.9%") and "2016;375:1319-1331" in orr.reference
        assert [f.value for f in reg.get(eid).figures if f.measure == "orr"] == ["91%"]  # as printed
    # review R12-04: CARTITUDE-4's 4.5% is ICANS at any grade; 12-month PFS with standard care 48.6%
    for eid in ("CARTITUDE-4.S001.TABLE2", "CARTITUDE-4.S001.TEXT"):
        (neuro,) = [c for c in reg.get(eid).errata if c.measure == "neurotox_grade3plus"]
        assert "4.5%" in neuro.printed and "any grade" in neuro.published and "2023;389:335-347" in neuro.reference
    (rate,) = [c for c in reg.get("CARTITUDE-4.S001.TEXT").errata if c.measure == "pfs_rate"]
    assert (rate.value, rate.published) == ("48.5%", "48.6%")
    # review R12-16: KarMMa-1 CR 35% printed, CR or better 33% published; PFS at 450x10^6 12.2 vs 12.1 months
    for eid in ("KARMMA-1.S001.TEXT", "KARMMA-1.S001.TABLE1"):
        (cr,) = [c for c in reg.get(eid).errata if c.measure == "cr"]
        assert "35%" in cr.printed and "33%" in cr.published and "2021;384:705-716" in cr.reference
    (pfs450,) = [c for c in reg.get("KARMMA-1.S001.TEXT").errata if c.measure == "median_pfs"]
    assert (pfs450.value, pfs450.published) == ("12.2 months", "12.1 months at 450x10^6 CAR-T cells")
    for eid in ("STMT.S001.APPROVAL-IDECEL", "STMT.S001.APPROVAL-CILTACEL"):
        (label,) = _errata(reg, eid, "statement")
        assert "April 2024" in label.published


def test_n_140_vs_128_is_enrolled_vs_treated_not_a_disagreement(ruleset):
    reg = ruleset.registry
    text, table = reg.get("KARMMA-1.S001.TEXT"), reg.get("KARMMA-1.S001.TABLE1")
    assert (text.n, table.n) == (140, 128)
    assert not [c for c in text.conflicts + table.conflicts if c.kind == "sources" and c.about == "n"]
    (n,) = _errata(reg, "KARMMA-1.S001.TEXT", "n")
    assert "140 enrolled, 128 treated" in n.published


def test_karmma2_cohort_2a_population_prefers_the_text(ruleset):
    """Review L5: the table's 'triple-class refractory' against the text's early relapse after ASCT."""
    reg = ruleset.registry
    for a, b in (("KARMMA-2A.S001.TABLE1", "KARMMA-2A.S001.TEXT"), ("KARMMA-2A.S001.TEXT", "KARMMA-2A.S001.TABLE1")):
        (c,) = [c for c in reg.get(a).conflicts if c.kind == "sources" and c.about == "population"]
        assert c.with_ == b and c.preferred == "KARMMA-2A.S001.TEXT"


def test_an_erratum_must_quote_the_source_and_cite_the_publication():
    import pydantic

    from cds.knowledge.evidence import Conflict

    ok = {
        "kind": "erratum",
        "about": "phase",
        "printed": "II",
        "published": "phase 3",
        "reference": "X et al., J 2023;1:1-2",
        "note": "a note",
    }
    Conflict.model_validate(ok)
    for bad in (
        {k: v for k, v in ok.items() if k != "reference"},  # no publication
        {**ok, "with": "CARTITUDE-4.S001.TEXT"},  # an erratum is not against another entry
        {**ok, "about": "figure"},  # a figure needs its measure
        {"with": "A.B", "measure": "orr", "note": "a note", "reference": "X et al., J 2023;1:1-2"},  # sources: no reference
    ):
        with pytest.raises(pydantic.ValidationError):
            Conflict.model_validate(bad)


def test_an_erratum_on_words_the_source_does_not_print_is_caught(ruleset):
    from cds.knowledge.evidence import conflict_problems

    reg = ruleset.registry
    entry = reg.get("CARTITUDE-4.S001.TABLE2")
    changed = [
        c.model_copy(update={"printed": "CARTITUDE-4 NCT04181827 III"}) if c.about == "phase" else c for c in entry.conflicts
    ]
    problems = conflict_problems(entry.model_copy(update={"conflicts": changed}), reg.entries)
    assert problems == ["erratum: printed 'CARTITUDE-4 NCT04181827 III' is not in the entry's quote"]
    # a preference one side states and the other does not
    prefs = [c.model_copy(update={"preferred": entry.id}) for c in entry.conflicts if c.kind == "sources"]
    assert any("prefers neither" in p for p in conflict_problems(entry.model_copy(update={"conflicts": prefs}), reg.entries))


def test_the_report_shows_an_erratum_beside_the_figure_and_in_the_json(evaluator):
    from conftest import load_case

    from cds.api import build_report, render

    report = build_report(evaluator.evaluate(evaluator.parse(load_case("fit_tcr_bcma_naive"))), "2026-01-01T00:00:00Z")
    data = report.to_dict()
    refs = data["evidence"]["CARTITUDE-4.S001.TABLE2"]["conflicts"]
    assert {"kind": "erratum", "about": "phase", "published": "phase 3"}.items() <= next(
        c for c in refs if c["about"] == "phase"
    ).items()
    errata = [c for c in data["evidence_conflicts"] if c["kind"] == "erratum"]
    assert any(c["sides"][0]["evidence"] == "CARTITUDE-4.S001.TABLE2" and c["about"] == "trial_number" for c in errata)
    for fmt in ("markdown", "html"):
        text = render(report, fmt)
        assert "phase II [erratum: phase 3]" in text.replace('<span class="muted">', "").replace("</span>", "").replace(
            ' <span class="erratum-mark">', " "
        ), fmt
        assert "(outside the sources)" in text


# --------------------------------------------------------------------------- evidence levels


def test_every_entry_has_a_level_consistent_with_the_registry(ruleset):
    from cds.knowledge.evidence import LEVEL_LABELS, level_problems

    reg = ruleset.registry
    for entry in reg.entries.values():
        assert entry.level in LEVEL_LABELS
        assert level_problems(entry, reg.source_for(entry)) == [], entry.id


def test_levels_of_the_review_m5_entries(ruleset):
    """Review and interview sentences are not trials; randomized trials are randomized (the sources say so)."""
    reg = ruleset.registry
    expected = {
        "randomized_phase3": ["KARMMA-3.S001.TABLE1", "KARMMA-3.S001.TEXT", "CARTITUDE-4.S001.TABLE2", "CARTITUDE-4.S001.TEXT"],
        "single_arm": ["CARTITUDE-1.S001.TABLE2", "KARMMA-1.S001.TABLE1", "MAJESTEC-1.S000.TEXT", "CARTITUDE-2C.S001.TEXT"],
        "review_statement": [
            "GPRC5D-FCRH5-BSAB.S000.TEXT",
            "DARA-IMID.S000.ABSTRACT",
            "TECLISTAMAB.S000.ABSTRACT",
            "IDECEL.S000.ABSTRACT",
            "BSAB-TOX.S000.TEXT",
            "ANTI-CD38-IRR.S000.TEXT",
            "CART-TOX.S000.TEXT",
            "CART-GRADE3-TOX.S000.TEXT",
            "CART-COST.S000.TEXT",
            "DUAL-TARGET-CART.S000.TEXT",
            "TEC-DARA.S000.TEXT",
        ],
        "expert_statement": ["BSAB-OS.S002.TEXT", "STMT.S002.CART-FITNESS"],
        "subgroup_analysis": ["BSAB-Q4W.S002.TEXT", "CARTITUDE-4-CART-TREATED.S001.TEXT"],
        "indirect_comparison": ["CILTA-VS-IDE-MAIC.S001.TEXT"],
        "translational": ["CARTITUDE-1-PK.S001.TEXT", "FISCHER-IDECEL-27.S001.TEXT"],
        "real_world": ["IDECEL-RW-159.S001.TEXT", "LOCOMMOTION.S002.TEXT", "POST-CART-RELAPSE-79.S001.TEXT"],
        "regulatory": ["STMT.S001.APPROVAL-IDECEL"],
    }
    for level, ids in expected.items():
        assert {i: reg.get(i).level for i in ids} == dict.fromkeys(ids, level)


def test_a_level_the_registry_contradicts_is_caught(ruleset):
    from cds.knowledge.evidence import level_problems

    reg = ruleset.registry

    def problems(entry_id, **changes):
        entry = reg.get(entry_id).model_copy(update=changes)
        return level_problems(entry, reg.source_for(entry))

    # the quote says randomized: not a single-arm trial
    assert "the quote says randomized, so it is not 'single-arm trial'" in problems("KARMMA-3.S001.TABLE1", level="single_arm")
    # CARTITUDE-4 is phase 3 only through its erratum: without it the printed phase II contradicts the level
    assert problems("CARTITUDE-4.S001.TEXT", conflicts=[]) == ["randomized phase 3: the phase is II"]
    # a design the source does not state needs a reference outside the sources
    assert problems("POLLUX.S000.TABLE1", design_reference=None) == [
        "randomized: the quote does not say so (give a design_reference, outside the sources)",
        "randomized phase 3: the phase is not given",
    ]
    assert problems("KARMMA.S000.TABLE1", design_reference=None) == [
        "single-arm trial: the entry gives no phase or n (give a design_reference, outside the sources)"
    ]
    assert problems("STMT.S002.CART-FITNESS", level="review_statement") == [
        "a statement from an interview is an expert statement",
        "a review statement comes from a review; S002 is an interview",
    ]
    assert problems("CILTA-VS-IDE-MAIC.S001.TEXT", level="single_arm")[-1] == (
        "the quote describes a matching-adjusted comparison: the level is indirect_comparison"
    )
    assert problems("IDECEL-RW-159.S001.TABLE1", level="single_arm")[0].startswith("'single-arm trial' is not a level")


def test_the_report_exports_and_prints_each_entrys_level(evaluator):
    from conftest import load_case

    from cds.api import build_report, render, summarize

    report = build_report(evaluator.evaluate(evaluator.parse(load_case("fit_tcr_bcma_naive"))), "2026-01-01T00:00:00Z")
    data = report.to_dict()
    assert data["evidence"]["KARMMA-3.S001.TEXT"]["level"] == "randomized_phase3"
    assert data["evidence"]["KARMMA-3.S001.TEXT"]["level_label"] == "randomized phase 3"
    for top in summarize(report).options:
        if top.key_figure is not None:
            entry = report.evidence[top.key_figure.evidence_id]
            assert top.key_figure.level.startswith(entry.level_label)
            # review R12-12: a level resting on a phase erratum says what the cited row prints
            if any(c.kind == "erratum" and c.about == "phase" for c in entry.conflicts):
                assert top.key_figure.level.endswith(f"[erratum: the source prints phase {entry.phase}]")
    early = build_report(evaluator.evaluate(evaluator.parse(load_case("first_relapse_len_refractory"))), "2026-01-01T00:00:00Z")
    levels = [t.key_figure.level for t in summarize(early).options if t.key_figure is not None]
    assert "randomized phase 3 [erratum: the source prints phase II]" in levels  # CARTITUDE-4, S001 Table 2
    md = render(report, "markdown")
    assert "**KarMMa-3** ide-cel, phase III; level: randomized phase 3 |" in md
    assert "level: trial)" not in md  # page 1 no longer calls a review sentence a trial (review M5)


def test_cell_doses_read_10e6_outside_the_quote(ruleset):
    # issue 12 section B: '450x106' in the sources is 450x10^6 cells; the quote keeps the source's text
    from cds.knowledge.evidence import display_cell_dose

    assert display_cell_dose("final target dose 450x106 CAR-T cells") == "final target dose 450x10^6 CAR-T cells"
    assert display_cell_dose("25x106 to 150x106 cells") == "25x10^6 to 150x10^6 cells"
    assert display_cell_dose("1065 days, x1060") == "1065 days, x1060"
    entry = ruleset.registry.entries["KARMMA-1.S001.TEXT"]
    assert "450x106" in entry.quote
    for fig in entry.figures:
        assert "x106" not in fig.display_measure() and "x106" not in fig.display_value()
    for eid, e in ruleset.registry.entries.items():
        for text in (e.note or "", e.population or "", *(f.arm or "" for f in e.figures)):
            stripped = text.replace("printed as '1x106", "").replace("prints the dose '450x106'", "")
            assert display_cell_dose(stripped) == stripped, (eid, text)  # our own words say 10^6


# --------------------------------------------------------------------------- errata restated in rule texts


def test_a_figure_a_rule_restates_carries_its_erratum_mark(ruleset):
    """Issue 12 B, review CR-2: where a rationale restates a figure whose cited evidence row carries an erratum,
    the mark stands beside it (the figure as printed): PROD-CART-002's 12.2 months (KarMMa-1 at 450x10^6,
    published 12.1), PROD-REG-002 / PROD-CART-003's 48.5% (CARTITUDE-4 standard care, published 48.6%), POLLUX's
    ORR 91% (published 92.9%), and the probable 'mean' PFS of 3.5 months after CAR-T."""
    from cds.knowledge.validate import erratum_mark_problems

    rules = (*ruleset.rules, *ruleset.retired)
    assert erratum_mark_problems(rules, ruleset.registry) == []
    text = {r.id: r.rationale for r in rules}
    assert "median PFS 12.2 months [erratum: 12.1 months] at the final target dose" in text["PROD-CART-002"]
    for rid in ("PROD-REG-002", "PROD-CART-003"):
        assert "75.9% vs 48.5% [erratum: 48.6%]" in text[rid]
    for rid in ("EARLY-CD38-001", "EARLY-CD38-004", "PLAN-SLAM-001"):
        assert "ORR 91% [erratum: " in text[rid]
    for rid in ("PBCMA-TCE-001", "PLAN-CART-001"):
        assert "mean PFS of 3.5 months [probable erratum: median PFS 3.5 months]" in text[rid]


@pytest.mark.parametrize(
    "old, new, expected",
    [
        (
            "12.2 months [erratum: 12.1 months]",
            "12.2 months",
            "'12.2 months' is a figure KARMMA-1.S001.TEXT carries an erratum for",
        ),
        ("12.2 months [erratum: 12.1 months]", "12.2 months [probable erratum: 12.1 months]", "followed by '[erratum: ...]'"),
        ("12.2 months [erratum: 12.1 months]", "12.2 months [erratum: see the evidence]", "giving the published figure"),
    ],
)
def test_a_restated_erratum_figure_without_its_mark_is_a_problem(ruleset, old, new, expected):
    import dataclasses

    from cds.knowledge.validate import erratum_mark_problems

    rule = ruleset.rule("PROD-CART-002")
    assert old in rule.rationale
    fake = dataclasses.replace(rule, rationale=rule.rationale.replace(old, new))
    (problem,) = erratum_mark_problems([fake], ruleset.registry)
    assert problem.startswith("products.yaml [PROD-CART-002] rationale: ") and expected in problem, problem


def test_the_report_shows_the_erratum_mark_beside_a_restated_figure(evaluator):
    """The rule text is the report's: the mark reaches the JSON, Markdown and HTML where the rule fires."""
    from cds.api import build_report, render

    report = build_report(evaluator.evaluate(evaluator.parse(load_case("first_relapse_len_refractory"))), "2026-01-01T00:00:00Z")
    car = next(o for o in report.options if o.id == "bcma_car_t")
    (reason,) = [c for c in car.cautions if c.rule_id == "PROD-CART-003"]
    assert "48.5% [erratum: 48.6%]" in reason.text
    for fmt in ("markdown", "html", "json"):
        assert "48.5% [erratum: 48.6%]" in render(report, fmt), fmt


def test_cartitude2_cohort_c_neurotoxicity_carries_its_probable_erratum():
    """Clinical review CR-18: S001's 'neurotoxicity 15%' stays as printed; the entry names the publication's ICANS figures."""
    from pathlib import Path

    import yaml

    entries = yaml.safe_load((Path(__file__).resolve().parents[1] / "rules" / "evidence" / "car_t.yaml").read_text())
    entry = next(e for e in entries["entries"] if e["id"] == "CARTITUDE-2C.S001.TABLE2")
    assert {"measure": "neurotox_grade3plus", "value": "15%"} in entry["figures"]
    erratum = next(c for c in entry["conflicts"] if c.get("kind") == "erratum" and c.get("measure") == "neurotox_grade3plus")
    assert erratum["printed"] in entry["quote"] and erratum["certain"] is False
    assert "grade 3-4 in 2 (10%)" in erratum["published"] and "Blood 2023;141:219-230" in erratum["reference"]
