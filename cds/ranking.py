"""From the rules that fired to ranked and excluded options.

An option is excluded when an ``exclude`` rule for it fired or a ``require``
rule for it did not fire; every other option is ranked. The score of a ranked
option is the sum of its fired prefer (+weight) and deprefer (-weight) rules;
rank 1 is the highest score and ties keep the catalogue order, so the same
fired rules always give the same order.
"""

from __future__ import annotations

from dataclasses import dataclass

from .facts import FACTS, FactValue
from .ruleset import Rule, RuleSet


@dataclass(frozen=True)
class Reason:
    rule_id: str
    kind: str
    title: str
    text: str
    evidence: tuple[str, ...]
    weight: int = 0
    category: str | None = None
    unknown_facts: tuple[str, ...] = ()


@dataclass(frozen=True)
class RankedOption:
    id: str
    rank: int
    title: str
    summary: str
    score: int
    rationale: tuple[Reason, ...]
    cautions: tuple[Reason, ...]
    next_steps: tuple[Reason, ...]


@dataclass(frozen=True)
class ExcludedOption:
    id: str
    title: str
    reasons: tuple[Reason, ...]


@dataclass(frozen=True)
class Ranking:
    options: tuple[RankedOption, ...]
    excluded: tuple[ExcludedOption, ...]

    @property
    def top(self) -> str | None:
        return self.options[0].id if self.options else None

    def order(self) -> tuple[str, ...]:
        return tuple(o.id for o in self.options)

    def excluded_ids(self) -> frozenset[str]:
        return frozenset(e.id for e in self.excluded)


def _reason(rule: Rule, text: str | None = None, unknown: tuple[str, ...] = ()) -> Reason:
    return Reason(
        rule_id=rule.id,
        kind=rule.kind,
        title=rule.title,
        text=text if text is not None else rule.rationale,
        evidence=rule.cites,
        weight=rule.signed_weight,
        category=rule.category,
        unknown_facts=unknown,
    )


def _unmet_requirement(rule: Rule, facts: dict[str, FactValue]) -> Reason:
    unknown = tuple(f for f in rule.facts_used() if f in facts and not facts[f].known)
    text = f"Requirement not met: {rule.title}. {rule.rationale}"
    if unknown:
        names = ", ".join(FACTS[f].description.lower() for f in unknown)
        text = (
            f"Requirement cannot be confirmed: {rule.title}. Unknown: {names}. "
            f"An unknown fact is not taken as met. {rule.rationale}"
        )
    return _reason(rule, text, unknown)


def rank(ruleset: RuleSet, fired: frozenset[str], facts: dict[str, FactValue]) -> Ranking:
    per_option: dict[str, list[Rule]] = {o: [] for o in ruleset.option_ids}
    for rule in ruleset.rules:
        for oid in rule.options:
            per_option[oid].append(rule)

    ranked: list[tuple[int, int, RankedOption]] = []
    excluded: list[ExcludedOption] = []
    for index, option in enumerate(ruleset.options):
        rules = per_option[option.id]
        exclusions = [_reason(r, f"{r.title}. {r.rationale}") for r in rules if r.kind == "exclude" and r.id in fired]
        exclusions += [_unmet_requirement(r, facts) for r in rules if r.kind == "require" and r.id not in fired]
        if exclusions:
            excluded.append(ExcludedOption(option.id, option.title, tuple(exclusions)))
            continue
        rationale = [_reason(r) for r in rules if r.kind in ("require", "prefer", "deprefer") and r.id in fired]
        score = sum(r.signed_weight for r in rules if r.id in fired)
        cautions = tuple(_reason(r) for r in rules if r.kind == "caution" and r.id in fired)
        next_steps = tuple(_reason(r) for r in rules if r.kind == "next_step" and r.id in fired)
        ranked.append(
            (
                -score,
                index,
                RankedOption(option.id, 0, option.title, option.summary, score, tuple(rationale), cautions, next_steps),
            )
        )
    ranked.sort(key=lambda t: (t[0], t[1]))
    options = tuple(
        RankedOption(o.id, n, o.title, o.summary, o.score, o.rationale, o.cautions, o.next_steps)
        for n, (_, _, o) in enumerate(ranked, 1)
    )
    return Ranking(options=options, excluded=tuple(excluded))
