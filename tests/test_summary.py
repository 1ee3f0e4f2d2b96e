"""Page 1: the summary a tumor board decides from (cds.report.summary), in HTML and Markdown."""

from __future__ import annotations

import pytest
from conftest import PROFILES, case_names, load_case

from cds.api import build_report, render, summarize
from cds.report.model import NO_PREFERENCE, why_text
from cds.report.summary import TOP_OPTIONS

FIXED = "2026-01-01T00:00:00Z"


def report_of(evaluator, name, **changes):
    return build_report(evaluator.evaluate(evaluator.parse({**load_case(name), **changes})), FIXED)


def test_top_options_are_three_and_ties_with_the_third_are_named(evaluator):
    report = report_of(evaluator, "prior_belantamab_cart_candidate")
    s = summarize(report)
    third = report.options[TOP_OPTIONS - 1]
    assert [o.id for o in s.options] == [o.id for o in report.options[:TOP_OPTIONS]]
    assert [t.id for t in s.tied_with_third] == [o.id for o in report.options[TOP_OPTIONS:] if o.score == third.score]
    assert s.ranked_count == len(report.options)
    assert any(o.tied for o in s.options)


@pytest.mark.parametrize("case", ["fitness_ecog2_age76_fit", "eloquent3_first_relapse", "after_cart_bsab_talq_trial_first"])
def test_page1_names_the_options_tied_with_the_third(evaluator, case):
    """Issue 12 B / review CR-12: an option beyond the top 3 with the third's score is named on page 1 (HTML,
    Markdown, terminal), with the score and that their order is the catalogue's, not hidden in 'N more ranked
    options' by a cut that picked among equals by catalogue order; the count says only the others."""
    from cds.apps.terminal import summary_lines

    report = report_of(evaluator, case)
    s = summarize(report)
    third = report.options[TOP_OPTIONS - 1]
    tied = [o for o in report.options[TOP_OPTIONS:] if o.score == third.score]
    assert tied and [t.id for t in s.tied_with_third] == [o.id for o in tied]
    line = f"Tied with rank 3 at score {third.score} (in catalogue order, not a clinical preference): "
    names = ", ".join(f"{t.short_title} (rank {t.rank})" for t in s.tied_with_third)
    terminal = "\n".join(t.plain for t in summary_lines(s, "x.json"))
    for page1 in (*_page1(report), terminal):
        assert line + names in " ".join(page1.split()), case
    rest = len(report.options) - TOP_OPTIONS - len(tied)
    html = _page1(report)[0]
    assert (f"{rest} more ranked option" in html) == (rest > 0)


def test_net_why_says_what_lowered_the_score(evaluator):
    report = report_of(evaluator, "penta_refractory_after_teclistamab")
    s = summarize(report)
    for option, top in zip(report.options, s.options):
        lowered = [r for r in option.rationale if r.weight < 0]
        assert [r.rule_id for r in top.lowered] == [r.rule_id for r in lowered]
        for r in lowered:
            assert f"\u2212{-r.weight} {r.title}" in top.why
        assert top.score == sum(r.weight for r in option.rationale)
    assert any(t.lowered for t in s.options), "this case has a deprefer rule among its top options"
    html = render(report, "html")
    page1 = html[: html.index('class="appendix"')]
    assert '<span class="lowered">lowered by \u2212' in page1
    assert "; lowered by **\u2212" in render(report, "markdown")


def test_ranked_table_why_shows_what_raised_and_what_lowered_every_score(evaluator):
    """The ranked table's and each option's "Why" (report.options[].why) name every weighted rule with its
    weight, the lowered ones after 'lowered by'; 'no preference rule applies' only when none fired."""
    lowered_seen = 0
    for name in case_names():
        report = report_of(evaluator, name)
        for o in report.options:
            weighted = [r for r in o.rationale if r.weight]
            for r in weighted:
                assert (f"+{r.weight} {r.title}" if r.weight > 0 else f"\u2212{-r.weight} {r.title}") in o.why, (name, o.id)
            lowered = [r for r in weighted if r.weight < 0]
            lowered_seen += bool(lowered)
            assert ("lowered by \u2212" in o.why) == bool(lowered), (name, o.id, o.why)
            assert (o.why == NO_PREFERENCE) == (not weighted), (name, o.id, o.why)
            assert o.score == sum(r.weight for r in weighted)
        if any(r.weight < 0 for o in report.options for r in o.rationale):
            md = render(report, "markdown")
            assert "lowered by \u2212" in md[md.index("| Rank | Option | Why | Score |") :]
    assert lowered_seen, "some case has a lowered score"


