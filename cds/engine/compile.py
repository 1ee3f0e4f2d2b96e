"""Rules to durable-rules JSON: one pattern per rule, shared by the engine and the capacity check.

Every rule becomes ``{"all": [{"m": {"$and": [type, scope, condition]}}], "pri": n}``:

- ``{"t": "patient"}``, a type discriminator, so that no rule can match the session's state
  fact (shared/notes pitfall 5);
- the scope: ``{"cds_scope": "*"}``, or, for a deciding rule (`Rule.decides`) reading facts that can
  be unknown, ``{"$or": [{"cds_scope": "*"}, {"cds_scope": <field>}, ...]}`` over the profile fields
  those facts come from (the scoped counterfactual variants of `cds.engine.durable`; each field as its
  short value, `scope_values`);
- the condition, if any: ``==`` is ``{fact: v}``, ``!=`` ``$neq``, ``< <= > >=`` ``$lt $lte $gt
  $gte``, ``in`` an ``$or`` of equalities, ``is known`` ``$ex``, ``is unknown`` ``$nex``,
  ``all``/``any`` ``$and``/``$or``; the engine compiles each fact under its short property name
  (`property_names`).

The sentinel rule (lowest priority, no condition) fires for every asserted fact.
"""

from __future__ import annotations

import itertools
import string
from collections.abc import Iterable, Mapping
from typing import Any

from cds.engine.capacity import RESERVED, fnv1a
from cds.errors import EngineError
from cds.knowledge.ruleset import Condition, Group, Leaf, Rule, leaves
from cds.model.facts import FACTS, REFRACTORY_FIELD

SENTINEL = "__evaluated__"
PATIENT = "patient"  # the value of the type discriminator `t`
ALL = "*"  # cds_scope of a fact every rule must see
#: properties every asserted fact carries besides the rules' facts
BOOKKEEPING = ("t", "cds_scope", "id", "sid")

_LETTERS = string.ascii_letters
_COMPARE = {"!=": "$neq", "<": "$lt", "<=": "$lte", ">": "$gt", ">=": "$gte"}


def property_names(facts: Iterable[str]) -> dict[str, str]:
    """fact -> the short property name it has in the compiled rules and the asserted facts, per rule set.

    durable-rules hashes every property name of every fact it parses (assert, and the whole fact is
    copied into each action message), so the facts go in under one- or two-letter names (in the
    facts' sorted order) instead of their own (often 20-40 characters). The names avoid the
    bookkeeping and reserved properties and hash apart from each other and from them (durable-rules
    tells properties apart by their 32-bit FNV-1a hash alone), so the capacity check never has to
    name one. A bijection: the alpha network, and so the shard plan, is the same as under the facts'
    own names; messages to people always name the facts themselves (the rules' own conditions)."""
    taken = {fnv1a(n) for n in (*BOOKKEEPING, *RESERVED)}
    candidates = itertools.chain(_LETTERS, map("".join, itertools.product(_LETTERS, repeat=2)))
    out: dict[str, str] = {}
    for fact in sorted(set(facts)):
        for name in candidates:
            h = fnv1a(name)
            if name not in BOOKKEEPING and name not in RESERVED and h not in taken:
                taken.add(h)
                out[fact] = name
                break
        else:  # 2,704 names: more than any fact vocabulary
            raise EngineError("too many facts for the short property names")
    return out


def compile_condition(cond: Condition, names: Mapping[str, str] | None = None) -> dict[str, Any]:
    """Translate a parsed condition into a durable-rules JSON expression (facts renamed by `names`, if given)."""
    if isinstance(cond, Group):
        return {"$and" if cond.mode == "all" else "$or": [compile_condition(c, names) for c in cond.items]}
    assert isinstance(cond, Leaf)
    f, op, v = cond.fact, cond.op, cond.value
    if names is not None:
        f = names[f]
    if op == "==":
        return {f: v}
    if op in _COMPARE:
        return {_COMPARE[op]: {f: v}}
    if op == "in":
        assert isinstance(v, tuple)
        return {"$or": [{f: x} for x in v]}
    if op == "known":
        return {"$ex": {f: 1}}
    if op == "unknown":
        return {"$nex": {f: 1}}
    raise EngineError(f"cannot compile operator {op!r}")


def fact_scope(fact: str) -> str | None:
    """The profile field an unknown fact comes from (what a counterfactual variant varies), or None."""
    spec = FACTS.get(fact)
    if spec is None or not spec.may_be_unknown or spec.input_field == REFRACTORY_FIELD:
        # refractoriness facts: their variants are matched unscoped (Engine.run), so that the rules
        # reading them carry no extra scope branch (each branch is an alpha node: durable-rules pitfall 13)
        return None
    return spec.input_field or spec.name


def rule_facts(rule: Rule) -> frozenset[str]:
    return frozenset(leaf.fact for leaf in leaves(rule.condition))


def rule_scopes(rule: Rule) -> tuple[str, ...]:
    """The profile fields whose counterfactual variants this rule must see (sorted): none for a rule that
    takes no part in the ranking decision (a caution, a next step), since a variant is only ever decided."""
    if not rule.decides:
        return ()
    return tuple(sorted({s for s in map(fact_scope, rule_facts(rule)) if s is not None}))


def scope_values(rules: Iterable[Rule]) -> dict[str, str]:
    """scope (a profile field, `fact_scope`) -> the short ``cds_scope`` value it has in the compiled rules and the
    asserted variants ("0", "1", ... in sorted order), per rule set: the field names run to 45 characters, and
    every scoped variant's fact, and every action message for it, carried one. Distinct strings, as the names
    were: the alpha network is the same (`cds.engine.capacity` counts equality tests by type)."""
    return {s: str(k) for k, s in enumerate(sorted({s for r in rules for s in rule_scopes(r)}))}


def rule_definition(
    rule: Rule, pri: int, names: Mapping[str, str] | None = None, scope_names: Mapping[str, str] | None = None
) -> dict[str, Any]:
    """The durable-rules definition of one rule (see the module docstring), facts renamed by `names` and
    scopes by `scope_names` if given."""
    scopes = rule_scopes(rule)
    scope: dict[str, Any] = {"cds_scope": ALL}
    if scopes:
        values = [scope_names[s] for s in scopes] if scope_names is not None else scopes
        scope = {"$or": [{"cds_scope": ALL}] + [{"cds_scope": s} for s in values]}
    parts: list[dict[str, Any]] = [{"t": PATIENT}, scope]
    if rule.condition is not None:
        parts.append(compile_condition(rule.condition, names))
    return {"all": [{"m": {"$and": parts}}], "pri": pri}


def sentinel_definition(pri: int) -> dict[str, Any]:
    return {"all": [{"m": {"t": PATIENT}}], "pri": pri}
