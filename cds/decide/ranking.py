"""The report's ranking: the decision (`cds.decide.decision`) with every reason's text.

`rank` takes the `Decision` the fired rules gave and adds, per ranked option,
the rules that fired for it (rationale, cautions, next steps) and, per excluded
option, the reasons it was excluded; it never decides anything itself.
"""

from __future__ import annotations

from dataclasses import dataclass

from cds.decide.decision import Decision, option_rules
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


def _unmet_requirement(rule: Rule, unknown: tuple[str, ...]) -> Reason:
    """The reason a `require` rule that did not fire gives, `unknown` the facts it reads that are unknown."""
    text = f"Requirement not met: {rule.title}. {rule.rationale}"
    if unknown:
        names = ", ".join(FACTS[f].description.lower() for f in unknown)
        text = (
            f"Requirement cannot be confirmed: {rule.title}. Unknown: {names}. "
            f"An unknown fact is not taken as met. {rule.rationale}"
        )
    return _reason(rule, text, unknown)


class _Texts:
    """A rule set's reasons, made once: the reason each active rule gives when it fires, the facts each rule
    reads, and the reasons of unmet requirements by (rule ID, its unknown facts), bounded."""

    def __init__(self, ruleset: RuleSet):
        self.ruleset = ruleset
        self.fired = {r.id: _reason(r, f"{r.title}. {r.rationale}" if r.kind == "exclude" else None) for r in ruleset.rules}
        self.reads = {r.id: r.facts_used() for r in ruleset.rules}
        self.unmet: dict[tuple[str, tuple[str, ...]], Reason] = {}

    def unmet_requirement(self, rule: Rule, facts: dict[str, FactValue]) -> Reason:
        unknown = tuple(f for f in self.reads[rule.id] if f in facts and not facts[f].known)
        key = (rule.id, unknown)
        made = self.unmet.get(key)
        if made is None:
            if len(self.unmet) >= 1024:
                self.unmet.clear()
            made = self.unmet[key] = _unmet_requirement(rule, unknown)
        return made


_TEXTS: dict[int, _Texts] = {}


def _texts(ruleset: RuleSet) -> _Texts:
    """`_Texts` of a rule set (one per rule set object: a cache keyed by id, checked by identity)."""
    cached = _TEXTS.get(id(ruleset))
    if cached is not None and cached.ruleset is ruleset:
        return cached
    made = _TEXTS[id(ruleset)] = _Texts(ruleset)
    return made


def rank(ruleset: RuleSet, decision: Decision, facts: dict[str, FactValue]) -> Ranking:
    """The decision with its reasons: what fired for each ranked option, why each other one is excluded."""
    texts = _texts(ruleset)
    reasons = texts.fired
    groups = option_rules(ruleset)
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
        why = tuple(reasons[r.id] if r.kind == "exclude" else texts.unmet_requirement(r, facts) for r in g.excluding(fired))
        excluded.append(ExcludedOption(oid, g.option.title, why))
    return Ranking(decision=decision, options=tuple(options), excluded=tuple(excluded))
