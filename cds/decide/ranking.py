"""The report's ranking: the decision (`cds.decide.decision`) with every reason's text.

`rank` takes the `Decision` the fired rules gave and adds, per ranked option,
the rules that fired for it (rationale, cautions, next steps) and, per excluded
option, the reasons it was excluded; it never decides anything itself.
"""

from __future__ import annotations

from dataclasses import dataclass

from cds.decide.decision import Decision, rules_by_option
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
    decision: Decision
    options: tuple[RankedOption, ...]  # in the decision's order
    excluded: tuple[ExcludedOption, ...]  # in the decision's (catalogue) order

    @property
    def top(self) -> str | None:
        return self.decision.top


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


_REASONS: dict[int, tuple[RuleSet, dict[str, Reason]]] = {}


def _reasons(ruleset: RuleSet) -> dict[str, Reason]:
    """Per active rule, the reason it gives when it fires (built once per rule set)."""
    cached = _REASONS.get(id(ruleset))
    if cached is not None and cached[0] is ruleset:
        return cached[1]
    reasons = {r.id: _reason(r, f"{r.title}. {r.rationale}" if r.kind == "exclude" else None) for r in ruleset.rules}
    _REASONS[id(ruleset)] = (ruleset, reasons)
    return reasons


def rank(ruleset: RuleSet, decision: Decision, facts: dict[str, FactValue]) -> Ranking:
    """The decision with its reasons: what fired for each ranked option, why each other one is excluded."""
    reasons = _reasons(ruleset)
    groups = {g.option.id: g for g in rules_by_option(ruleset)}
    fired = decision.fired
    options = []
    for n, (oid, score) in enumerate(decision.ranked(), 1):
        g = groups[oid]
        options.append(
            RankedOption(
                oid,
                n,
                g.option.title,
                g.option.summary,
                score,
                rationale=tuple(reasons[r.id] for r in g.scored if r.id in fired),
                cautions=tuple(reasons[r.id] for r in g.cautions if r.id in fired),
                next_steps=tuple(reasons[r.id] for r in g.next_steps if r.id in fired),
            )
        )
    excluded = []
    for oid in decision.excluded:
        g = groups[oid]
        why = tuple(reasons[r.id] if r.kind == "exclude" else _unmet_requirement(r, facts) for r in g.excluding(fired))
        excluded.append(ExcludedOption(oid, g.option.title, why))
    return Ranking(decision=decision, options=tuple(options), excluded=tuple(excluded))