def test_a_score_only_lowered_never_says_no_preference_rule_applies():
    assert why_text([(-30, "A")]) == "lowered by \u221230 A"
    assert why_text([(40, "B"), (-30, "A")]) == "+40 B; lowered by \u221230 A"
    assert why_text([]) == NO_PREFERENCE
    assert why_text([(0, "met requirement")]) == NO_PREFERENCE


def test_why_lists_reasons_by_the_size_of_their_contribution():
    """Largest contribution first within what raised and within what lowered (a -35 before a -10, a +15
    before a +5), ties in the order given (rule order); file order was the review's finding (issue 12 A)."""
    assert why_text([(5, "A"), (15, "B"), (-10, "C"), (-35, "D")]) == "+15 B; +5 A; lowered by \u221235 D; \u221210 C"
    assert why_text([(15, "X"), (-15, "Z"), (15, "Y")]) == "+15 X; +15 Y; lowered by \u221215 Z"


def test_every_view_orders_the_why_by_contribution(evaluator):
    """The report's rationale (JSON, the appendix), page 1's raised/lowered and the ranked table's Why all
    list reasons by absolute weight, ties in rule order; relapse_after_bcma_bispecific's GPRC5D option is
    raised by +30 (an earlier rule) and +60 (a later one), so file order would put the +30 first."""
    seen = 0
    for name in case_names():
        report = report_of(evaluator, name)
        s = summarize(report)
        for o in report.options:
            weights = [abs(r.weight) for r in o.rationale]
            assert weights == sorted(weights, reverse=True), (name, o.id, weights)
            seen += len({w for w in weights if w}) > 1
        for t in s.options:
            for part in (t.raised, t.lowered):
                assert [abs(r.weight) for r in part] == sorted((abs(r.weight) for r in part), reverse=True)
    assert seen, "some option has reasons of different weights"
    report = report_of(evaluator, "relapse_after_bcma_bispecific")
    gprc5d = next(o for o in report.options if o.id == "gprc5d_bispecific")
    assert gprc5d.why.index("+60 ") < gprc5d.why.index("+30 "), gprc5d.why
    md, html = render(report, "markdown"), render(report, "html")
    for text in (md, html):
        row = text[text.index("+60 After a BCMA bispecific") :]
        assert row.index("+60 ") < row.index("+30 Triple-class exposed: GPRC5D")


def test_key_figure_comes_from_the_cited_evidence_with_source_and_level(evaluator):
    report = report_of(evaluator, "fit_tcr_bcma_naive")
    tops = summarize(report).options
    assert tops[0].key_figure is not None
    for top, option in zip(tops, report.options):
        if top.key_figure is None:
            continue
        entry = report.evidence[top.key_figure.evidence_id]
        assert entry.id in option.key_evidence
        assert top.key_figure.value in [f.value for f in entry.figures]
        assert top.key_figure.source.startswith(entry.source_id) and top.key_figure.level


def _key_figures(evaluator, case, **changes):
    report = report_of(evaluator, case, **changes)
    return report, {o.id: o.key_figure for o in report.options}


@pytest.mark.parametrize("case", case_names())
def test_every_key_figure_is_named_by_a_fired_rule_for_the_options_own_arm(evaluator, case):
    """H1: the figure is one the source gives for this option's agent and arm, named in the rule data."""
    report = report_of(evaluator, case)
    rs = evaluator.ruleset
    for o in report.options:
        k = o.key_figure
        if k is None:
            continue
        assert k.rule_id in [r.rule_id for r in o.rationale], "named by a rule that fired (or held) for the option"
        entry = rs.registry.get(k.evidence)
        fig = [f for f in entry.figures if (f.measure, f.arm, f.timepoint) == (k.measure, k.arm, k.timepoint)]
        assert [f.value for f in fig] == [k.value]
        assert rs.vocabulary.lookup(entry.agent).drug_class in rs.option(o.id).drug_classes
        # CARTITUDE-1 enrolled BCMA-naive patients after >= 3 lines; MajesTEC-1 BCMA-naive; POLLUX not lenalidomide-refractory
        facts = {f.name: f.value for f in report.derived_facts}
        if k.evidence.startswith(("CARTITUDE-1.", "MAJESTEC-1.")):
            assert facts["bcma_exposed"] is False and facts["prior_line_count"] >= 3
        if k.evidence.startswith("POLLUX."):
            assert facts["refractory_lenalidomide"] is False


