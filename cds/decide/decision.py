"""The ranking decision, made in one place: from the rules that fired to ranked and excluded options.

An option is excluded when an ``exclude`` rule for it fired or a ``require``
rule for it did not fire; every other option is ranked. The score of a ranked
option is the sum of its fired ``prefer`` (+weight) and ``deprefer`` (-weight)
rules; rank 1 is the highest score and ties keep the catalogue order, so the
same fired rules always give the same decision.

`Decider(ruleset).decide(fired)` returns a `Decision`: the ranked option IDs
with their scores and the excluded option IDs, nothing else. Both users build
on it: `cds.decide.ranking.rank` adds the reasons' texts for the report, and the
unknown-fact analysis (`cds.decide.unknowns`) compares the decisions of the
counterfactual variants with the patient's. The two can therefore never
disagree on what is ranked where.
"""

from __future__ import annotations

from collections.abc import Callable, Collection
from dataclasses import dataclass, field
from typing import Any

from cds.knowledge.ruleset import OptionSpec, Rule, RuleSet, leaves


@dataclass(frozen=True)
class OptionRules:
    """The active rules acting on one option, by kind, each in rule order."""

    option: OptionSpec
    excludes: tuple[Rule, ...]
    requires: tuple[Rule, ...]
    scored: tuple[Rule, ...]  # require, prefer and deprefer rules: the report's rationale
    cautions: tuple[Rule, ...]
    next_steps: tuple[Rule, ...]

    def excluding(self, fired: frozenset[str]) -> tuple[Rule, ...]:
        """The rules that exclude the option for `fired`: fired ``exclude`` rules, then unmet ``require`` rules."""
        return tuple(r for r in self.excludes if r.id in fired) + tuple(r for r in self.requires if r.id not in fired)


_GROUPS: dict[int, tuple[RuleSet, tuple[OptionRules, ...]]] = {}


def rules_by_option(ruleset: RuleSet) -> tuple[OptionRules, ...]:
    """Per option in catalogue order, its rules by kind (computed once per rule set)."""
    cached = _GROUPS.get(id(ruleset))
    if cached is not None and cached[0] is ruleset:
        return cached[1]
    groups = []
    for option in ruleset.options:
        rules = [r for r in ruleset.rules if option.id in r.options]
        groups.append(
            OptionRules(
                option=option,
                excludes=tuple(r for r in rules if r.kind == "exclude"),
                requires=tuple(r for r in rules if r.kind == "require"),
                scored=tuple(r for r in rules if r.kind in ("require", "prefer", "deprefer")),
                cautions=tuple(r for r in rules if r.kind == "caution"),
                next_steps=tuple(r for r in rules if r.kind == "next_step"),
            )
        )
    _GROUPS[id(ruleset)] = (ruleset, tuple(groups))
    return tuple(groups)


@dataclass(frozen=True, slots=True)
class Decision:
    """What the fired rules decide: the ranked options with their scores, and the excluded ones.

    Two decisions are equal when they rank the same options in the same order
    with the same scores and exclude the same options.
    """

    order: tuple[str, ...]  # ranked option IDs, rank 1 first
    scores: tuple[int, ...]  # aligned with `order`
    excluded: tuple[str, ...]  # excluded option IDs, in catalogue order
    fired: frozenset[str] = field(compare=False, repr=False)  # what was decided on
    # per option in catalogue order: its score, or None when excluded (for `Decider.decide(base=...)`)
    by_option: tuple[int | None, ...] = field(compare=False, repr=False)

    @property
    def top(self) -> str | None:
        return self.order[0] if self.order else None

    def ranked(self) -> tuple[tuple[str, int], ...]:
        """(option ID, score) pairs in rank order."""
        return tuple(zip(self.order, self.scores))


