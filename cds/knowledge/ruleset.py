"""Rules as data: a loaded rule set, its conditions, loading and the rule-set hash (the files' formats:
`cds.knowledge.rulefiles`).

Layout of the rule folder::

    rules/<family>.yaml            one file per rule family (eligibility, sequencing, ...)
    rules/catalog/options.yaml     the treatment options the rules act on
    rules/catalog/drugs.yaml       the drug vocabulary
    rules/evidence/*.yaml          the evidence registry (see cds.knowledge.evidence)

A condition is written either as a string ``"<fact> <op> <value>"`` with op one
of ``== != < <= > >= in`` or ``"<fact> is known"`` / ``"<fact> is unknown"``,
or as a group ``{all: [...]}`` / ``{any: [...]}``. A comparison on an unknown
fact is never true (unknown is not false); only ``is unknown`` matches it.
A value is ``true``/``false``, a number as JSON writes it (``3``, ``0.5``, ``1.0e+2``), ``$name``
(a setting), a quoted string or a word. A literal that YAML 1.1 (the loader) reads otherwise than
YAML 1.2 (``off``, ``yes``, ``0x1``, ``010``, ``1_000``, ``.inf``, ``1e3``) is a validation problem
that says what to write instead (`cds.knowledge.validate`).

Rule kinds:
    require    the option is offered only if the condition holds (else excluded, with the reason)
    exclude    the option is excluded when the condition holds
    prefer     adds ``weight`` to the option's score when the condition holds
    deprefer   subtracts ``weight`` from the option's score when the condition holds
    caution    attaches a caution or monitoring note to the option
    next_step  attaches a sequencing note: what comes next at relapse after this option

Page-1 data on a rule (never read by the ranking):
    key_figures  on a ``prefer`` or ``require`` rule of one option: the figure page 1 shows for
                 the option when the rule fires (or holds), as evidence ID, measure and arm of a
                 figure the cited entry gives for that option's agent; ``when`` narrows the rule's
                 population to the trial's where the rule covers more (checked: `cds rules check`)
    unmet        on a ``require`` rule: the plain reason page 1 gives when it does not hold
                 ("no t(11;14)"); an unknown fact is said as unknown instead
    favourable   on a ``caution`` rule: ``true`` when the note favours the option or reassures
                 ("not an exclusion", "retains its efficacy"): page 1 never shows it as the caution
    page1_first  on a ``caution`` rule: ``true`` when the note decides what the board does now
                 (bridging for disease that cannot wait; BCMA may be lost after CAR-T): page 1 shows it
                 before the patient's other cautions, after the patient's own safety cautions
    restricts_products
                 on a ``caution`` rule of one option: ``{products: [...], why: "..."}``, the option's
                 products the evidence supports where the rule fires (a strict subset of the drugs of
                 the option's classes, named as the drug vocabulary names them or by an alias): page 1,
                 the card and the report's ``products_supported`` name these instead of the title's list
"""

from __future__ import annotations

import hashlib
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import date
from pathlib import Path
from typing import TYPE_CHECKING, Literal

from pydantic import Field, ValidationError

from cds.datafile import RULE_FILE_LIMIT, parse_yaml, read_capped, read_yaml
from cds.errors import ReadError, RuleSetError
from cds.knowledge.evidence import Registry
from cds.model.base import Strict, schema_problems
from cds.model.facts import CYTO_FACT, FACTS, Value
from cds.model.vocabulary import Vocabulary

if TYPE_CHECKING:
    from cds.knowledge.rulefiles import RuleSpec

RULE_ID = r"^[A-Z]{2,6}-[A-Z0-9]{2,8}-\d{3}$"
OPS = ("==", "!=", "<", "<=", ">", ">=", "in", "known", "unknown")
Op = Literal["==", "!=", "<", "<=", ">", ">=", "in", "known", "unknown"]
Kind = Literal["require", "exclude", "prefer", "deprefer", "caution", "next_step"]
#: rule kinds that take part in the ranking decision (cds.decide.decision); cautions and next steps never do
DECIDING_KINDS = frozenset({"require", "exclude", "prefer", "deprefer"})

