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
import operator
from collections.abc import Collection, Mapping
from dataclasses import dataclass
from types import MappingProxyType

from cds.decide.decision import Decision
from cds.knowledge.ruleset import DECIDING_KINDS, Leaf, RuleSet, leaves
from cds.model.facts import (
    CYTO_FACT,
    FACTS,
    FIELD_DESCRIPTIONS,
    REFRACTORY_FIELD,
    FactValue,
    Value,
    cytogenetic_risk,
    refractoriness_alternatives,
)
from cds.model.profile import PatientProfile

Assignment = tuple[tuple[str, Value], ...]  # fact -> value
_COMPARISONS = ("<", "<=", ">", ">=", "==", "!=")


@dataclass(frozen=True)
class Variant:
    field: str  # the profile field (input_field) being varied
    label: str  # human-readable value, e.g. "false", "< 400", "t(11;14) only"
    assignment: Assignment  # the facts this variant sets


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


def field_description(field: str) -> str:
    if field in FIELD_DESCRIPTIONS:
        return FIELD_DESCRIPTIONS[field]
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


#: the setting (rules/catalog/settings.yaml) below which renal impairment is severe (CrCl, mL/min)
SEVERE_RENAL_SETTING = "severe_renal_impairment_crcl_ml_min"


class VariantPlanner:
    """Precomputes, per rule set, the distinguishable values of each unknowable field."""

    def __init__(self, ruleset: RuleSet):
        # Only the facts of rules that decide (require/exclude/prefer/deprefer) can change the
        # ranking: a field read only by cautions or next steps is never varied, and only the
        # thresholds of deciding rules cut a lab's range into distinguishable intervals.
        used: dict[str, list[Leaf]] = {}
        for rule in ruleset.rules:
            if rule.kind not in DECIDING_KINDS:
                continue
            for leaf in leaves(rule.condition):
                used.setdefault(leaf.fact, []).append(leaf)
        self.used_facts = frozenset(used)
        self._plans: dict[str, list[tuple[str, Assignment]]] = {}
        for name, spec in FACTS.items():
            if not spec.may_be_unknown or spec.group == "cytogenetics" or name not in used:
                continue
            if spec.input_field == REFRACTORY_FIELD:
                continue  # the possible records of a line depend on its agents: see refractory_variants
            field = spec.input_field or name
            plan: list[tuple[str, Assignment]]
            if spec.type == "bool":
                plan = [("true", ((name, True),)), ("false", ((name, False),))]
            elif spec.type == "enum":
                plan = [(v, ((name, v),)) for v in spec.values]
            else:
                # a comparison on a numeric fact has a number (cds.knowledge.ruleset.check_leaf)
                thresholds = [
                    float(v) for leaf in used[name] if leaf.op in _COMPARISONS and isinstance(v := leaf.value, (int, float))
                ]
                if not thresholds:
                    continue  # only tested with is known/is unknown: nothing to vary but presence
                plan = [(label, ((name, v),)) for label, v in _numeric_representatives(thresholds, spec.minimum or 0.0)]
            self._plans[field] = plan
        # per field: (the fact it probes, its variants, each as the engine's (scope, assignment), the same
        # two without "dialysis: true" (see `variants`)); made once: a Variant is immutable, an assignment read-only
        self._field_variants: list[
            tuple[str, tuple[Variant, ...], tuple[Scoped, ...], tuple[Variant, ...], tuple[Scoped, ...]]
        ] = []
        self._cyto_used = tuple(f for f in (*CYTO_FACT.values(), "high_risk_cytogenetics") if f in used)
        self._varied = self.varied_facts()
        for field, plan in self._plans.items():
            every = tuple(Variant(field, label, assignment) for label, assignment in plan)
            kept = tuple(v for v in every if v.assignment != _DIALYSIS)
            self._field_variants.append(
                (plan[0][1][0][0], every, _scoped(every, self._varied), kept, _scoped(kept, self._varied))
            )
        self._refractory_used = any(FACTS[f].input_field == REFRACTORY_FIELD for f in used)
        self._vocabulary = ruleset.vocabulary
        self._cyto_variants: dict[tuple[Value | None, ...], tuple[tuple[Variant, ...], tuple[Scoped, ...]] | None] = {}
        severe = ruleset.settings.get(SEVERE_RENAL_SETTING)
        self._severe_crcl: float | None = None if severe is None else float(severe.value)

    def varied_facts(self) -> dict[str, frozenset[str]]:
        """Per field whose variants `plan` scopes (all but the refractoriness records), every fact those variants
        may set: each variant's fact set differs from the patient's in these facts only."""
        out = {field: frozenset(name for _, assignment in plan for name, _ in assignment) for field, plan in self._plans.items()}
        if self._cyto_used:  # `_cytogenetics_plan`: the unknown abnormalities' facts and the risk it gives
            out["cytogenetics"] = frozenset((*CYTO_FACT.values(), "high_risk_cytogenetics"))
        return out

    def _cytogenetics_plan(self, values: Mapping[str, Value | None]) -> list[tuple[str, Assignment]]:
        """Every distinguishable completion of the abnormalities the profile leaves unknown (all of them
        when cytogenetics were not tested; those outside the tested panel of a partial one), keeping the
        known results; `high_risk_cytogenetics` follows (left unknown where the sources do not classify)."""
        unknown = tuple(abn for abn, fact in CYTO_FACT.items() if values[fact] is None)
        if not self._cyto_used or not unknown:
            return []
        known_found = frozenset(abn for abn, fact in CYTO_FACT.items() if values[fact] is True)
        seen: dict[tuple[Value | None, ...], tuple[str, Assignment]] = {}
        everything = frozenset(CYTO_FACT)
        partial = len(unknown) < len(CYTO_FACT)
        for k in range(len(unknown) + 1):
            for combo in itertools.combinations(unknown, k):
                found = known_found | set(combo)
                full: dict[str, Value | None] = {CYTO_FACT[abn]: abn in found for abn in unknown}
                full["high_risk_cytogenetics"] = cytogenetic_risk(set(found), everything, self._vocabulary)[0]
                key = tuple(full.get(f, values[f]) for f in self._cyto_used)
                if key not in seen:
                    if combo:
                        label = ", ".join(combo)
                    else:
                        label = "none of the untested abnormalities" if partial else "tested, no abnormality"
                    seen[key] = (label, tuple((f, v) for f, v in full.items() if v is not None))
        return list(seen.values())

    def variants(self, facts: dict[str, FactValue], profile: PatientProfile | None = None) -> list[Variant]:
        """The counterfactual variants of every unknown field a deciding rule reads (with `profile`,
        also the possible refractoriness records of lines that do not record it)."""
        values = {name: fv.value for name, fv in facts.items()}
        return self.plan(values, {name for name, fv in facts.items() if not fv.applies}, profile)[0]

    def plan(
        self, values: Mapping[str, Value | None], not_applying: Collection[str], profile: PatientProfile | None = None
    ) -> tuple[list[Variant], list[Scoped]]:
        """`variants` of the facts whose `values` these are (`cds.model.facts.Derived`: `not_applying` the
        facts that do not apply), and each variant but the refractoriness records (those come last) as the
        engine's ``(scope, assignment)`` (`Matcher.run_counterfactuals`)."""
        out: list[Variant] = []
        scoped: list[Scoped] = []
        crcl = values["creatinine_clearance_ml_min"]
        # a measured CrCl at or above the severe-renal threshold makes dialysis implausible: not tried
        # (review R12-15: "On dialysis" was a fact to obtain at CrCl 95 mL/min); tried when CrCl is unknown
        no_dialysis = self._severe_crcl is not None and isinstance(crcl, (int, float)) and crcl >= self._severe_crcl
        for probe, every, every_scoped, kept, kept_scoped in self._field_variants:
            if values[probe] is not None or probe in not_applying:
                continue
            if no_dialysis:
                out += kept
                scoped += kept_scoped
            else:
                out += every
                scoped += every_scoped
        cyto = self._cytogenetics_variants(values)
        if cyto is not None:
            out += cyto[0]
            scoped += cyto[1]
        # only a line without refractory_to can have records to try (`None in`: a list is never equal to None)
        if profile is not None and self._refractory_used and None in map(_REFRACTORY_TO, profile.prior_lines):
            for label, assignment in refractoriness_alternatives(profile, self._vocabulary, self.used_facts):
                out.append(Variant(REFRACTORY_FIELD, label, tuple(assignment.items())))
        return out, scoped

    def _cytogenetics_variants(self, values: Mapping[str, Value | None]) -> tuple[tuple[Variant, ...], tuple[Scoped, ...]] | None:
        """`_cytogenetics_plan(values)` as variants and the engine's (scope, assignment), made once per plan (None
        when no abnormality is unknown): the plan is a function of the abnormalities' values (its key here: the
        unknown ones and the ones found, read as one tuple)."""
        if not self._cyto_used:
            return None
        key = tuple(map(values.__getitem__, _CYTO_FACTS))  # bool facts: True, False or None (unknown)
        try:
            return self._cyto_variants[key]
        except KeyError:
            pass
        made = None
        if None in key:  # some abnormality unknown (`in` on a tuple: identity first, so only None matches None)
            every = tuple(Variant("cytogenetics", label, assignment) for label, assignment in self._cytogenetics_plan(values))
            made = (every, _scoped(every, self._varied))
        if len(self._cyto_variants) > 4096:  # bounded (3 values per abnormality: a few hundred keys in practice)
            self._cyto_variants.clear()
        self._cyto_variants[key] = made
        return made


