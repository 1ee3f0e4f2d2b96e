"""Which unknown facts matter: counterfactual evaluation through the same engine.

For every profile field the patient's profile leaves unknown and some rule
tests, we build one variant of the fact set per *distinguishable* value of
that field (true/false; each frailty category; for a lab, a value in each
interval cut by the thresholds the rules use; for cytogenetics, every
combination of the abnormalities the rules can tell apart), keep every other
unknown fact unknown, and evaluate all variants in the engine together with
the patient's own facts. A field *matters* when some value changes the top
option; it *affects the ranking* when some value changes the order or the
exclusions below the top.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass

from .facts import CYTO_FACT, FACTS, HIGH_RISK_CYTOGENETICS, FactValue, Value
from .profile import CYTOGENETIC_ABNORMALITIES
from .ruleset import RuleSet, leaves


@dataclass(frozen=True)
class Variant:
    field: str  # the profile field (input_field) being varied
    label: str  # human-readable value, e.g. "false", "< 400", "t(11;14) only"
    assignment: tuple[tuple[str, Value], ...]  # fact -> value for this variant


@dataclass(frozen=True)
class Effect:
    label: str
    top: str | None
    order: tuple[str, ...]
    newly_excluded: tuple[str, ...]
    newly_offered: tuple[str, ...]


@dataclass(frozen=True)
class UnknownFact:
    field: str
    description: str
    changes_top: bool
    changes_ranking: bool
    effects: tuple[Effect, ...]  # only the values that change something


def _field_description(field: str) -> str:
    if field == "cytogenetics":
        return "Cytogenetics (FISH) result"
    for spec in FACTS.values():
        if spec.input_field == field:
            return spec.description
    return field


def _numeric_representatives(thresholds: list[float], minimum: float) -> list[tuple[str, float]]:
    ts = sorted(set(thresholds))
    out: list[tuple[str, float]] = []
    if ts[0] > minimum:
        out.append((f"< {ts[0]:g}", minimum + (ts[0] - minimum) / 2 if ts[0] - minimum < 2 else ts[0] - 1))
    for i, t in enumerate(ts):
        out.append((f"= {t:g}", t))
        if i + 1 < len(ts):
            out.append((f"between {t:g} and {ts[i + 1]:g}", (t + ts[i + 1]) / 2))
    out.append((f"> {ts[-1]:g}", ts[-1] + 1))
    return out


class VariantPlanner:
    """Precomputes, per rule set, the distinguishable values of each unknowable field."""

    def __init__(self, ruleset: RuleSet):
        used: dict[str, list] = {}
        for rule in ruleset.rules:
            for leaf in leaves(rule.condition):
                used.setdefault(leaf.fact, []).append(leaf)
        self.used_facts = frozenset(used)
        self._plans: dict[str, list[tuple[str, tuple[tuple[str, Value], ...]]]] = {}
        for name, spec in FACTS.items():
            if not spec.may_be_unknown or spec.group == "cytogenetics" or name not in used:
                continue
            field = spec.input_field or name
            if spec.type == "bool":
                plan = [("true", ((name, True),)), ("false", ((name, False),))]
            elif spec.type == "enum":
                plan = [(v, ((name, v),)) for v in spec.values]
            else:
                thresholds = [float(l.value) for l in used[name] if l.op in ("<", "<=", ">", ">=", "==", "!=")]  # type: ignore[arg-type]
                if not thresholds:
                    continue  # only tested with is known/is unknown: nothing to vary but presence
                plan = [(label, ((name, v),)) for label, v in _numeric_representatives(thresholds, spec.minimum or 0.0)]
            self._plans[field] = plan
        cyto_used = [f for f in (*CYTO_FACT.values(), "high_risk_cytogenetics") if f in used]
        if cyto_used:
            seen: dict[tuple, tuple[str, tuple[tuple[str, Value], ...]]] = {}
            for k in range(len(CYTOGENETIC_ABNORMALITIES) + 1):
                for combo in itertools.combinations(CYTOGENETIC_ABNORMALITIES, k):
                    found = set(combo)
                    full: dict[str, Value] = {fact: abn in found for abn, fact in CYTO_FACT.items()}
                    full["high_risk_cytogenetics"] = bool(found & set(HIGH_RISK_CYTOGENETICS))
                    key = tuple(full[f] for f in cyto_used)
                    if key not in seen:
                        label = ", ".join(combo) if combo else "tested, no abnormality"
                        seen[key] = (label, tuple(full.items()))
            self._plans["cytogenetics"] = list(seen.values())

    def variants(self, facts: dict[str, FactValue]) -> list[Variant]:
        out: list[Variant] = []
        for field, plan in self._plans.items():
            probe = plan[0][1][0][0]
            if facts[probe].known:
                continue
            out.extend(Variant(field, label, assignment) for label, assignment in plan)
        return out


def summarize(
    variants: list[Variant],
    rankings: list,  # list[Ranking] aligned with variants
    base,  # Ranking
    facts: dict[str, FactValue],
    planner: VariantPlanner,
) -> tuple[list[UnknownFact], list[str]]:
    """Group variant outcomes by field. Returns (facts with an effect, unknown fields without one)."""
    by_field: dict[str, list[Effect]] = {}
    flags: dict[str, list[bool]] = {}
    for variant, ranking in zip(variants, rankings):
        top_changed = ranking.top != base.top
        changed = top_changed or ranking.order() != base.order() or ranking.excluded_ids() != base.excluded_ids()
        f = flags.setdefault(variant.field, [False, False])
        by_field.setdefault(variant.field, [])
        if changed:
            f[0] = f[0] or top_changed
            f[1] = True
            by_field[variant.field].append(
                Effect(
                    label=variant.label,
                    top=ranking.top,
                    order=ranking.order(),
                    newly_excluded=tuple(sorted(ranking.excluded_ids() - base.excluded_ids())),
                    newly_offered=tuple(sorted(base.excluded_ids() - ranking.excluded_ids())),
                )
            )
    result = [
        UnknownFact(field, _field_description(field), flags[field][0], flags[field][1], tuple(by_field[field]))
        for field in by_field
        if flags[field][1]
    ]
    result.sort(key=lambda u: (not u.changes_top, u.field))
    unknown_fields = sorted(
        {spec.input_field for spec in FACTS.values() if spec.input_field and not facts[spec.name].known}
    )
    without = [f for f in unknown_fields if f not in {u.field for u in result}]
    return result, without