# an operator as the condition pattern reads it (whitespace collapsed) -> the Leaf's op
_OP_TEXT: dict[str, Op] = {
    "==": "==",
    "!=": "!=",
    "<": "<",
    "<=": "<=",
    ">": ">",
    ">=": ">=",
    "in": "in",
    "is known": "known",
    "is unknown": "unknown",
}
_COND_RE = re.compile(r"^\s*([a-z][a-z0-9_]*)\s*(==|!=|<=|>=|<|>|\bin\b|\bis\s+known\b|\bis\s+unknown\b)\s*(.*?)\s*$")


#: a scalar a rule condition may be written with that no fact takes (a YAML date or timestamp, !!binary, !!set):
#: parse_condition keeps it in the Leaf so that check_leaf reports it with the other problems ("wrong type")
Unfit = date | bytes | set[object]


@dataclass(frozen=True)
class Leaf:
    fact: str
    op: Op
    value: Value | Unfit | tuple[Value | Unfit, ...] | None = None
    setting: str | None = None  # the named setting the value came from, if any

    def text(self) -> str:
        if self.op in ("known", "unknown"):
            return f"{self.fact} is {self.op}"
        v = self.value
        if isinstance(v, tuple):
            shown = "[" + ", ".join(_show(x) for x in v) + "]"
        else:
            shown = _show(v)
        if self.setting:
            shown += f" (setting {self.setting})"
        return f"{self.fact} {self.op} {shown}"


@dataclass(frozen=True)
class Group:
    mode: Literal["all", "any"]
    items: tuple[Condition, ...]

    def text(self) -> str:
        joiner = " and " if self.mode == "all" else " or "
        return joiner.join(f"({i.text()})" if isinstance(i, Group) else i.text() for i in self.items)


Condition = Leaf | Group


def _show(v: object) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    return str(v)


def _same_kind(a: object, b: object) -> bool:
    number = (int, float)
    return isinstance(a, bool) == isinstance(b, bool) and (
        isinstance(a, bool) or (isinstance(a, number) and isinstance(b, number)) or type(a) is type(b)
    )


def _leaf_holds(leaf: Leaf, facts: Mapping[str, object]) -> bool:
    present = facts.get(leaf.fact) is not None
    if leaf.op in ("known", "unknown"):
        return present == (leaf.op == "known")
    if not present:
        return False  # a comparison on an unknown fact is never true
    value = facts[leaf.fact]
    if leaf.op == "in":
        assert isinstance(leaf.value, tuple)
        return any(_same_kind(value, v) and value == v for v in leaf.value)
    if leaf.op in ("==", "!="):
        return (_same_kind(value, leaf.value) and value == leaf.value) == (leaf.op == "==")
    target = leaf.value  # a number of the same kind (check_leaf accepted it for a numeric fact), else never true
    if (
        isinstance(value, bool)
        or not isinstance(value, (int, float))
        or isinstance(target, bool)
        or not isinstance(target, (int, float))
    ):
        return False
    return {"<": value < target, "<=": value <= target, ">": value > target, ">=": value >= target}[leaf.op]


def condition_holds(cond: Condition | None, facts: Mapping[str, object]) -> bool:
    """Whether a parsed condition holds for the flat fact dict the engine receives (unknown facts absent).

    For page-1 data only (a key figure's ``when``, whether a caution is about the patient's facts):
    the ranking is the engine's alone. The semantics are those of the module docstring; a test
    checks this against the reference interpreter (`cds.engine.reference`) on every case.
    """
    if cond is None:
        return True
    if isinstance(cond, Leaf):
        return _leaf_holds(cond, facts)
    results = (condition_holds(item, facts) for item in cond.items)
    return all(results) if cond.mode == "all" else any(results)


def leaves(cond: Condition | None) -> list[Leaf]:
    if cond is None:
        return []
    if isinstance(cond, Leaf):
        return [cond]
    out: list[Leaf] = []
    for item in cond.items:
        out.extend(leaves(item))
    return out


