"""A reference interpreter of the rules: plain Python, no durable-rules, and its own reading of the rule files.

It exists to be obviously correct, so that the durable-rules engine can be checked against it on
many random profiles (tests/test_differential.py) and as the floor of the performance benchmark.
It shares nothing with the engine's path but the fact dicts: it reads the rule folder's family
files (``rules/*.yaml``) and ``catalog/settings.yaml`` itself, with PyYAML's *base* loader, which
types nothing (every scalar is a string), and types the literals of a condition by its own
grammar (below). So a bug in the engine's path, from reading the YAML to compiling the durable-rules
patterns, shows up as a difference; in particular YAML 1.1's implicit types, which PyYAML's safe
loader applies (``off``/``no``/``yes``/``on`` as booleans, ``0x1``, ``010``, ``1_000`` or ``1:30``
as integers): here those are plain words, as in YAML 1.2's JSON schema.

The condition language (the same documentation as cds/knowledge/ruleset.py, read independently):

- a string ``"<fact> <op> <value>"``, op one of ``== != < <= > >=`` and ``in`` (a list
  ``[a, b, ...]``), or ``"<fact> is known"`` / ``"<fact> is unknown"``; or a group
  ``{all: [...]}`` / ``{any: [...]}``; no condition: the rule always fires;
- a value is ``true``/``false`` (a boolean), a JSON number (``3``, ``-2``, ``0.5``, ``1.0e-3``),
  ``$name`` (the value of the named setting), a quoted string, or else the word as written;
- ``fact is known`` holds when the fact is present in the fact dict, ``is unknown`` when it is
  absent (`cds.model.facts.engine_facts` leaves an unknown fact out, never null);
- every comparison on an absent fact is false (unknown is not false), and comparisons are strictly
  typed: a boolean never equals a number, a string is never ordered against a number;
- ``all`` holds when every item holds, ``any`` when at least one does.

Retired rules (``status: retired``) are left out. The files are those the rule loader accepted
(cds.datafile bounds their size, depth and aliases first): this module only reads what validation
already let through, and raises ValueError on anything it cannot read.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

_MISSING = object()
_DECIDING = ("require", "exclude", "prefer", "deprefer")  # the rule kinds the ranking decision reads
_LEAF = re.compile(r"^\s*([a-z][a-z0-9_]*)\s*(==|!=|<=|>=|<|>|in\b|is\s+known$|is\s+unknown$)\s*(.*?)\s*$", re.DOTALL)
_INT = re.compile(r"-?(?:0|[1-9][0-9]*)")  # YAML 1.2 JSON schema
_FLOAT = re.compile(r"-?(?:0|[1-9][0-9]*)(?:\.[0-9]*)?(?:[eE][-+]?[0-9]+)?")
_BOOL = {"true": True, "True": True, "TRUE": True, "false": False, "False": False, "FALSE": False}  # YAML 1.2 core

# a condition, compiled: ("all" | "any", (items...)) or (op, fact, value); op "known"/"unknown" take no value
Node = tuple[Any, ...]


def _scalar(text: str) -> object:
    """A literal by this module's grammar (see the module docstring)."""
    text = text.strip()
    if len(text) >= 2 and text[0] == text[-1] and text[0] in "'\"":
        return text[1:-1]
    if text in _BOOL:
        return _BOOL[text]
    if _INT.fullmatch(text):
        return int(text)
    if _FLOAT.fullmatch(text):
        return float(text)
    return text


def _value(text: str, settings: Mapping[str, object], where: str) -> object:
    if text.startswith("$"):
        if text[1:] not in settings:
            raise ValueError(f"{where}: unknown setting {text!r}")
        return settings[text[1:]]
    return _scalar(text)


def parse(when: object, settings: Mapping[str, object] = {}, where: str = "when") -> Node | None:
    """The condition as the rule file has it (base-loaded: strings, lists and dicts) -> a node, or None."""
    if when is None or (isinstance(when, str) and when.strip() in ("", "~", "null", "Null", "NULL")):
        return None
    if isinstance(when, str):
        m = _LEAF.match(when.strip())
        if not m:
            raise ValueError(f"{where}: cannot read {when!r}")
        fact, op, rest = m.group(1), " ".join(m.group(2).split()), m.group(3)
        if op in ("is known", "is unknown"):
            return (op[3:], fact)
        if op == "in":
            if not (rest.startswith("[") and rest.endswith("]")) or not rest[1:-1].strip():
                raise ValueError(f"{where}: 'in' needs a list, got {rest!r}")
            return ("in", fact, tuple(_scalar(x) for x in rest[1:-1].split(",")))
        if not rest:
            raise ValueError(f"{where}: no value in {when!r}")
        return (op, fact, _value(rest, settings, where))
    if isinstance(when, dict) and len(when) == 1:
        ((mode, items),) = when.items()
        if mode in ("all", "any") and isinstance(items, list) and items:
            nodes = tuple(parse(item, settings, f"{where}.{mode}[{i}]") for i, item in enumerate(items))
            if any(n is None for n in nodes):
                raise ValueError(f"{where}: an empty condition inside '{mode}'")
            return (mode, nodes)
    raise ValueError(f"{where}: cannot read {when!r}")


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