def test_no_ide_cel_arm_figure_for_the_standard_regimen_option(evaluator):
    """H1: KarMMa-3's ide-cel ORR 71% was shown for the PI/IMiD regimen (the comparator option)."""
    for case in ("first_relapse_len_refractory", "len_refractory_second_relapse", "pollux_type_early_relapse"):
        report, figures = _key_figures(evaluator, case)
        assert "pi_imid_regimen" in figures and figures["pi_imid_regimen"] is None
        page1 = render(report, "markdown").split("# Appendix")[0]
        assert "71%" not in page1 and "KarMMa-3: ORR" not in page1


def test_no_pollux_figure_for_a_lenalidomide_refractory_patient(evaluator):
    """H1: POLLUX excluded lenalidomide-refractory patients."""
    for case in ("first_relapse_len_refractory", "len_refractory_second_relapse"):
        report, figures = _key_figures(evaluator, case)
        assert figures["anti_cd38_combination"] is None
        assert "POLLUX" not in render(report, "markdown").split("# Appendix")[0]
    _, figures = _key_figures(evaluator, "pollux_type_early_relapse")
    k = figures["anti_cd38_combination"]
    assert k is not None and (k.evidence, k.measure, k.value) == ("POLLUX.S000.TABLE1", "orr", "91%")


def test_car_t_figure_follows_the_trial_population(evaluator):
    """H1: CARTITUDE-1's 34.9 months was shown after BCMA exposure and at 1 prior line."""
    # 1 prior line, lenalidomide-refractory: CARTITUDE-4's cilta-cel arm
    _, figures = _key_figures(evaluator, "first_relapse_len_refractory")
    k = figures["bcma_car_t"]
    assert (k.evidence, k.label, k.value) == ("CARTITUDE-4.S001.TABLE2", "ORR (cilta-cel)", "84.6%")
    # after BCMA-directed therapy: never CARTITUDE-1/KarMMa's BCMA-naive figures; the one cohort that enrolled
    # such patients is CARTITUDE-2 cohort C (prior anti-BCMA therapy: ORR 60%, SEQ-CART-003)
    for case in ("prior_belantamab_cart_candidate", "relapse_after_bcma_bispecific", "penta_refractory_after_teclistamab"):
        _, figures = _key_figures(evaluator, case)
        k = figures["bcma_car_t"]
        assert k is None or (k.evidence, k.value) == ("CARTITUDE-2C.S001.TEXT", "60%"), (case, k)
    # 3 lines, triple-class exposed, refractory to the last: the randomized KarMMa-3 ide-cel arm beats single-arm data
    _, figures = _key_figures(evaluator, "fit_tcr_bcma_naive")
    assert (figures["bcma_car_t"].evidence, figures["bcma_car_t"].arm) == ("KARMMA-3.S001.TABLE1", "ide-cel")
    # 4 lines, not refractory to the last (outside KarMMa-3 and CARTITUDE-4): CARTITUDE-1, the sources' disagreement marked
    data = load_case("prior_allo_cart_candidate")
    data["prior_lines"][-1]["refractory_to"] = []
    report = build_report(evaluator.evaluate(evaluator.parse(data)), FIXED)
    k = next(o.key_figure for o in report.options if o.id == "bcma_car_t")
    assert (k.evidence, k.value) == ("CARTITUDE-1.S001.TABLE2", "34.9m")
    top = summarize(report).options[0]
    assert top.key_figure is not None and top.key_figure.conflicts == ["S000, Table 1 gives Not reached"]
    page1 = render(report, "html").split('class="appendix"')[0]
    assert "sources differ: S000, Table 1 gives Not reached" in page1
    assert "sources differ:** S000, Table 1 gives Not reached" in render(report, "markdown")