def parse_condition(raw: object, where: str, settings: dict[str, SettingSpec] | None = None) -> Condition:
    """Parse the YAML form into Leaf/Group; raise ValueError with a readable message.

    A value written ``$name`` is the named setting ``name`` (rules/catalog/settings.yaml).
    """
    settings = settings or {}
    if isinstance(raw, str):
        m = _COND_RE.match(raw)
        if not m:
            raise ValueError(f"{where}: cannot read condition {raw!r} (expected '<fact> <op> <value>')")
        fact, written, rest = m.group(1), " ".join(m.group(2).split()), m.group(3)
        op = _OP_TEXT[written]
        if op in ("known", "unknown"):
            if rest:
                raise ValueError(f"{where}: unexpected text after {written!r} in {raw!r}")
            return Leaf(fact, op)
        if not rest:
            raise ValueError(f"{where}: condition {raw!r} has no value")
        if rest.startswith("$"):
            name = rest[1:]
            if name not in settings:
                raise ValueError(f"{where}: unknown setting {rest!r} in {raw!r}")
            if op == "in":
                raise ValueError(f"{where}: 'in' cannot take a setting")
            return Leaf(fact, op, settings[name].value, setting=name)
        try:
            value = parse_yaml(rest)
        except ReadError:
            raise ValueError(f"{where}: cannot read the value in {raw!r}") from None
        if op == "in":
            if not isinstance(value, list) or not value:
                raise ValueError(f"{where}: 'in' needs a non-empty list, got {rest!r}")
            return Leaf(fact, "in", tuple(value))
        if not isinstance(value, (bool, int, float, str, date, bytes, set)):  # a list, a mapping or null
            raise ValueError(f"{where}: {op!r} needs a single value, got {rest!r}")
        return Leaf(fact, op, value)  # an Unfit value is reported by check_leaf with the other problems
    if isinstance(raw, dict) and len(raw) == 1:
        ((mode, items),) = raw.items()
        if mode not in ("all", "any"):
            raise ValueError(f"{where}: a condition group is 'all' or 'any', not {mode!r}")
        if not isinstance(items, list) or not items:
            raise ValueError(f"{where}: '{mode}' needs a non-empty list of conditions")
        return Group(mode, tuple(parse_condition(i, f"{where}.{mode}[{n}]", settings) for n, i in enumerate(items)))
    raise ValueError(f"{where}: a condition is a string or a single-key mapping all/any, got {raw!r}")


class FixtureSpec(Strict):
    """A profile on which a rule must (or must not) fire: a base profile plus overrides."""

    profile: str = Field(pattern=r"^[a-z0-9_]+$", description="stem of a base profile tests/profiles/*.json of the rule folder")
    set: dict[str, object] = {}
    note: str | None = None


class Fixtures(Strict):
    fires: list[FixtureSpec] = []
    silent: list[FixtureSpec] = []


# immutable in use: never edited, only replaced; its two empty lists need no validation (nor pydantic's schema at start-up)
NO_FIXTURES = Fixtures.model_construct()


class OptionSpec(Strict):
    id: str = Field(pattern=r"^[a-z0-9_]+$")
    title: str
    summary: str
    drug_classes: list[str] = []
    targets: list[str] = []
    products: list[str] = Field(
        default=[],
        description="the products the title names (drug names or aliases of the option's classes): what a rule's restricts_products narrows",
    )


class SettingSpec(Strict):
    value: int | float
    unit: str
    why: str = Field(min_length=20)


@dataclass(frozen=True)
class KeyFigureRef:
    evidence: str
    measure: str
    arm: str | None
    timepoint: str | None
    condition: Condition | None  # None: whenever the rule fires


@dataclass(frozen=True)
class ProductsRef:
    products: tuple[str, ...]  # as the rule file names them (page 1 shows them so)
    why: str