def evaluate(node: Node | None, facts: Mapping[str, object]) -> bool:
    """Whether the compiled condition `node` holds for the flat fact dict `facts` (None: always)."""
    if node is None:
        return True
    op = node[0]
    if op == "all":
        return all(evaluate(item, facts) for item in node[1])
    if op == "any":
        return any(evaluate(item, facts) for item in node[1])
    value = facts.get(node[1], _MISSING)
    if value is None:  # engine_facts never contains None; treat it like an absent fact
        value = _MISSING
    if op == "known":
        return value is not _MISSING
    if op == "unknown":
        return value is _MISSING
    if value is _MISSING:
        return False
    target = node[2]
    if op == "==":
        return _equal(value, target)
    if op == "!=":
        return not _equal(value, target)
    if op == "in":
        return any(_equal(value, t) for t in target)
    if _kind(value) != "number" or _kind(target) != "number":
        return False
    if op == "<":
        return bool(value < target)
    if op == "<=":
        return bool(value <= target)
    if op == ">":
        return bool(value > target)
    if op == ">=":
        return bool(value >= target)
    raise ValueError(f"unknown operator {op!r}")


def holds(when: object, facts: Mapping[str, object], settings: Mapping[str, object] = {}) -> bool:
    """Whether a condition written as in a rule file holds for `facts`."""
    return evaluate(parse(when, settings), facts)


def _facts_of(node: Node | None) -> frozenset[str]:
    if node is None:
        return frozenset()
    if node[0] in ("all", "any"):
        return frozenset().union(*(_facts_of(n) for n in node[1]))
    return frozenset((node[1],))


@dataclass(frozen=True)
class RefRule:
    id: str
    file: str
    condition: Node | None
    facts: frozenset[str]
    decides: bool  # takes part in the ranking decision (kind require, exclude, prefer or deprefer)


def _base_load(path: Path) -> Any:
    import yaml

    loader = getattr(yaml, "CBaseLoader", yaml.BaseLoader)  # no implicit types: every scalar a string
    return yaml.load(path.read_text(encoding="utf-8"), Loader=loader)  # noqa: S506 - the base loader builds only str/list/dict


class Reference:
    """The active rules of a rule folder, read on their own; the same interface as `cds.engine.durable.Engine`."""

    def __init__(self, folder: Path):
        folder = Path(folder)
        settings_doc = _base_load(folder / "catalog" / "settings.yaml") or {}
        settings = {name: _scalar(spec["value"]) for name, spec in (settings_doc.get("settings") or {}).items()}
        rules: list[RefRule] = []
        for path in sorted(folder.glob("*.yaml")):
            doc = _base_load(path)
            for raw in doc.get("rules") or ():
                if raw.get("status", "active") == "retired":
                    continue
                node = parse(raw.get("when"), settings, f"{path.name} [{raw['id']}] when")
                decides = raw.get("kind") in _DECIDING
                rules.append(RefRule(raw["id"], path.name, node, _facts_of(node), decides))
        self.rules = tuple(rules)
        self.rule_ids = frozenset(r.id for r in rules)
        if len(self.rule_ids) != len(rules):
            raise ValueError(f"{folder}: a rule ID appears twice")

    def fired(self, facts: Mapping[str, object]) -> frozenset[str]:
        """IDs of the rules whose condition holds for `facts`."""
        return frozenset(r.id for r in self.rules if evaluate(r.condition, facts))

    def run(self, variants: Sequence[Mapping[str, object]], patient: str | None = None) -> list[frozenset[str]]:
        return [self.fired(v) for v in variants]

    def run_counterfactuals(
        self, base: Mapping[str, object], variants: Sequence[tuple[str, Mapping[str, object]]], patient: str | None = None
    ) -> list[frozenset[str]]:
        """As `Engine.run_counterfactuals`: a rule reading none of the facts a variant changes, or one that takes no
        part in the ranking decision, is reported as it fired for `base`."""
        fired = self.fired(base)
        out = [fired]
        for _scope, assignment in variants:
            facts = {**base, **assignment}
            changed = set(assignment)
            again = [r for r in self.rules if r.decides and r.facts & changed]
            out.append(frozenset((fired - {r.id for r in again}) | {r.id for r in again if evaluate(r.condition, facts)}))
        return out


@functools.lru_cache(maxsize=16)
def _cached(folder: str, digest: str) -> Reference:
    return Reference(Path(folder))


class RuleFolder(Protocol):
    """What the reference needs of a loaded rule set (`cds.knowledge.ruleset.RuleSet`): where it was read from and
    its hash. Nothing else of the loader's reading is used."""

    @property
    def directory(self) -> Path: ...

    @property
    def digest(self) -> str: ...


def for_ruleset(ruleset: RuleFolder) -> Reference:
    """The reference reading of the folder a loaded `RuleSet` came from (cached by folder and rule-set hash)."""
    return _cached(str(ruleset.directory), ruleset.digest)


def fired_rules(ruleset: RuleFolder, facts: Mapping[str, object]) -> frozenset[str]:
    """IDs of the active rules of `ruleset`'s folder whose condition holds for `facts` (by the reference's own reading)."""
    return for_ruleset(ruleset).fired(facts)
