"""The one-page summary a tumor board decides from: page 1 of the report, the terminal summary, the board.

`summarize(report)` picks from a `cds.report.model.Report` what a chairperson
reads out first: the top options (up to 3) each with a one-line net "why" (what raised and what lowered its score),
the key figure of its strongest evidence with the source and the evidence
level, its most important caution and its availability at the site; the options
beyond the third tied with it in score, by name (the cut at 3 would otherwise pick
among equals by catalogue order, which is not a clinical preference); the best
option available here when rank 1 is not; the unknown facts that would change
the top option, each with its effect; and what was excluded, one line each.

Typed and free of presentation (no HTML, no Markdown): the HTML and Markdown
page 1, `cds evaluate` on a terminal, `cds board` and CDS Hooks cards are
all drawn from it. Everything in it comes from the report, so it never says
more than the full report does.
"""

from __future__ import annotations

from dataclasses import dataclass

from cds.report import model as m
from cds.report.model import option_heading
from cds.report.model import short_title as short_title  # one definition (the card's too); callers import it here

TOP_OPTIONS = 3
# availability statuses for which page 1 names the best option available here beside rank 1
NOT_HERE = ("unavailable", "not_reimbursed", "referral")


@dataclass(frozen=True, slots=True)
class KeyFigure:
    evidence_id: str
    study: str  # trial name or entry title
    measure: str  # e.g. "ORR", "median PFS"
    value: str  # exactly as the source prints it
    n: int | None  # the study's (not the arm's)
    arm: str | None  # the figure's arm, when the study has more than one
    source: str  # e.g. "S001, Table 2"
    level: str  # the registry's evidence level, in words
    population: str | None  # the entry's population as the source prints it
    # where a source disagrees on this figure, or the trial's publication corrects it:
    # "S000, Table 1 gives Not reached", "erratum: phase 3" (the appendix has both sides)
    conflicts: list[str]


@dataclass(frozen=True, slots=True)
class ScoreReason:
    rule_id: str
    text: str
    weight: int  # + raised, - lowered the score, 0 a requirement met


@dataclass(frozen=True, slots=True)
class TopOption:
    id: str
    rank: int
    title: str
    short_title: str
    # the title as page 1 shows it: with only the products a fired caution restricts it to (PROD-CART-003)
    heading: str
    products_supported: m.ProductsSupported | None
    score: int
    tied: bool
    why: str  # one line: what raised the score, then what lowered it
    raised: list[ScoreReason]
    lowered: list[ScoreReason]
    key_figure: KeyFigure | None
    caution: str | None  # the most important caution: the patient's own first (see cds.report.highlights)
    availability_status: str | None  # available, unavailable, not_reimbursed, referral, unknown; None: no site
    availability: str | None  # the marker text, or None when available or not stated


@dataclass(frozen=True, slots=True)
class TiedOption:
    """An option beyond page 1's top 3 with the same score as the third: named on one line, not hidden by the cut."""

    id: str
    rank: int
    short_title: str
    score: int


@dataclass(frozen=True, slots=True)
class FactToObtain:
    field: str
    description: str
    effects: list[str]  # "if no: BCMA x CD3 bispecific antibody ranks first"


@dataclass(frozen=True, slots=True)
class ExcludedLine:
    id: str
    title: str
    short_title: str
    reason: str  # the first reason, in a few plain words (cds.report.highlights.exclusion_reason)
    more: int  # further reasons not shown


@dataclass(frozen=True, slots=True)
class Summary:
    patient_id: str
    age: int
    sex: str | None
    synopsis: list[str]
    evaluated_at: str
    evaluation_date: str | None  # the date the date-relative facts count to (None: none)
    evaluation_date_source: str  # "profile", "evaluation_time" (the date of evaluated_at) or "not_given"
    engine_version: str
    ruleset_hash: str
    site_name: str | None
    options: list[TopOption]
    tied_with_third: list[TiedOption]  # ranked below the top 3 at the third's score (catalogue order between them)
    ranked_count: int
    best_available: TopOption | None  # when rank 1 is not available or needs referral here
    facts_to_obtain: list[FactToObtain]
    excluded: list[ExcludedLine]


def _source(e: m.Evidence) -> str:
    return f"{e.source_id}, {e.location}" if e.location else e.source_id


def _level(e: m.Evidence) -> str:
    """The registry's evidence level, in words; when it rests on an erratum correcting the phase the
    cited row prints (CARTITUDE-4: 'phase II' in S001), page 1 says so beside it (review R12-12)."""
    phase = next((c for c in e.conflicts if c.kind == "erratum" and c.about == "phase"), None)
    if phase is None or e.phase is None:
        return e.level_label
    word = "probable erratum" if not phase.certain else "erratum"
    return f"{e.level_label} [{word}: the source prints phase {e.phase}]"