@dataclass(frozen=True)
class Rule:
    id: str
    family: str
    file: str
    title: str
    kind: str
    options: tuple[str, ...]
    weight: int
    condition: Condition | None
    rationale: str
    cites: tuple[str, ...]
    category: str | None
    status: str
    fixtures: Fixtures = NO_FIXTURES  # read from rules/tests/ only by the rule check and `cds rules show`
    last_reviewed: str | None = None  # YYYY-MM-DD: the rule's own, else its file's (the rule check requires one)
    key_figures: tuple[KeyFigureRef, ...] = ()
    unmet: str | None = None
    favourable: bool = False
    restricts_products: ProductsRef | None = None
    page1_first: bool = False

    @classmethod
    def from_spec(
        cls,
        spec: RuleSpec,
        family: str,
        file: str,
        condition: Condition | None,
        reviewed: str | None = None,
        key_conditions: tuple[Condition | None, ...] = (),
    ) -> Rule:
        return cls(
            id=spec.id,
            family=family,
            file=file,
            title=spec.title,
            kind=spec.kind,
            options=tuple(spec.options),
            weight=spec.weight or 0,
            condition=condition,
            rationale=" ".join(spec.rationale.split()),
            cites=tuple(spec.cites),
            category=spec.category,
            status=spec.status,
            last_reviewed=spec.last_reviewed or reviewed,
            key_figures=tuple(
                KeyFigureRef(k.evidence, k.measure, k.arm, k.timepoint, c)
                for k, c in zip(spec.key_figures, key_conditions or (None,) * len(spec.key_figures))
            ),
            unmet=" ".join(spec.unmet.split()) if spec.unmet else None,
            favourable=spec.favourable,
            restricts_products=(
                ProductsRef(tuple(spec.restricts_products.products), " ".join(spec.restricts_products.why.split()))
                if spec.restricts_products is not None
                else None
            ),
            page1_first=spec.page1_first,
        )

    @property
    def decides(self) -> bool:
        """Whether the rule takes part in the ranking decision (`DECIDING_KINDS`)."""
        return self.kind in DECIDING_KINDS

    @property
    def signed_weight(self) -> int:
        return self.weight if self.kind == "prefer" else -self.weight if self.kind == "deprefer" else 0

    def condition_text(self) -> str:
        return self.condition.text() if self.condition is not None else "always"

    def facts_used(self) -> tuple[str, ...]:
        return tuple(dict.fromkeys(leaf.fact for leaf in leaves(self.condition)))


@dataclass(frozen=True)
class RuleSet:
    rules: tuple[Rule, ...]  # active rules, in file then definition order
    retired: tuple[Rule, ...]
    options: tuple[OptionSpec, ...]
    vocabulary: Vocabulary
    registry: Registry
    settings: dict[str, SettingSpec]
    digest: str
    directory: Path

    def option(self, option_id: str) -> OptionSpec:
        for o in self.options:
            if o.id == option_id:
                return o
        raise KeyError(option_id)

    def __getstate__(self) -> dict[str, object]:
        """What pickle keeps (the rule-set cache, cds.knowledge.rulecache): the fields, never the index of `rule`."""
        return {k: v for k, v in self.__dict__.items() if k != "_rule_index"}

    def rule(self, rule_id: str) -> Rule:
        """The rule with this ID, active or retired (KeyError if none). By an index built on first use: the
        report asks about 130 times per patient, and a scan of every rule was 15% of building a report."""
        index: dict[str, Rule] | None = self.__dict__.get("_rule_index")
        if index is None:
            index = {}
            for r in (*self.rules, *self.retired):
                index.setdefault(r.id, r)  # the first of an ID, as the scan found it
            object.__setattr__(self, "_rule_index", index)  # a cache beside the frozen fields, not one of them
        try:
            return index[rule_id]
        except KeyError:
            raise KeyError(rule_id) from None

    @property
    def option_ids(self) -> tuple[str, ...]:
        return tuple(o.id for o in self.options)


def rule_folder_files(directory: Path) -> list[Path]:
    """Every YAML file of the rule folder but the fixtures (``tests/``), sorted: what `ruleset_digest` covers.

    Symbolic links are followed, to files and to folders (a catalogue or evidence folder linked from
    elsewhere is read by the load, so it counts), each folder once (a link loop ends)."""
    found: list[Path] = []
    seen: set[str] = set()
    for top, dirs, names in os.walk(directory, followlinks=True):
        real = os.path.realpath(top)
        if real in seen:
            dirs[:] = []
            continue
        seen.add(real)
        here = Path(top)
        if here == directory:
            dirs[:] = [d for d in dirs if d != "tests"]
        found.extend(here / n for n in names if n.endswith(".yaml"))
    return sorted(found)


def ruleset_digest(directory: Path) -> str:
    """sha256 over every YAML file of the rule folder (relative path + bytes), sorted; the fixtures
    (``tests/``) are test data, not what decides, so editing one does not change the hash."""
    h = hashlib.sha256()
    for path in rule_folder_files(directory):
        rel = path.relative_to(directory).as_posix()
        try:
            data = read_capped(path, RULE_FILE_LIMIT, "a rule-folder file")
        except ReadError as exc:
            raise RuleSetError([f"{rel}: {exc.problem}"]) from None
        h.update(rel.encode() + b"\0" + data + b"\0")
    return h.hexdigest()


