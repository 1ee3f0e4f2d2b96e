"""From the rules that fired to ranked and excluded options.

An option is excluded when an ``exclude`` rule for it fired or a ``require``
rule for it did not fire; every other option is ranked. The score of a ranked
option is the sum of its fired prefer (+weight) and deprefer (-weight) rules;
rank 1 is the highest score and ties keep the catalogue order, so the same
fired rules always give the same order.
"""

from __future__ import annotations

from dataclasses import dataclass

from cds.knowledge.ruleset import Rule, RuleSet
from cds.model.facts import FACTS, FactValue


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


@dataclass(frozen=True)
class _OptionPlan:
    """Per option, the rules acting on it by kind, with their reasons built once per rule set."""

    excludes: tuple[tuple[str, Reason], ...]
    requires: tuple[Rule, ...]
    scored: tuple[tuple[str, int, Reason], ...]  # require/prefer/deprefer, in rule order
    cautions: tuple[tuple[str, Reason], ...]
    next_steps: tuple[tuple[str, Reason], ...]


_PLANS: dict[int, tuple[RuleSet, tuple[_OptionPlan, ...]]] = {}


def option_plans(ruleset: RuleSet) -> tuple[_OptionPlan, ...]:
    """Per option in catalogue order, its rules by kind (cached per rule set; also used by cds.decide.unknowns)."""
    cached = _PLANS.get(id(ruleset))
    if cached is not None and cached[0] is ruleset:
        return cached[1]
    plans = []
    for option in ruleset.options:
        rules = [r for r in ruleset.rules if option.id in r.options]
        plans.append(
            _OptionPlan(
                excludes=tuple((r.id, _reason(r, f"{r.title}. {r.rationale}")) for r in rules if r.kind == "exclude"),
                requires=tuple(r for r in rules if r.kind == "require"),
                scored=tuple((r.id, r.signed_weight, _reason(r)) for r in rules if r.kind in ("require", "prefer", "deprefer")),
                cautions=tuple((r.id, _reason(r)) for r in rules if r.kind == "caution"),
                next_steps=tuple((r.id, _reason(r)) for r in rules if r.kind == "next_step"),
            )
        )
    _PLANS[id(ruleset)] = (ruleset, tuple(plans))
    return tuple(plans)


def rank(ruleset: RuleSet, fired: frozenset[str], facts: dict[str, FactValue]) -> Ranking:
    ranked: list[tuple[int, int, RankedOption]] = []
    excluded: list[ExcludedOption] = []
    for index, (option, plan) in enumerate(zip(ruleset.options, option_plans(ruleset))):
        exclusions = [reason for rid, reason in plan.excludes if rid in fired]
        exclusions += [_unmet_requirement(r, facts) for r in plan.requires if r.id not in fired]
        if exclusions:
            excluded.append(ExcludedOption(option.id, option.title, tuple(exclusions)))
            continue
        rationale = tuple(reason for rid, _, reason in plan.scored if rid in fired)
        score = sum(weight for rid, weight, _ in plan.scored if rid in fired)
        cautions = tuple(reason for rid, reason in plan.cautions if rid in fired)
        next_steps = tuple(reason for rid, reason in plan.next_steps if rid in fired)
        ranked.append(
            (-score, index, RankedOption(option.id, 0, option.title, option.summary, score, rationale, cautions, next_steps))
        )
    ranked.sort(key=lambda t: (t[0], t[1]))
    options = tuple(
        RankedOption(o.id, n, o.title, o.summary, o.score, o.rationale, o.cautions, o.next_steps)
        for n, (_, _, o) in enumerate(ranked, 1)
    )
    return Ranking(options=options, excluded=tuple(excluded))
