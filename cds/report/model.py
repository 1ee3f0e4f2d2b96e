"""The report as typed data: what `cds evaluate --format json` prints, and what every renderer starts from.

The results/presentation split of coverage.py (``results.py`` vs ``html.py``):
this module holds the results, `cds.report.build` fills them from an
evaluation, and `cds.report.view` turns them into what the templates show
(colours, labels, table layout, which facts to list). Nothing here is only for
display.

The JSON output is a versioned API: `Report.to_dict()` is exactly the JSON
object, in field order, with `SCHEMA_VERSION` first. Its JSON Schema is
generated from these classes (``schemas/report.schema.json``, see
`cds.apps.schemas`) and checked in the tests. Change the version when a field
is removed, renamed or changes meaning (the major number) or added (the minor).

Plain frozen dataclasses: building one report costs little, and importing this
module imports nothing heavy (JSON output starts fast).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable
from typing import Any, Protocol, TypeVar

from cds.knowledge.site import Availability
from cds.model.base import record

# 2.0: the typed model (issue 11): view-only fields left the JSON and `format` became `schema_version`.
# 2.1: lines carry their dates, best response and stop reason (profile v2).
# 2.2: evidence conflicts have a kind ("sources" or "erratum": the source against the trial's publication,
#      outside the sources) and say what they are about; `measure` is null for one not about a figure;
#      every evidence entry has its level (and, where the source states no design, a design_reference).
# 2.3: page-1 data, chosen from rule data: an option's `key_figure` (a figure its fired rules name for
#      that option's arm in the patient's population, or null) and `key_caution`; an excluded option's `reason`.
# 2.4: `evaluation_date`: the date the date-relative facts count to, and whether it came from the profile
#      or defaulted to the evaluation time (the instant `evaluated_at` stamps).
# 2.5: an option's `products_supported`: where a fired caution restricts the option to some of the products
#      its title lists (PROD-CART-003: at 1 prior line only cilta-cel has trial evidence), which, and why.
SCHEMA_VERSION = "2.5"

# JSON values a derived fact, a setting or a profile input can take.
FactValue = bool | int | float | str | None


class _Weighted(Protocol):
    @property
    def weight(self) -> int: ...


_W = TypeVar("_W", bound=_Weighted)

#: what an option's "why" says when no prefer or deprefer rule fired for it (only requirements, met)
NO_PREFERENCE = "eligible; no preference rule applies"


def by_contribution(reasons: Iterable[_W]) -> list[_W]:
    """Reasons in the order a reader weighs them: the largest contribution to the score first (absolute
    weight, so a -35 comes before a +5), ties and unweighted requirements in rule order (a stable sort)."""
    return sorted(reasons, key=lambda r: -abs(r.weight))


def why_parts(reasons: Iterable[tuple[int, str]]) -> tuple[str, str]:
    """(what raised the score, what lowered it) from (signed weight, text) pairs: ``'+40 A; +15 B'`` and
    ``'\u221230 C'``, each largest first (ties in the order given, which is rule order). The first is
    `NO_PREFERENCE` only when no weighted rule fired at all, so an option whose score was only lowered never
    reads 'no preference rule applies'."""
    reasons = sorted(reasons, key=lambda r: -abs(r[0]))
    raised = "; ".join(f"+{w} {text}" for w, text in reasons if w > 0)
    lowered = "; ".join(f"\u2212{-w} {text}" for w, text in reasons if w < 0)
    return raised or ("" if lowered else NO_PREFERENCE), lowered


def why_text(reasons: Iterable[tuple[int, str]]) -> str:
    """An option's net why in one line: ``'+40 A; lowered by \u221230 C'`` (the ranked table, page 1)."""
    raised, lowered = why_parts(reasons)
    return "; ".join(p for p in (raised, f"lowered by {lowered}" if lowered else "") if p)


_FIELDS: dict[type, tuple[str, ...] | None] = {}  # per class: its dataclass field names, or None


def to_data(value: Any) -> Any:
    """A dataclass tree as JSON-ready dicts and lists, fields in declaration order."""
    cls = type(value)
    if cls is list or cls is tuple:
        return [to_data(v) for v in value]
    if cls is dict:
        return {k: to_data(v) for k, v in value.items()}
    try:
        names = _FIELDS[cls]
    except KeyError:
        names = _FIELDS[cls] = tuple(f.name for f in dataclasses.fields(cls)) if dataclasses.is_dataclass(cls) else None
    if names is None:
        return value
    return {n: to_data(getattr(value, n)) for n in names}