_REFRACTORY_TO = operator.attrgetter("refractory_to")
_CYTO_FACTS = tuple(CYTO_FACT.values())  # the abnormalities' facts, in CYTO_FACT order

#: an engine variant: (the profile field its facts come from, the facts it sets; read-only)
Scoped = tuple[str, Mapping[str, Value]]
_DIALYSIS: Assignment = (("dialysis", True),)


def _scoped(variants: tuple[Variant, ...], varied: Mapping[str, frozenset[str]]) -> tuple[Scoped, ...]:
    """The engine's (scope, assignment) of each variant, checked once per plan made: a variant sets only facts
    `varied_facts` names for its field (the decision of a variant compares only the rules reading those)."""
    for v in variants:
        if not {name for name, _ in v.assignment} <= varied.get(v.field, frozenset()):
            raise AssertionError(f"a variant of {v.field} sets facts outside varied_facts: {v.assignment}")
    return tuple((v.field, MappingProxyType(dict(v.assignment))) for v in variants)


#: (fact, the profile field it comes from) for every fact that has one (what `summarize` lists as unknown)
_INPUT_FIELDS = tuple((spec.name, spec.input_field) for spec in FACTS.values() if spec.input_field)
_FIELD_OF = dict(_INPUT_FIELDS)
_INPUT_FACTS = frozenset(_FIELD_OF)
_DESCRIPTIONS: dict[str, str] = {}  # field_description per field (the fields of the plans: a few dozen)