def test_the_patients_own_caution_comes_before_the_generic_ones(evaluator):
    """H2: an active serious infection, not the generic CAR-T toxicity, is page 1's CAR-T caution."""
    s = summarize(report_of(evaluator, "active_serious_infection"))
    by_id = {o.id: o for o in s.options}
    assert by_id["bcma_car_t"].caution == "Active serious infection: defer lymphodepletion until controlled"
    assert by_id["bcma_bispecific"].caution.startswith("Active serious infection")


@pytest.mark.parametrize("case", case_names())
def test_no_generic_or_favourable_caution_hides_a_patient_specific_one(evaluator, case):
    from cds.report.highlights import patient_specific

    rs = evaluator.ruleset
    report = report_of(evaluator, case)
    for o in report.options:
        warnings = [c for c in o.cautions if not rs.rule(c.rule_id).favourable]
        if not warnings:
            assert o.key_caution is None
            continue
        chosen = rs.rule(o.key_caution)
        assert not chosen.favourable
        if any(patient_specific(rs.rule(c.rule_id)) for c in warnings):
            assert patient_specific(chosen), (o.id, chosen.id)
            own_safety = [c for c in warnings if c.category == "safety" and patient_specific(rs.rule(c.rule_id))]
            if own_safety:
                assert chosen.id == own_safety[0].rule_id


def test_best_option_available_here_when_rank_1_needs_referral(evaluator):
    report = report_of(evaluator, "unknowns_not_assessed")
    s = summarize(report)
    assert s.options[0].availability_status == "referral"
    assert s.best_available is not None and s.best_available.availability_status == "available"
    assert s.best_available.rank > 1
    html = render(report, "html")
    assert "Best option available here:" in html and 'class="badge info">Referral needed' in html
    assert "**Best option available here:**" in render(report, "markdown")


def test_no_best_available_line_when_rank_1_is_available(evaluator):
    assert summarize(report_of(evaluator, "frail_ecog3")).best_available is None


def test_facts_to_obtain_say_what_each_value_would_change(evaluator):
    report = report_of(evaluator, "unknowns_not_assessed")
    s = summarize(report)
    assert [f.field for f in s.facts_to_obtain] == [u.field for u in report.unknown_facts_that_matter]
    access = next(f for f in s.facts_to_obtain if f.field == "car_t_center_access")
    assert access.effects == ["if no: BCMA x CD3 bispecific antibody ranks first"]


def test_cartitude_2_cohort_c_figure_only_inside_its_population(evaluator):
    """Clinical review: CARTITUDE-2 cohort C's ORR was shown for any BCMA-exposed patient; the cohort enrolled
    ECOG 0-1 after a PI, an IMiD, an anti-CD38 antibody and non-cellular anti-BCMA therapy (Cohen et al., Blood
    2023; outside the sources)."""
    for ecog, expected in ((1, ("CARTITUDE-2C.S001.TEXT", "60%")), (2, None)):
        _, figures = _key_figures(evaluator, "prior_belantamab_cart_candidate", ecog=ecog)
        k = figures["bcma_car_t"]
        assert (None if k is None else (k.evidence, k.value)) == expected, (ecog, k)


def test_excluded_one_line_each(evaluator):
    report = report_of(evaluator, "t1114_penta_refractory")
    s = summarize(report)
    assert [x.id for x in s.excluded] == [x.id for x in report.excluded]
    for line, x in zip(s.excluded, report.excluded):
        assert line.reason == x.reason and line.more == len(x.reasons) - 1
        assert "(" not in line.short_title