@record
class Reason:
    """A rule that acted on an option: why it is ranked, cautioned, excluded or followed by a next step."""

    rule_id: str
    kind: str
    title: str
    text: str
    evidence: list[str]
    weight: int
    category: str | None
    unknown_facts: list[str]
    reviewed: str | None = None  # the rule's last_reviewed (YYYY-MM-DD)


@record
class KeyFigure:
    """The figure page 1 shows for an option: named by a rule that fired for it (`key_figures` in the rule file)."""

    evidence: str
    rule_id: str  # the rule that names it
    measure: str  # registry measure: orr, median_pfs, ...
    label: str  # the measure in words, with its arm: "median PFS (ide-cel)"
    value: str  # exactly as the source prints it
    arm: str | None
    timepoint: str | None


@record
class ProductsSupported:
    """The products of an option the evidence supports for this patient, where a fired caution says so
    (`restricts_products` in the rule file): page 1 and the card name these instead of the title's list."""

    rule_id: str  # the caution that restricts them
    products: list[str]  # as the rule names them: ["cilta-cel"]
    why: str  # "the only product with trial evidence here (...)"


def option_heading(title: str, products: ProductsSupported | dict[str, Any] | None) -> str:
    """An option's title as page 1 and the card show it: with its products restricted where a fired rule
    restricts them ('BCMA-directed CAR-T cell therapy (cilta-cel: the only product with trial evidence here
    (...))'), else the catalogue title as it is."""
    if products is None:
        return title
    names, why = (
        (products.products, products.why) if isinstance(products, ProductsSupported) else (products["products"], products["why"])
    )
    return f"{short_title(title)} ({', '.join(names)}: {why})"


def short_title(title: str) -> str:
    """An option's title without its parenthesised examples: 'BCMA x CD3 bispecific antibody'."""
    head = title.split(" (", 1)[0].strip()
    return head or title


@record
class RankedOption:
    id: str
    rank: int
    title: str
    summary: str
    score: int
    tied_with: list[str]  # same score: their relative order is the catalogue's, not a clinical preference
    why: str
    rationale: list[Reason]
    cautions: list[Reason]
    next_steps: list[Reason]
    key_evidence: list[str]  # evidence IDs cited by the rationale, in order
    availability: Availability | None  # at the report's site; None without a site
    # the strongest figure the fired rules name for this option's arm in this patient's population; None: none does
    key_figure: KeyFigure | None = None
    key_caution: str | None = None  # rule ID of the caution page 1 shows: the patient's own before the generic ones
    # where a fired caution restricts the option to some of its title's products (PROD-CART-003); None: all of them
    products_supported: ProductsSupported | None = None


@record
class ExcludedOption:
    id: str
    title: str
    reasons: list[Reason]
    availability: Availability | None
    reason: str = ""  # the first reason in a few plain words ("no t(11;14)", "not known: t(11;14) detected")


@record
class UnavailableOption:
    id: str
    title: str
    rank: int
    status: str
    reason: str


@record
class SiteSection:
    name: str | None
    description: str
    file: str | None
    hash: str | None
    default: bool
    car_t_delivered_on_site: bool | None
    car_t_referral_possible: bool | None
    unavailable: list[UnavailableOption]


@record
class Agent:
    name: str  # as entered
    generic: str
    drug_class: str
    targets: list[str]
    category: str  # timeline category: imid, pi, anti_cd38, bcma, gprc5d, chemo, other
    refractory: bool


@record
class Line:
    index: int
    regimen: str | None
    agents: list[Agent]
    refractory_to: list[str]
    autologous_transplant: bool | None
    bcma_directed: bool
    refractoriness_recorded: bool = True  # False: the line does not record refractory_to (unknown, not "none")
    agents_from_regimen: bool = False  # True: agents were left out and are the regimen label's
    start_date: str | None = None  # "YYYY-MM-DD" or "YYYY-MM", as the profile gives them
    infusion_date: str | None = None  # a CAR-T line: the infusion, when the profile gives it
    transplant_date: str | None = None  # the line's (last) autologous transplant, when the profile gives it
    end_date: str | None = None
    progression_date: str | None = None
    best_response: str | None = None  # IMWG: sCR, CR, VGPR, PR, MR, SD, PD
    stop_reason: str | None = None
    intolerant_to: list[str] | None = None  # generic names of the agents stopped for toxicity; None: not recorded
    not_refractory_by_dates: str | None = None  # refractory_to not recorded, but not refractory by the IMWG dates rule: why


