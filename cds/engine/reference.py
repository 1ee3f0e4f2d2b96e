"""A reference interpreter of the rule conditions: plain Python, no durable-rules.

It evaluates the same parsed rules (`Leaf` / `Group` from cds.knowledge.ruleset) over the
same flat fact dict the engine receives (`cds.model.facts.engine_facts`: an unknown
fact is *absent*, never null). It exists to be obviously correct, so that the
durable-rules engine can be checked against it on many random profiles
(tests/test_differential.py) and as the floor of the performance benchmark.

Semantics, exactly as documented in cds/ruleset.py:

- ``fact is known`` holds when the fact is present; ``fact is unknown`` when it is absent.
- Every comparison (``== != < <= > >= in``) on an absent fact is False: unknown is not false.
- Comparisons are strictly typed: a boolean is never equal to a number, a string
  is never ordered against a number (the rule loader rejects such conditions;
  the engine would compare them loosely, which is what this would expose).
- ``all`` holds when every item holds, ``any`` when at least one does.
- A rule without a condition always fires.
"""

from __future__ import annotations

from collections.abc import Mapping

from cds.knowledge.ruleset import Condition, Group, Leaf, RuleSet

_MISSING = object()


def _kind(v: object) -> str:
    if isinstance(v, bool):
        return "bool"
    if isinstance(v, (int, float)):
        return "number"
    if isinstance(v, str):
        return "str"
    return "other"


def _equal(a: object, b: object) -> bool:
    return _kind(a) == _kind(b) and a == b


def _leaf(leaf: Leaf, facts: Mapping[str, object]) -> bool:
    value = facts.get(leaf.fact, _MISSING)
    if value is None:  # engine_facts never contains None; treat it like an absent fact
        value = _MISSING
    op = leaf.op
    if op == "known":
        return value is not _MISSING
    if op == "unknown":
        return value is _MISSING
    if value is _MISSING:
        return False
    target = leaf.value
    if op == "==":
        return _equal(value, target)
    if op == "!=":
        return not _equal(value, target)
    if op == "in":
        assert isinstance(target, tuple)
        return any(_equal(value, t) for t in target)
    if _kind(value) != "number" or _kind(target) != "number":
        return False
    if op == "<":
        return value < target  # type: ignore[operator]
    if op == "<=":
        return value <= target  # type: ignore[operator]
    if op == ">":
        return value > target  # type: ignore[operator]
    if op == ">=":
        return value >= target  # type: ignore[operator]
    raise ValueError(f"unknown operator {op!r}")


def holds(condition: Condition | None, facts: Mapping[str, object]) -> bool:
    """Whether `condition` holds for the flat fact dict `facts` (None: no condition, always holds)."""
    if condition is None:
        return True
    if isinstance(condition, Leaf):
        return _leaf(condition, facts)
    assert isinstance(condition, Group)
    if condition.mode == "all":
        return all(holds(item, facts) for item in condition.items)
    return any(holds(item, facts) for item in condition.items)


def fired_rules(ruleset: RuleSet, facts: Mapping[str, object]) -> frozenset[str]:
    """IDs of the active rules of `ruleset` whose condition holds for `facts`."""
    return frozenset(rule.id for rule in ruleset.rules if holds(rule.condition, facts))