def test_exclusion_lines_give_a_plain_reason(evaluator):
    """An unmet requirement says what is missing ("No t(11;14)"), not the requirement's title."""
    lines = {x.id: x.reason for x in summarize(report_of(evaluator, "fit_tcr_bcma_naive")).excluded}
    assert lines["bcl2_inhibitor"] == "No t(11;14)"
    assert lines["anti_slamf7_combination"] == "Refractory to lenalidomide and pomalidomide"
    assert lines["anti_cd38_combination"] == "Refractory to an anti-CD38 antibody"  # an exclude rule's title is its reason
    # an unknown fact is not "no": the requirement could not be confirmed
    lines = {x.id: x.reason for x in summarize(report_of(evaluator, "unknowns_not_assessed")).excluded}
    assert lines["bcl2_inhibitor"] == "Not known: t(11;14) detected"


def test_review_statements_are_quoted_not_shown_as_studies(evaluator):
    from cds.report.view import report_view

    view = report_view(report_of(evaluator, "pollux_type_early_relapse"))
    cd38 = next(o for o in view["options"] if o["id"] == "anti_cd38_combination")
    assert "DARA-IMID.S000.ABSTRACT" in cd38["key_statements"] and "DARA-IMID.S000.ABSTRACT" not in cd38["key_studies"]
    for o in view["options"]:
        assert all(view["evidence"][e]["level"] not in ("review_statement", "expert_statement") for e in o["key_studies"])


def test_page_one_comes_first_in_both_formats(evaluator):
    report = report_of(evaluator, "rapidly_progressive")
    html = render(report, "html")
    assert html.index('id="summary"') < html.index('class="appendix"') < html.index('id="case"')
    md = render(report, "markdown")
    assert md.index("## Top options") < md.index("## Facts to obtain") < md.index("# Appendix") < md.index("## 1. Case summary")


def test_timeline_shows_the_dates_the_profile_gives(evaluator):
    data = load_case("unknowns_not_assessed")
    data["prior_lines"][0].update(start_date="2019-02", end_date="2020-11", best_response="VGPR")
    data["prior_lines"][2].update(start_date="2022-04")
    report = build_report(evaluator.evaluate(evaluator.parse(data)), FIXED)
    assert report.lines[0].start_date == "2019-02" and report.lines[0].best_response == "VGPR"
    html = render(report, "html")
    page1 = html[: html.index('class="appendix"')]
    assert "2019-02 \u2013 2020-11 \u00b7 VGPR" in page1 and "2022-04 \u2013 ongoing" in page1
    assert "(2019-02 \u2013 2020-11 \u00b7 VGPR)" in render(report, "markdown")
    undated = render(report_of(evaluator, "unknowns_not_assessed"), "html")
    assert "ongoing" not in undated


def test_page_one_conditions_read_as_the_reference_interpreter_reads_them(evaluator):
    """condition_holds (key figures' `when`, whether a caution is the patient's own) against cds.engine.reference,
    which reads the rule files on its own: every rule's condition and every key figure's, on every case and on
    a patient about whom nothing is known."""
    import yaml

    from cds.engine import reference
    from cds.knowledge.ruleset import condition_holds
    from cds.model.facts import derive, engine_facts

    rs = evaluator.ruleset
    settings = {name: spec.value for name, spec in rs.settings.items()}
    raw = {}
    for path in sorted(rs.directory.glob("*.yaml")):
        for rule in yaml.load(path.read_text(encoding="utf-8"), Loader=yaml.BaseLoader).get("rules") or ():
            raw[rule["id"]] = rule
    pairs = []
    for rule in rs.rules:
        pairs.append((rule.condition, raw[rule.id].get("when")))
        pairs += [(k.condition, r.get("when")) for k, r in zip(rule.key_figures, raw[rule.id].get("key_figures") or ())]
    assert sum(1 for r in rs.rules if r.key_figures) >= 5
    fact_sets = [{}] + [engine_facts(derive(evaluator.load(PROFILES / f"{c}.json"), rs.vocabulary)) for c in case_names()]
    checked = 0
    for facts in fact_sets:
        for parsed, when in pairs:
            assert condition_holds(parsed, facts) == reference.holds(when, facts, settings), when
            checked += 1
    assert checked > 1000