@record
class DerivedFact:
    name: str
    description: str
    value: FactValue
    known: bool
    explanation: str
    origin: str  # "profile" or "derived"
    applies: bool = True  # False: no value for this patient (e.g. months since a therapy never given)


@record
class Effect:
    if_value: str
    top_option: str | None
    ranking: list[str]
    newly_excluded: list[str]
    newly_offered: list[str]
    text: str


@record
class UnknownFact:
    field: str
    description: str
    changes_top_option: bool
    effects: list[Effect]


@record
class SettingUsed:
    value: int | float
    unit: str
    why: str


@record
class Figure:
    measure: str
    label: str
    value: str
    arm: str | None
    timepoint: str | None


@record
class EvidenceConflictRef:
    """One of an entry's conflicts: with another entry (kind "sources") or with the trial's publication ("erratum")."""

    with_: str | None  # "with" in the JSON (a Python keyword here); None for an erratum
    measure: str | None  # the figure's measure; None when the conflict is about a field (`about`)
    note: str
    kind: str = "sources"
    about: str = "figure"  # figure, n, phase, population, trial_number, publication, statement
    value: str | None = None  # erratum on one figure of several of that measure: its value
    printed: str | None = None  # erratum: the source's words, verbatim in the quote
    published: str | None = None  # erratum: what the trial's publication says (outside the sources)
    reference: str | None = None  # erratum: the publication
    certain: bool = True  # erratum: False when the correction is probable, not confirmed
    preferred: str | None = None  # sources: the entry whose reading is preferred (the note says why)


@record
class Evidence:
    id: str
    kind: str
    level: str  # evidence level id (cds.knowledge.evidence.LEVEL_LABELS), strongest first in LEVEL_ORDER
    level_label: str  # the level in words: "randomized phase 3", "single-arm trial", "review statement"
    title: str
    source_id: str
    source_file: str
    source_title: str
    source_citation: str
    location: str | None
    quote: str
    trial: str | None
    agent: str | None
    publication: str | None
    design_reference: str | None  # outside the sources: the publication stating a design the source does not
    population: str | None
    n: int | None
    phase: str | None
    note: str | None
    figures: list[Figure]
    conflicts: list[EvidenceConflictRef]


@record
class ConflictSide:
    evidence: str
    title: str
    source_id: str
    source_file: str
    location: str | None
    figures: list[str]
    shown: list[str]  # each figure as printed, with its label and qualifier


@record
class EvidenceConflict:
    measure: str  # what the conflict is about, in words ("median PFS", "phase", "number of patients")
    note: str
    sides: list[ConflictSide]  # two entries; an erratum has one (the entry), the publication is `published`
    kind: str = "sources"  # or "erratum": the source against the trial's publication (outside the sources)
    about: str = "figure"
    published: str | None = None
    reference: str | None = None
    certain: bool = True
    preferred: str | None = None  # the evidence ID whose reading is preferred


@record
class SourceDocument:
    id: str
    file: str
    title: str
    citation: str


@record
class EvaluationDate:
    """The date the date-relative facts (months since a therapy ended) count to."""

    date: str | None  # YYYY-MM-DD or YYYY-MM; null: none (the date-relative facts are unknown)
    source: str  # "profile" (its evaluation_date), "evaluation_time" (the date of evaluated_at), "not_given"


@record
class Report:
    schema_version: str
    patient_id: str
    age: int
    evaluated_at: str
    evaluation_date: EvaluationDate
    engine_version: str
    ruleset_hash: str
    input_hash: str
    site_name: str | None
    site_hash: str | None
    disclaimer: str
    synopsis: list[str]
    lines: list[Line]
    options: list[RankedOption]
    excluded: list[ExcludedOption]
    site: SiteSection
    derived_facts: list[DerivedFact]
    unknown_facts_that_matter: list[UnknownFact]
    unknown_facts_affecting_ranking: list[UnknownFact]
    unknown_facts_without_effect: list[str]
    fired_rules: list[str]
    settings_used: dict[str, SettingUsed]
    inputs: dict[str, Any]  # the validated profile (schemas/profile.schema.json)
    evidence: dict[str, Evidence]
    evidence_conflicts: list[EvidenceConflict]
    sources: list[SourceDocument]

    def to_dict(self) -> dict[str, Any]:
        """The JSON object of `cds evaluate --format json` (schemas/report.schema.json)."""
        data: dict[str, Any] = to_data(self)
        for entry in data["evidence"].values():
            entry["conflicts"] = [{("with" if k == "with_" else k): v for k, v in c.items()} for c in entry["conflicts"]]
        return data