def _conflicts(k: m.KeyFigure, e: m.Evidence, evidence: dict[str, m.Evidence]) -> list[str]:
    """What other sources (or the trial's publication) say of the key figure: one phrase each."""
    out = []
    for c in e.conflicts:
        if c.measure != k.measure:
            continue
        if c.kind == "erratum":
            if c.value in (None, k.value):
                out.append(f"{'erratum' if c.certain else 'probable erratum'}: {c.published}")
        elif c.with_ is not None and c.with_ in evidence:
            other = evidence[c.with_]
            values = [f.value for f in other.figures if f.measure == k.measure]
            out.append(f"{_source(other)} gives {' / '.join(values)}" if values else f"disagrees with {_source(other)}")
    return list(dict.fromkeys(out))


def key_figure(option: m.RankedOption, evidence: dict[str, m.Evidence]) -> KeyFigure | None:
    """The option's key figure (chosen from rule data by the report builder), with its study and source."""
    k = option.key_figure
    if k is None or k.evidence not in evidence:
        return None
    e = evidence[k.evidence]
    return KeyFigure(
        evidence_id=e.id,
        study=e.trial or e.title,
        measure=k.label,
        value=k.value,
        n=e.n,
        arm=k.arm,
        source=_source(e),
        level=_level(e),
        population=e.population,
        conflicts=_conflicts(k, e, evidence),
    )


def _caution(option: m.RankedOption) -> str | None:
    chosen = next((c for c in option.cautions if c.rule_id == option.key_caution), None)
    return chosen.title if chosen is not None else None


def _why(raised: list[ScoreReason], lowered: list[ScoreReason]) -> str:
    return m.why_text((r.weight, r.text) for r in [*raised, *lowered])


def _top(o: m.RankedOption, evidence: dict[str, m.Evidence], tied: bool) -> TopOption:
    raised = [ScoreReason(r.rule_id, r.title, r.weight) for r in o.rationale if r.weight > 0]
    lowered = [ScoreReason(r.rule_id, r.title, r.weight) for r in o.rationale if r.weight < 0]
    a = o.availability
    return TopOption(
        id=o.id,
        rank=o.rank,
        title=o.title,
        short_title=short_title(o.title),
        heading=option_heading(o.title, o.products_supported),
        products_supported=o.products_supported,
        score=o.score,
        tied=tied,
        why=_why(raised, lowered),
        raised=raised,
        lowered=lowered,
        key_figure=key_figure(o, evidence),
        caution=_caution(o),
        availability_status=a.status if a else None,
        availability=a.marker if a else None,
    )


_VALUE_WORDS = {"true": "yes", "false": "no"}


def _effects(u: m.UnknownFact, titles: dict[str, str]) -> list[str]:
    """Page 1: per distinct outcome (the top option it would give), the first value that gives it; the other
    values with an outcome already shown are counted, not listed (the appendix lists every value). An
    unrecorded refractory_to of a four-drug line has 16 completions, which would not fit on one page."""
    out, seen, more = [], set(), 0
    for e in u.effects:
        if e.top_option in seen:
            more += 1
            continue
        seen.add(e.top_option)
        value = _VALUE_WORDS.get(e.if_value, e.if_value)
        if e.top_option is None:
            out.append(f"if {value}: no option would remain")
        else:
            out.append(f"if {value}: {titles.get(e.top_option, e.top_option)} ranks first")
    if more:
        out.append(f"{more} more value{'s' if more > 1 else ''} with one of these outcomes (appendix)")
    return out


def summarize(report: m.Report) -> Summary:
    """The page-1 summary of a report (see the module docstring)."""
    options = report.options
    shown = list(options[:TOP_OPTIONS])
    tied = [o for o in options[TOP_OPTIONS:] if o.score == shown[-1].score] if len(options) > TOP_OPTIONS else []
    tops = [_top(o, report.evidence, bool(o.tied_with)) for o in shown]
    best = None
    if options and options[0].availability is not None and options[0].availability.status in NOT_HERE:
        here = next(
            (o for o in options[1:] if o.availability is not None and o.availability.status == "available"),
            None,
        )
        if here is not None:
            best = next((t for t in tops if t.id == here.id), None) or _top(here, report.evidence, bool(here.tied_with))
    titles = {o.id: short_title(o.title) for o in options} | {x.id: short_title(x.title) for x in report.excluded}
    sex = report.inputs.get("sex")
    return Summary(
        patient_id=report.patient_id,
        age=report.age,
        sex=sex if isinstance(sex, str) else None,
        synopsis=list(report.synopsis),
        evaluated_at=report.evaluated_at,
        evaluation_date=report.evaluation_date.date,
        evaluation_date_source=report.evaluation_date.source,
        engine_version=report.engine_version,
        ruleset_hash=report.ruleset_hash,
        site_name=report.site_name,
        options=tops,
        tied_with_third=[TiedOption(o.id, o.rank, short_title(o.title), o.score) for o in tied],
        ranked_count=len(options),
        best_available=best,
        facts_to_obtain=[
            FactToObtain(field=u.field, description=u.description, effects=_effects(u, titles))
            for u in report.unknown_facts_that_matter
        ],
        excluded=[
            ExcludedLine(
                id=x.id,
                title=x.title,
                short_title=short_title(x.title),
                reason=x.reason or (x.reasons[0].title if x.reasons else "excluded"),
                more=max(len(x.reasons) - 1, 0),
            )
            for x in report.excluded
        ],
    )