@pytest.mark.parametrize("abnormality", ["del(1p)", "del(17p)", "amp(1q)"])
def test_synopsis_names_every_high_risk_abnormality_of_the_catalogue(evaluator, abnormality):
    """Page 1 names the high-risk abnormality the profile lists, from the catalogue's high-risk list
    (rules/catalog/cytogenetics.yaml), never a label with nothing after it (del(1p) once was)."""
    report = report_of(evaluator, "fit_tcr_bcma_naive", cytogenetics=[abnormality, "t(11;14)"])
    assert abnormality in evaluator.ruleset.vocabulary.high_risk_cytogenetics
    assert f"high-risk cytogenetics: {abnormality}" in report.synopsis, report.synopsis
    assert "t(11;14)" not in " ".join(report.synopsis)


def test_synopsis_names_plasma_cell_leukaemia_and_cns_involvement(evaluator):
    """Both change what can be given (M5): page 1's first line names them when true, never when false or unknown."""
    report = report_of(evaluator, "pcl_cns_tcr")
    assert "plasma cell leukaemia" in report.synopsis and "CNS involvement" in report.synopsis, report.synopsis
    html, md = render(report, "html"), render(report, "markdown")
    for page1 in (html[: html.index('class="appendix"')], md[: md.index("# Appendix")]):
        assert "plasma cell leukaemia" in page1 and "CNS involvement" in page1
    for value in (False, None):
        other = report_of(evaluator, "pcl_cns_tcr", plasma_cell_leukemia=value, cns_involvement=value)
        assert "plasma cell leukaemia" not in other.synopsis and "CNS involvement" not in other.synopsis


def test_facts_to_obtain_on_page_one_show_each_outcome_once(evaluator):
    """An unrecorded refractory_to has many completions (one per subset of the line's drugs); page 1 shows
    each outcome once, with the first value giving it, and counts the rest (the appendix lists them all):
    the case's page 1 ran to 21 PDF pages before."""
    report = report_of(evaluator, "first_relapse_refractoriness_not_recorded")
    (u,) = [u for u in report.unknown_facts_that_matter if u.field == "prior_lines[].refractory_to"]
    (f,) = [f for f in summarize(report).facts_to_obtain if f.field == u.field]
    outcomes = list(dict.fromkeys(e.top_option for e in u.effects))
    assert len(u.effects) > len(outcomes) >= 2
    assert len(f.effects) == len(outcomes) + 1
    assert f.effects[-1].startswith(f"{len(u.effects) - len(outcomes)} more values")
    assert sum("BCMA-directed CAR-T cell therapy ranks first" in e for e in f.effects) == 1


def _page1(report) -> tuple[str, str]:
    html, markdown = render(report, "html"), render(report, "markdown")
    return html[: html.index('class="appendix"')], markdown[: markdown.index("## 1. Case summary")]


@pytest.mark.parametrize("case", ["first_relapse_len_refractory", "first_relapse_dvrd_pi_exposed", "v2_early_relapse_after_asct"])
def test_page1_names_only_cilta_cel_at_one_prior_line(evaluator, case):
    """Issue 12 B2, review R12-08: at 1 prior line only cilta-cel has trial evidence (CARTITUDE-4, CARTITUDE-2A;
    KarMMa-3 enrolled 2-4 prior regimens), so page 1's CAR-T line names cilta-cel and why, from PROD-CART-003's
    `restricts_products`, whether or not PROD-CART-003 is page 1's caution; it does not list ide-cel as a product."""
    report = report_of(evaluator, case)
    car = next(o for o in report.options if o.id == "bcma_car_t")
    assert car.rank <= TOP_OPTIONS and report.options[0].id == "bcma_car_t"
    rule = evaluator.ruleset.rule("PROD-CART-003")
    assert rule.restricts_products is not None
    assert car.products_supported is not None
    assert (car.products_supported.rule_id, car.products_supported.products) == ("PROD-CART-003", ["cilta-cel"])
    assert report.to_dict()["options"][0]["products_supported"]["products"] == ["cilta-cel"]  # the JSON report
    top = summarize(report).options[0]
    assert top.heading == f"BCMA-directed CAR-T cell therapy (cilta-cel: {rule.restricts_products.why})"
    assert "ide-cel" not in top.heading  # the heading names the product the evidence supports, and only it (CR-1)
    for page1 in _page1(report):
        assert "cilta-cel, ide-cel" not in page1 and "ide-cel)" not in page1
        assert "BCMA-directed CAR-T cell therapy (cilta-cel: the only product with trial evidence here" in page1
    # the appendix's heading of the option says the same
    html = render(report, "html")
    assert "cilta-cel, ide-cel" not in html[html.index('id="option-bcma_car_t"') :][:600]