class Decider:
    """Decides rankings for one rule set (its rule tables are built once)."""

    def __init__(self, ruleset: RuleSet):
        self.ruleset = ruleset
        self.groups = rules_by_option(ruleset)
        # per option in catalogue order: (exclude rule IDs, require rule IDs, weighted rule IDs, rule ID -> its
        # signed weight (summed over rules of one ID)); an option's score is None when an exclude rule fired or a require
        # rule did not, else the sum of the weights of its weighted rules that fired (written out where decide reads it)
        tests = []
        for g in self.groups:
            weight: dict[str, int] = {}
            for r in g.scored:
                if r.signed_weight:
                    weight[r.id] = weight.get(r.id, 0) + r.signed_weight
            tests.append(
                (frozenset(r.id for r in g.excludes), frozenset(r.id for r in g.requires), frozenset(weight), weight.__getitem__)
            )
        self._tests = tuple(tests)
        self._ids = tuple(g.option.id for g in self.groups)
        # the ranking of each by_option seen (order, scores, excluded: a function of by_option alone), kept
        self._rankings: dict[tuple[int | None, ...], tuple[tuple[str, ...], tuple[int, ...], tuple[str, ...]]] = {}
        # rule ID -> the positions of the options whose decision it takes part in
        self._options_of: dict[str, tuple[int, ...]] = {}
        for index, (excl, req, weighted, _) in enumerate(self._tests):
            for rid in excl | req | weighted:
                self._options_of[rid] = (*self._options_of.get(rid, ()), index)

    def rules_reading(self, facts: Collection[str]) -> tuple[str, ...]:
        """The rules of the decision (deciding rules with an option to act on) whose condition reads one of `facts`,
        in rule order: of two fact sets that differ only in `facts`, only these can fire differently."""
        return tuple(
            r.id
            for r in self.ruleset.rules
            if r.id in self._options_of and any(leaf.fact in facts for leaf in leaves(r.condition))
        )

    def decide(self, fired: frozenset[str], base: Decision | None = None, among: tuple[str, ...] | None = None) -> Decision:
        """The decision for the rules that fired.

        With `base` (a decision of the same decider), only the options whose rules
        fired differently from the base's are decided again: the unknown-fact
        analysis decides many variants that differ from the patient's in a few rules.
        With `among` as well (`rules_reading` of the facts `fired`'s fact set has
        different from the base's), only those rules are compared.
        """
        by_option: list[int | None]
        if base is not None:
            options_of = self._options_of
            before = base.fired
            # the options of the rules fired only here and only in the base
            changed: set[int] = set()
            if among is not None:
                # a rule reading none of the changed facts fires as for the base (checked: the sizes must agree)
                grown = 0
                for r in among:
                    now = r in fired
                    if now is not (r in before):
                        changed.update(options_of[r])
                        grown += 1 if now else -1
                if len(fired) - len(before) != grown:
                    among = None
                    changed.clear()
            if among is None:
                # two differences: cheaper than the symmetric one; plain loops: a comprehension would build a
                # function object per call
                for r in fired - before:
                    changed.update(options_of.get(r, ()))
                for r in before - fired:
                    changed.update(options_of.get(r, ()))
            old = base.by_option
            by_option = []
            tests = self._tests
            for index in changed:
                excl, req, weighted, weight = tests[index]  # the option's score (see __init__)
                score = sum(map(weight, weighted & fired)) if excl.isdisjoint(fired) and req <= fired else None
                if score != old[index]:
                    if not by_option:
                        by_option = list(old)
                    by_option[index] = score
            if not by_option:  # every option scored as in the base: its ranking
                return _decision(base.order, base.scores, base.excluded, fired, old)
        else:
            # every option's score (see __init__)
            by_option = [
                sum(map(weight, weighted & fired)) if excl.isdisjoint(fired) and req <= fired else None
                for excl, req, weighted, weight in self._tests
            ]
        key = tuple(by_option)
        made = self._rankings.get(key)
        if made is None:
            ids = self._ids
            ranked = sorted([(-score, index) for index, score in enumerate(by_option) if score is not None])
            made = (
                tuple([ids[i] for _, i in ranked]),
                tuple([-s for s, _ in ranked]),
                tuple([ids[i] for i, score in enumerate(by_option) if score is None]),
            )
            if len(self._rankings) > 1024:  # bounded
                self._rankings.clear()
            self._rankings[key] = made
        return _decision(made[0], made[1], made[2], fired, key)


_new = object.__new__
_SETTERS = tuple(Decision.__dict__[name].__set__ for name in ("order", "scores", "excluded", "fired", "by_option"))


def _decision(
    order: tuple[str, ...],
    scores: tuple[int, ...],
    excluded: tuple[str, ...],
    fired: frozenset[str],
    by_option: tuple[int | None, ...],
    _set: tuple[Callable[[Decision, Any], None], ...] = _SETTERS,
) -> Decision:
    """`Decision(order, scores, excluded, fired, by_option)`, without the frozen dataclass's __init__ (its
    object.__setattr__ per field): the slots set directly (a third of the cost; the same object)."""
    d: Decision = _new(Decision)
    _set[0](d, order)
    _set[1](d, scores)
    _set[2](d, excluded)
    _set[3](d, fired)
    _set[4](d, by_option)
    return d


_BY_ID: dict[int, tuple[RuleSet, dict[str, OptionRules]]] = {}


def option_rules(ruleset: RuleSet) -> dict[str, OptionRules]:
    """`rules_by_option` by option ID (computed once per rule set)."""
    cached = _BY_ID.get(id(ruleset))
    if cached is None or cached[0] is not ruleset:
        cached = _BY_ID[id(ruleset)] = (ruleset, {g.option.id: g for g in rules_by_option(ruleset)})
    return cached[1]


def exclusions(ruleset: RuleSet, decision: Decision) -> tuple[tuple[str, tuple[str, ...]], ...]:
    """Per excluded option (catalogue order), the IDs of the rules that exclude it, in the order of the report's reasons."""
    groups = option_rules(ruleset)
    return tuple((oid, tuple(r.id for r in groups[oid].excluding(decision.fired))) for oid in decision.excluded)
