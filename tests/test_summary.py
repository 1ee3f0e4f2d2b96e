"""Page 1: the summary a tumor board decides from (cds.report.summary), in HTML and Markdown."""

from __future__ import annotations

from conftest import case_names, load_case

from cds.report.build import build_report
from cds.report.model import NO_PREFERENCE, why_text
from cds.report.render import render
from cds.report.summary import TOP_OPTIONS, summarize

FIXED = "2026-01-01T00:00:00Z"


def report_of(evaluator, name, **changes):
    return build_report(evaluator.evaluate(evaluator.parse({**load_case(name), **changes})), FIXED)


def test_top_options_are_three_plus_ties_with_the_third(evaluator):
    report = report_of(evaluator, "prior_belantamab_cart_candidate")
    s = summarize(report)
    third = report.options[TOP_OPTIONS - 1]
    expected = [o.id for o in report.options[:TOP_OPTIONS]] + [
        o.id for o in report.options[TOP_OPTIONS:] if o.score == third.score
    ]
    assert [o.id for o in s.options] == expected
    assert s.ranked_count == len(report.options)
    assert any(o.tied for o in s.options)


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


def test_key_figure_comes_from_the_cited_evidence_with_source_and_level(evaluator):
    report = report_of(evaluator, "fit_tcr_bcma_naive")
    for top, option in zip(summarize(report).options, report.options):
        if top.key_figure is None:
            assert all(not report.evidence[e].figures for e in option.key_evidence)
            continue
        entry = report.evidence[top.key_figure.evidence_id]
        assert entry.id in option.key_evidence
        assert top.key_figure.value in [f.value for f in entry.figures]
        assert top.key_figure.source.startswith(entry.source_id) and top.key_figure.level


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


def test_excluded_one_line_each(evaluator):
    report = report_of(evaluator, "t1114_penta_refractory")
    s = summarize(report)
    assert [x.id for x in s.excluded] == [x.id for x in report.excluded]
    for line, x in zip(s.excluded, report.excluded):
        assert line.reason == x.reasons[0].title and line.more == len(x.reasons) - 1
        assert "(" not in line.short_title


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