def summarize(
    variants: list[Variant],
    decisions: list[Decision],  # aligned with variants
    base: Decision,
    known: Mapping[str, Value],  # the known facts' values (`cds.model.facts.Derived.known`): every other is unknown
    not_applying: Collection[str],  # the facts that do not apply
) -> tuple[list[UnknownFact], list[str]]:
    """Group the variants' decisions by field. Returns (facts with an effect, unknown fields without one)."""
    by_field: dict[str, list[Effect]] = {}
    tops: set[str] = set()  # the fields some value of which changes the top option
    base_order, base_excluded = base.order, base.excluded
    base_top = base_order[0] if base_order else None
    before: set[str] | None = None
    for variant, decision in zip(variants, decisions):
        order, excluded = decision.order, decision.excluded
        if order is base_order and excluded is base_excluded:
            continue  # the base's ranking (Decider.decide(..., base=) reuses its tuples): no change
        top = order[0] if order else None
        # `excluded` is in catalogue order, so comparing the tuples compares the sets
        if top == base_top and order == base_order and excluded == base_excluded:
            continue
        if top != base_top:
            tops.add(variant.field)
        if before is None:
            before = set(base_excluded)
        now = set(excluded)
        effect = _effect(variant.label, top, order, tuple(sorted(now - before)), tuple(sorted(before - now)))
        effects = by_field.get(variant.field)
        if effects is None:
            by_field[variant.field] = [effect]
        else:
            effects.append(effect)
    # the unknown input facts that apply (known: a dict, read as its keys), by their fields
    unknown_fields = set(map(_FIELD_OF.__getitem__, _INPUT_FACTS.difference(known, not_applying)))
    if not by_field:  # most profiles: no unknown fact changes anything
        return [], sorted(unknown_fields)
    result = [
        _unknown_fact(field, _description(field), field in tops, True, tuple(effects)) for field, effects in by_field.items()
    ]
    if len(result) > 1:
        result.sort(key=_by_changes_top)
    return result, sorted(unknown_fields.difference(by_field))


def _by_changes_top(u: UnknownFact) -> tuple[bool, str]:
    """The order of summarize's facts: those that change the top option first, then by field."""
    return (not u.changes_top, u.field)


_new = object.__new__


def _effect(
    label: str, top: str | None, order: tuple[str, ...], newly_excluded: tuple[str, ...], newly_offered: tuple[str, ...]
) -> Effect:
    """`Effect(label, top, order, newly_excluded, newly_offered)` without the frozen dataclass's __init__ (an
    object.__setattr__ per field): its instance dict filled directly, in field order (the same object)."""
    e: Effect = _new(Effect)
    e.__dict__.update(label=label, top=top, order=order, newly_excluded=newly_excluded, newly_offered=newly_offered)
    return e


def _unknown_fact(
    field: str, description: str, changes_top: bool, changes_ranking: bool, effects: tuple[Effect, ...]
) -> UnknownFact:
    """`UnknownFact(...)` of these fields, built as `_effect` builds an Effect."""
    u: UnknownFact = _new(UnknownFact)
    u.__dict__.update(
        field=field, description=description, changes_top=changes_top, changes_ranking=changes_ranking, effects=effects
    )
    return u


def _description(field: str) -> str:
    description = _DESCRIPTIONS.get(field)
    if description is None:
        if len(_DESCRIPTIONS) > 1000:
            _DESCRIPTIONS.clear()
        description = _DESCRIPTIONS[field] = field_description(field)
    return description