def test_page1_names_both_car_t_products_at_2_to_4_lines_triple_class_exposed(evaluator):
    """KarMMa-3's population (2-4 prior regimens, triple-class exposed): ide-cel has trial evidence too, nothing
    restricts the products and page 1 names both, as the catalogue title does."""
    report = report_of(evaluator, "karmma3_two_lines_tce")
    car = next(o for o in report.options if o.id == "bcma_car_t")
    assert car.rank == 1 and car.products_supported is None
    assert "PROD-CART-003" not in [c.rule_id for c in car.cautions]
    assert summarize(report).options[0].heading == car.title == "BCMA-directed CAR-T cell therapy (cilta-cel, ide-cel)"
    for page1 in _page1(report):
        assert "BCMA-directed CAR-T cell therapy (cilta-cel, ide-cel)" in page1


@pytest.mark.parametrize(
    "case, option, rule_id",
    [
        ("rapidly_progressive", "bcma_car_t", "CAUT-CART-006"),  # review CR-3: bridging, not soluble BCMA
        ("cart_early_relapse_cilta_cel", "bcma_bispecific", "PBCMA-BSAB-001"),  # CR-10: BCMA loss, not the label wording
    ],
)
def test_a_caution_marked_page1_first_is_page_1s_caution(evaluator, case, option, rule_id):
    """Review CR-10: a caution its rule marks `page1_first` (it decides what the board does now) wins page 1's one
    caution slot over the patient's other non-safety cautions, which would otherwise win by category order."""
    rs = evaluator.ruleset
    assert rs.rule(rule_id).page1_first
    report = report_of(evaluator, case)
    o = next(o for o in report.options if o.id == option)
    assert o.key_caution == rule_id
    top = next(t for t in summarize(report).options if t.id == option)
    assert top.caution == rs.rule(rule_id).title
    for page1 in _page1(report):
        assert rs.rule(rule_id).title in " ".join(page1.split()).replace("&#39;", "'")


def test_page1_first_is_only_for_a_caution_that_warns(tmp_path):
    import shutil

    import yaml
    from conftest import RULES

    from cds.errors import RuleSetError
    from cds.knowledge.ruleset import load_ruleset

    dst = tmp_path / "rules"
    shutil.copytree(RULES, dst)
    path = dst / "products.yaml"
    data = yaml.safe_load(path.read_text())
    next(r for r in data["rules"] if r["id"] == "PROD-BSAB-001")["page1_first"] = True  # a favourable note
    path.write_text(yaml.safe_dump(data, sort_keys=False, allow_unicode=True))
    with pytest.raises(RuleSetError) as info:
        load_ruleset(dst)
    assert any(
        "[PROD-BSAB-001]" in p and "page1_first: only a caution rule not marked favourable" in p for p in info.value.problems
    )


def test_a_line_without_end_date_followed_by_a_later_line_is_not_ongoing(evaluator):
    """notes/newuser.md finding C: line 1 (no end_date) read "2019-01 – ongoing" although line 2 started later.
    It ended by the next line's start (no date is invented); only the last line can be ongoing."""
    data = load_case("unknowns_not_assessed")
    data["prior_lines"][0].update(start_date="2019-01", progression_date="2022-03")
    data["prior_lines"][0].pop("end_date", None)
    data["prior_lines"][1].update(start_date="2022-04")
    data["prior_lines"][1].pop("end_date", None)
    data["prior_lines"][2].pop("start_date", None)
    data["prior_lines"][2].pop("end_date", None)
    report = build_report(evaluator.evaluate(evaluator.parse(data)), FIXED)
    html = render(report, "html")
    md = render(report, "markdown")
    for text in (html[: html.index('class="appendix"')], md):
        assert "2019-01 \u2013 by 2022-04 \u00b7 PD 2022-03" in text
        assert "2022-04 \u2013 end not recorded" in text  # line 3 has no start date: when line 2 ended is unknown
        assert "ongoing" not in text