def rule_folder_snapshot(directory: Path) -> dict[str, bytes]:
    """The bytes of every file `ruleset_digest` covers, by path, read once (`load_ruleset`)."""
    out: dict[str, bytes] = {}
    for path in rule_folder_files(directory):
        try:
            out[os.fspath(path)] = read_capped(path, RULE_FILE_LIMIT, "a rule-folder file")
        except ReadError as exc:
            raise RuleSetError([f"{path.relative_to(directory).as_posix()}: {exc.problem}"]) from None
    return out


def read_rule_yaml(path: Path, label: str) -> object:
    """A file of the rule folder, parsed; RuleSetError (one line, naming `label`) when it cannot be read or is not YAML."""
    try:
        return read_yaml(path)
    except ReadError as exc:
        raise RuleSetError([f"{label}: {exc.problem}"]) from None


def validation_lines(label: str, exc: ValidationError, raw: object) -> list[str]:
    """One line per schema error of a rule or catalogue file (shared with cds.knowledge.check)."""
    return schema_problems(exc, raw, label, "rules", "rule")


def check_leaf(leaf: Leaf) -> str | None:
    """Type-check a leaf against the fact catalogue. Returns a problem or None."""
    spec = FACTS.get(leaf.fact)
    if spec is None:
        return f"unknown fact {leaf.fact!r}"
    if leaf.op in ("known", "unknown"):
        if leaf.op == "unknown" and not spec.may_be_unknown:
            return f"{leaf.fact} is always known: 'is unknown' can never hold"
        return None
    values = leaf.value if isinstance(leaf.value, tuple) else (leaf.value,)
    for v in values:
        if not spec.accepts(v):
            return f"{leaf.fact} is {spec.type}: value {v!r} has the wrong type"
    if leaf.op in ("<", "<=", ">", ">=") and spec.type not in ("int", "float"):
        return f"{leaf.op!r} needs a numeric fact; {leaf.fact} is {spec.type}"
    if spec.type == "bool" and leaf.op == "in":
        return f"use == on the boolean {leaf.fact}"
    return None


def cytogenetics_problems(vocabulary: Vocabulary) -> list[str]:
    """The rule folder's cytogenetics catalogue must name the facts the engine's fact catalogue has."""
    mine = {c.name: c.fact for c in vocabulary.cytogenetics}
    if mine == CYTO_FACT:
        return []
    return [
        "catalog/cytogenetics.yaml: the abnormalities and facts differ from the fact catalogue of this cds version "
        f"({', '.join(f'{k}={v}' for k, v in CYTO_FACT.items())}); a new abnormality needs a new release"
    ]


def load_ruleset(directory: Path, fixtures: bool = False) -> RuleSet:
    """Load and validate every file of the rule folder. Raises RuleSetError listing every problem
    (the problems `cds rules check` prints: both come from `cds.knowledge.validate.validate`).
    The rule fixtures (``tests/``) are read only with `fixtures` (evaluating never needs them).
    Without them, a rule set validated before comes from this user's cache (`cds.knowledge.rulecache`)."""
    from cds.knowledge import rulecache  # both build on this module

    if not fixtures:  # the rule set a load found no problem in before, if this user has it
        known = rulecache.cached_ruleset(directory)
        if known is not None:
            return known
    from cds import datafile
    from cds.knowledge.validate import validate

    # every file read once, first: what is validated is exactly what the rule-set hash covers, even if the
    # folder changes during the load (a checkout meanwhile); a file added or removed meanwhile is refused
    snapshot = rule_folder_snapshot(Path(directory)) if Path(directory).is_dir() else None
    datafile._SNAPSHOT = snapshot
    try:
        with rulecache.documents(directory) as cached:  # the YAML documents parsed already, if this user has them
            ruleset, problems = validate(directory, fixtures=fixtures)
            if problems:
                raise RuleSetError(problems)
            if snapshot is not None and {os.fspath(p) for p in rule_folder_files(Path(directory))} != set(snapshot):
                raise RuleSetError([f"{directory}: files were added or removed while the rule folder loaded; load it again"])
            cached.store()
    finally:
        datafile._SNAPSHOT = None
    assert ruleset is not None  # no problem: the vocabulary loaded
    if not fixtures:
        rulecache.store_ruleset(directory, ruleset)
    return ruleset
