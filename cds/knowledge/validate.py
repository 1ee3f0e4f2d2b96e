"""One collecting validator for a rule folder: `validate(directory) -> (RuleSet | None, problems)`.

The rule loader (`cds.knowledge.ruleset.load_ruleset`: stops when there is any
problem) and `cds rules check` (`cds.knowledge.check`: prints them all, then
runs the fixtures) both call it, so that they can never disagree on what is
wrong. Every file is read leniently, rule by rule, so that one problem never
hides another; each problem is one line naming the file and the rule:

- a file that cannot be read, is not YAML, or fails its schema (pydantic);
  a catalogue that does not load (drugs, regimens, cytogenetics, options,
  settings) and an evidence registry that does not;
- duplicate rule IDs (also across files), IDs without the family code, a family
  code used twice;
- an unknown option, fact, operator, setting or evidence ID;
- a literal in a condition that YAML 1.1 (the loader) reads otherwise than YAML 1.2 (``off`` is
  false, ``010`` is 8, ``1e3`` a word), with what to write instead (`scalar_literal_problems`
  finds the same anywhere else in the folder's YAML: `cds rules check` runs it);
- a key figure (the figure page 1 shows for an option) that is not a figure of that
  option's arm: an unknown or uncited evidence entry, a review's pooled figure, an agent
  outside the option's drug classes, no figure (or two) with the measure and arm named
  (`key_figure_problems`);
- a figure in a rule's title or rationale that is a figure a cited evidence entry carries an erratum
  for ("12.2 months", printed by S001, published 12.1) without the erratum's mark right after it,
  ``[erratum: 12.1 months]`` (``[probable erratum: ...]`` for an uncertain correction), giving a figure
  of the publication (`erratum_mark_problems`): the report prints rule texts as written, so the mark
  the evidence rows carry is beside the figure wherever a rule restates it;
- a condition that can never hold (`impossibility`): interval reasoning per fact
  over each conjunction of the condition's disjunctive normal form, using the
  fact catalogue's ranges, types and values (``ecog >= 3`` and ``ecog <= 1``;
  ``ecog >= 5``; ``frailty is unknown`` and ``frailty == frail``). An ``any`` is
  impossible only if all its branches are.

Fixtures (test data, not rules) live beside the rules in ``tests/<family>.yaml``
(`cds.knowledge.rulefiles.FixtureFile`), semgrep-rules style, so that a rule file
reads like a clinical document; they are read only when asked for
(``fixtures=True``: the rule check and `cds rules show`), and a fixture file that
names a rule file or rule ID that does not exist is a problem. Running them is
the checker's: see `cds.knowledge.check`.

The rule set returned with problems holds every rule that could be parsed and
compiled (the checker runs their fixtures); it is None when the drug vocabulary
does not load. Only a rule set returned without problems is fit to evaluate.
"""

from __future__ import annotations

import dataclasses
import math
import re
from collections.abc import Callable, Iterable
from datetime import date
from pathlib import Path
from typing import Any, NamedTuple, cast

from pydantic import ValidationError

from cds.errors import RuleSetError, printable
from cds.knowledge.evidence import Registry, load_registry, numbers_in
from cds.knowledge.rulefiles import FixtureFile, OptionsFile, RuleFile, RuleSpec, SettingsFile
from cds.knowledge.ruleset import (
    OPS,
    Condition,
    Fixtures,
    Leaf,
    OptionSpec,
    Rule,
    RuleSet,
    SettingSpec,
    check_leaf,
    cytogenetics_problems,
    leaves,
    parse_condition,
    read_rule_yaml,
    ruleset_digest,
    validation_lines,
)
from cds.model.facts import FACTS, FactSpec
from cds.model.vocabulary import Vocabulary, load_vocabulary

_MAX_CONJUNCTIONS = 4096


# --------------------------------------------------------------------------- impossible conditions


def _dnf(cond: Condition) -> list[tuple[Leaf, ...]] | None:
    """Disjunctive normal form: a list of conjunctions of leaves (None if it would be too large)."""
    if isinstance(cond, Leaf):
        return [(cond,)]
    parts: list[list[tuple[Leaf, ...]]] = []
    for item in cond.items:
        part = _dnf(item)
        if part is None:
            return None
        parts.append(part)
    if cond.mode == "any":
        out = [c for p in parts for c in p]
        return out if len(out) <= _MAX_CONJUNCTIONS else None
    out2: list[tuple[Leaf, ...]] = [()]
    for p in parts:
        out2 = [a + b for a in out2 for b in p]
        if len(out2) > _MAX_CONJUNCTIONS:
            return None
    return out2


def _range_text(spec: FactSpec) -> str:
    if spec.type == "bool":
        return "true or false"
    if spec.type == "enum":
        return "one of " + ", ".join(spec.values)
    lo = "-inf" if spec.minimum is None else f"{spec.minimum:g}"
    hi = "inf" if spec.maximum is None else f"{spec.maximum:g}"
    return f"{'an integer' if spec.type == 'int' else 'a number'} from {lo} to {hi}"


def _numeric_possible(spec: FactSpec, ls: list[Leaf]) -> bool:
    lo, lo_closed = (-math.inf, False) if spec.minimum is None else (float(spec.minimum), True)
    hi, hi_closed = (math.inf, False) if spec.maximum is None else (float(spec.maximum), True)
    excluded: set[float] = set()
    candidates: set[float] | None = None

    def tighten_lo(v: float, closed: bool) -> None:
        nonlocal lo, lo_closed
        if v > lo or (v == lo and not closed):
            lo, lo_closed = v, closed

    def tighten_hi(v: float, closed: bool) -> None:
        nonlocal hi, hi_closed
        if v < hi or (v == hi and not closed):
            hi, hi_closed = v, closed

    for leaf in ls:
        # check_leaf has passed: a numeric fact's values are numbers (a tuple of them for "in")
        if isinstance(leaf.value, tuple):
            vals = {float(x) for x in leaf.value if isinstance(x, (int, float))}
            candidates = vals if candidates is None else candidates & vals
            continue
        if not isinstance(leaf.value, (int, float)):
            continue
        v = float(leaf.value)
        if leaf.op == "==":
            candidates = {v} if candidates is None else candidates & {v}
        elif leaf.op == "!=":
            excluded.add(v)
        elif leaf.op == ">":
            tighten_lo(v, False)
        elif leaf.op == ">=":
            tighten_lo(v, True)
        elif leaf.op == "<":
            tighten_hi(v, False)
        elif leaf.op == "<=":
            tighten_hi(v, True)

    def inside(x: float) -> bool:
        if spec.type == "int" and x != int(x):
            return False
        above = x > lo or (x == lo and lo_closed)
        below = x < hi or (x == hi and hi_closed)
        return above and below and x not in excluded

    if candidates is not None:
        return any(inside(c) for c in candidates)
    if spec.type == "int":
        first = math.floor(lo) + 1 if (lo == math.floor(lo) and not lo_closed) else math.ceil(lo)
        last = math.ceil(hi) - 1 if (hi == math.ceil(hi) and not hi_closed) else math.floor(hi)
        if first > last:
            return False
        if last - first > 100_000:
            return True
        holes = {x for x in excluded if first <= x <= last and x == int(x)}
        return (last - first + 1) > len(holes)
    if lo < hi:
        return True  # a non-empty interval: finitely many excluded points cannot empty it
    return lo == hi and lo_closed and hi_closed and lo not in excluded


def _conjunction_problem(conj: tuple[Leaf, ...]) -> str | None:
    """Why this conjunction of leaves can never hold, or None if some facts satisfy it."""
    by_fact: dict[str, list[Leaf]] = {}
    for leaf in conj:
        by_fact.setdefault(leaf.fact, []).append(leaf)
    knownness: dict[str, tuple[bool, Leaf]] = {}  # group -> (must be known?, the leaf that says so)
    for fact, ls in by_fact.items():
        spec = FACTS[fact]
        unknown = [leaf for leaf in ls if leaf.op == "unknown"]
        known = [leaf for leaf in ls if leaf.op != "unknown"]
        if unknown and not spec.may_be_unknown:
            return f"{fact} is always known, so '{unknown[0].text()}' is never true"
        if unknown and known:
            return f"'{unknown[0].text()}' and '{known[0].text()}' contradict (a comparison on an unknown fact is never true)"
        if spec.group:
            need_known = bool(known)
            prev = knownness.get(spec.group)
            if prev is not None and prev[0] != need_known:
                a, b = prev[1], (known or unknown)[0]
                return f"'{a.text()}' and '{b.text()}' contradict ({spec.group} facts are known or unknown together)"
            knownness.setdefault(spec.group, (need_known, (known or unknown)[0]))
        comparisons = [leaf for leaf in ls if leaf.op not in ("known", "unknown")]
        if not comparisons:
            continue
        if spec.type in ("bool", "enum"):
            allowed: set[object] = {True, False} if spec.type == "bool" else set(spec.values)
            for leaf in comparisons:
                if leaf.op == "==":
                    allowed &= {leaf.value}
                elif leaf.op == "!=":
                    allowed -= {leaf.value}
                elif leaf.op == "in" and isinstance(leaf.value, tuple):
                    allowed &= set(leaf.value)
            possible = bool(allowed)
        else:
            possible = _numeric_possible(spec, comparisons)
        if not possible:
            texts = " and ".join(f"'{leaf.text()}'" for leaf in comparisons)
            verb = "is outside the possible values" if len(comparisons) == 1 else "contradict"
            return f"{texts} {verb} ({fact} is {_range_text(spec)})"
    return None


def impossibility(cond: Condition | None) -> str | None:
    """None if some facts satisfy `cond`; otherwise a one-line reason why it can never hold."""
    if cond is None:
        return None
    conjunctions = _dnf(cond)
    if conjunctions is None:
        return None  # too large to decide: assume it can hold
    reasons: list[str] = []
    for conj in conjunctions:
        reason = _conjunction_problem(conj)
        if reason is None:
            return None
        if reason not in reasons:
            reasons.append(reason)
    if len(conjunctions) == 1:
        return reasons[0]
    return "no branch can hold: " + "; ".join(reasons)


# --------------------------------------------------------------------------- unknown operators

_SYMBOL_OP = re.compile(r"^\s*[a-z][a-z0-9_]*\s*([<>=!~]+)")
_WORD_OP = re.compile(r"^\s*[a-z][a-z0-9_]*\s+([a-z]+(?:\s+[a-z]+)?)")
_VALID_SYMBOLS = {o for o in OPS if not o.isalpha()}


def _operator_problem(text: str) -> str | None:
    """An unknown operator in a condition string, e.g. '=>', '>==', 'equals', 'is not'."""
    m = _SYMBOL_OP.match(text)
    if m:
        op = m.group(1)
        return None if op in _VALID_SYMBOLS else f"unknown operator {op!r} in {text!r}"
    m = _WORD_OP.match(text)
    if m:
        words = m.group(1).split()
        if words[0] == "in":
            return None
        if words[0] == "is" and len(words) == 2 and words[1] in ("known", "unknown"):
            return None
        op = words[0] if words[0] != "is" else " ".join(words)
        return f"unknown operator {op!r} in {text!r} (use one of == != < <= > >= in, is known, is unknown)"
    return None


# --------------------------------------------------------------------------- YAML 1.1 literals

# A condition's value is read by PyYAML's safe loader, which follows YAML 1.1: `off`/`no`/`yes`/`on`
# are booleans, `0x1`, `010` (octal: 8), `1_000`, `+1` and `1:30` (sexagesimal: 90) integers, `.inf`
# and `.5` floats, `2026-01-01` a date, while `1e3` stays a word. A rule author reads the text as YAML
# 1.2 (JSON schema) does, which is how the reference interpreter (cds/engine/reference.py) reads it:
# where the two readings differ, the rule would test something other than what it says. Refused.
_VALUE_RE = re.compile(r"^\s*[a-z][a-z0-9_]*\s*(?:==|!=|<=|>=|<|>|\bin\b)\s*(.*?)\s*$", re.DOTALL)
_JSON_INT = re.compile(r"-?(?:0|[1-9][0-9]*)")
_JSON_FLOAT = re.compile(r"-?(?:0|[1-9][0-9]*)(?:\.[0-9]*)?(?:[eE][-+]?[0-9]+)?")
_JSON_BOOL = {"true": True, "True": True, "TRUE": True, "false": False, "False": False, "FALSE": False}
_JSON_NULL = ("null", "Null", "NULL", "~", "")


def _yaml12(text: str) -> object:
    """A plain scalar as YAML 1.2's JSON schema types it (a word that is no literal stays the word)."""
    if text in _JSON_NULL:
        return None
    if text in _JSON_BOOL:
        return _JSON_BOOL[text]
    if _JSON_INT.fullmatch(text):
        return int(text)
    if _JSON_FLOAT.fullmatch(text):
        return float(text)
    return text


def _read_as(value: object) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float) and not math.isfinite(value):
        return "NaN" if value != value else "infinity"
    if isinstance(value, (int, float)):
        return f"the number {value!r}"
    return f"a {type(value).__name__}"


def _spelled(value: object, literal: str) -> str:
    """How to write `value` (read from `literal`) so that YAML 1.1 and 1.2 read it alike."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float) and not math.isfinite(value):
        return "a finite number"
    if isinstance(value, (int, float)):
        return repr(value)
    return f"'{literal}' (quoted)"


def _literal_problems(text: str) -> list[str]:
    """Each plain literal in the value of condition `text` that YAML 1.1 reads otherwise than YAML 1.2."""
    import yaml

    m = _VALUE_RE.match(text)
    if not m or not m.group(1) or m.group(1).startswith("$"):
        return []
    try:
        root = yaml.compose(m.group(1), Loader=yaml.SafeLoader)
    except yaml.YAMLError:
        return []  # parse_condition says that the value cannot be read
    nodes = root.value if isinstance(root, yaml.SequenceNode) else [root]
    problems = []
    for node in nodes:
        if not isinstance(node, yaml.ScalarNode) or node.style is not None:
            continue  # quoted: a string in both
        literal = node.value
        difference = _difference(literal, yaml.safe_load(literal), _yaml12(literal))
        if difference is not None:
            problems.append(f"{literal!r} in {text!r} {difference}")
    return problems


def _difference(literal: str, v11: object, v12: object) -> str | None:
    """How YAML 1.1 (`v11`, the loader's reading) and 1.2 (`v12`) read the plain scalar `literal` apart, and what to
    write instead; None when they read it alike."""
    if type(v11) is type(v12) and (v11 == v12 or (v11 != v11 and v12 != v12)):
        return None
    if isinstance(v12, str):
        fix = _spelled(v11, literal)
        word = "" if fix.endswith("(quoted)") else f", or '{literal}' (quoted) for the word"
        return f"is {_read_as(v11)} to the rule loader (YAML 1.1) but the word {literal!r} in YAML 1.2; write {fix}{word}"
    return (
        f"is {_read_as(v11) if not isinstance(v11, str) else 'a word'} to the rule loader (YAML 1.1) but "
        f"{_read_as(v12)} in YAML 1.2; write {_spelled(v12, literal)}"
    )


def scalar_literal_problems(directory: Path) -> list[str]:
    """Every plain scalar of the rule folder's YAML files that YAML 1.1 reads otherwise than YAML 1.2, one line each
    (``<file> (line n) <key path>: <literal> is ...; write ...``): a value or a key anywhere in a rule file, a
    catalogue (``catalog/settings.yaml``'s ``value``s are read by the reference interpreter too), an evidence file or a
    fixture file (a fixture's ``set``: ``{ecog: 0x1, dialysis: no}`` is ECOG 1 and false to the loader only).

    `cds rules check` runs it (the loader does not: it would read every file a second time on each start; a literal
    inside a condition's text is the validator's own problem, `_literal_problems`). Dates are left to the schemas,
    which refuse a date wherever one is written unquoted (no field of these files takes a YAML date). The parser's
    events are walked (iterative: no nesting is too deep for it); a file that cannot be read or parsed is left to
    the validator, which reports it.
    """
    import yaml

    from cds.datafile import RULE_FILE_LIMIT, read_capped
    from cds.errors import ReadError

    resolver = yaml.resolver.Resolver()
    # the loader's implicit typing of a plain scalar (PyYAML's resolver is untyped)
    resolve = cast(Callable[[type[yaml.Node], str, tuple[bool, bool]], str], resolver.resolve)
    constructor = yaml.constructor.SafeConstructor()
    typed_first = set(resolver.yaml_implicit_resolvers)  # the first characters of every non-string YAML 1.1 plain scalar
    problems: list[str] = []
    for path in sorted(directory.rglob("*.yaml")):
        label = path.relative_to(directory).as_posix()
        try:
            text = read_capped(path, RULE_FILE_LIMIT, "a rule-folder file").decode("utf-8")
            found = []
            for line, where, literal in _plain_scalars(text):
                if literal[:1] not in typed_first:
                    continue  # a word to both versions (nearly every scalar)
                v11 = constructor.construct_object(yaml.ScalarNode(resolve(yaml.ScalarNode, literal, (True, False)), literal))
                difference = None if isinstance(v11, date) else _difference(literal, v11, _yaml12(literal))
                if difference is not None:
                    found.append(f"{label} (line {line}) {where}: {printable(literal)} {difference}")
        except (ReadError, UnicodeDecodeError, yaml.YAMLError):
            continue
        problems.extend(found)
    return problems


def _plain_scalars(text: str) -> Iterable[tuple[int, str, str]]:
    """(line, key path, literal) of each plain scalar without a tag in the YAML `text`, walking the parser's events.

    The key path is ``settings.x.value``, ``fixtures.R-1.fires[0].set.ecog``; a key is named by its mapping's path
    and ``(a key)``; ``(file)`` is the whole document.
    """
    import yaml

    # per open collection: [a mapping?, its key path, its current key (mapping) or item index (sequence), at a key?]
    stack: list[list[Any]] = []
    for event in yaml.parse(text, Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader)):
        if isinstance(event, yaml.CollectionEndEvent):
            stack.pop()
            continue
        if not isinstance(event, (yaml.ScalarEvent, yaml.CollectionStartEvent)):
            continue
        top = stack[-1] if stack else None
        if top is None:
            where = ""
        elif not top[0]:
            where = f"{top[1]}[{top[2]}]"
            top[2] += 1
        elif top[3]:
            where = f"{top[1]} (a key)" if top[1] else "(a key)"
            top[2] = event.value if isinstance(event, yaml.ScalarEvent) else "?"
        else:
            where = f"{top[1]}.{printable(top[2])}" if top[1] else printable(top[2])
        if top is not None and top[0]:
            top[3] = not top[3]
        if isinstance(event, yaml.ScalarEvent):
            if not event.style and event.implicit[0]:  # plain (the C parser says "", the Python one None), no tag
                yield (event.start_mark.line + 1 if event.start_mark else 0), where or "(file)", event.value
        else:
            stack.append([isinstance(event, yaml.MappingStartEvent), where.removesuffix(" (a key)"), 0, True])


def _condition_strings(raw: object) -> Iterable[str]:
    if isinstance(raw, str):
        yield raw
    elif isinstance(raw, dict):
        for v in raw.values():
            if isinstance(v, list):
                for item in v:
                    yield from _condition_strings(item)


# --------------------------------------------------------------------------- the validator


class Validation(NamedTuple):
    ruleset: RuleSet | None  # complete only when there is no problem (see the module docstring)
    problems: list[str]


def _read(path: Path, label: str, problems: list[str]) -> object:
    try:
        return read_rule_yaml(path, label)
    except RuleSetError as exc:
        problems.extend(exc.problems)
    return None


def _raw_evidence_ids(evidence_dir: Path) -> dict[str, str]:
    """Best effort when the registry does not load: every entry ID in the evidence files."""
    out: dict[str, str] = {}
    for path in sorted(evidence_dir.glob("*.yaml")):
        if path.name == "sources.yaml":
            continue
        try:
            raw = read_rule_yaml(path, path.name)
        except RuleSetError:
            continue
        entries = raw.get("entries") if isinstance(raw, dict) else None
        for e in entries if isinstance(entries, list) else []:
            if isinstance(e, dict) and isinstance(e.get("id"), str):
                out.setdefault(e["id"], f"evidence/{path.name}")
    return out


def _catalogue_options(directory: Path, vocabulary: Vocabulary | None, problems: list[str]) -> tuple[list[OptionSpec], list[str]]:
    """The options (when the file passes its schema) and every option ID written in the file."""
    options: list[OptionSpec] = []
    option_ids: list[str] = []
    raw = _read(directory / "catalog" / "options.yaml", "catalog/options.yaml", problems)
    if raw is not None:
        try:
            options = OptionsFile.model_validate(raw).options
            option_ids = [o.id for o in options]
        except ValidationError as exc:
            problems.extend(validation_lines("catalog/options.yaml", exc, raw))
            items = raw.get("options") if isinstance(raw, dict) else None
            option_ids = [o["id"] for o in items or [] if isinstance(o, dict) and isinstance(o.get("id"), str)]
    for oid in sorted({o for o in option_ids if option_ids.count(o) > 1}):
        problems.append(f"catalog/options.yaml: duplicate option ID {oid!r}")
    if vocabulary is not None:
        for o in options:
            for c in o.drug_classes:
                if c not in vocabulary.classes:
                    problems.append(f"catalog/options.yaml [{o.id}] drug_classes: unknown class {c!r}")
    return options, option_ids


def _catalogue_settings(directory: Path, problems: list[str]) -> dict[str, SettingSpec]:
    """The named settings; when the file fails its schema, every setting that has a numeric value (unvalidated)."""
    settings: dict[str, SettingSpec] = {}
    raw = _read(directory / "catalog" / "settings.yaml", "catalog/settings.yaml", problems)
    if raw is not None:
        try:
            settings = dict(SettingsFile.model_validate(raw).settings)
        except ValidationError as exc:
            problems.extend(validation_lines("catalog/settings.yaml", exc, raw))
            raw_map = raw.get("settings") if isinstance(raw, dict) else None
            for name, spec in raw_map.items() if isinstance(raw_map, dict) else ():
                if isinstance(spec, dict) and isinstance(spec.get("value"), (int, float)):
                    # only for reading conditions (the rule set is not fit to evaluate: there is a problem)
                    settings[str(name)] = SettingSpec.model_construct(value=spec["value"], unit="", why="")
    for name in settings:
        if not re.match(r"^[a-z][a-z0-9_]*$", name):
            problems.append(f"catalog/settings.yaml: setting name {name!r} must be lower_snake_case")
    return settings


def validate(directory: Path, fixtures: bool = False) -> Validation:
    """Every problem of the rule folder, one line each, and the rule set (see the module docstring);
    with `fixtures`, each rule carries its fixtures from ``tests/``."""
    directory = Path(directory)
    problems: list[str] = []
    if not directory.is_dir():
        return Validation(None, [f"{directory}: rule folder not found"])

    # --- catalogues and evidence: each loaded on its own, so one broken file hides nothing else
    vocabulary: Vocabulary | None = None
    try:
        vocabulary = load_vocabulary(directory / "catalog" / "drugs.yaml")
    except RuleSetError as exc:
        problems.extend(exc.problems)
    else:
        problems.extend(cytogenetics_problems(vocabulary))
    registry = Registry(sources={}, entries={}, entry_files={})
    try:
        registry = load_registry(directory / "evidence")
        evidence_files = dict(registry.entry_files)
    except RuleSetError as exc:
        problems.extend(exc.problems)
        evidence_files = _raw_evidence_ids(directory / "evidence")
    options, option_ids = _catalogue_options(directory, vocabulary, problems)
    settings = _catalogue_settings(directory, problems)

    # --- rule files, rule by rule
    rules: list[Rule] = []
    retired: list[Rule] = []
    seen: dict[str, str] = {}
    codes: dict[str, str] = {}
    files = sorted(directory.glob("*.yaml"))
    if not files:
        problems.append(f"{directory}: no rule files (rules/*.yaml)")
    for path in files:
        label = path.name
        before = len(problems)
        raw = _read(path, label, problems)
        if len(problems) > before:
            continue  # unreadable or not YAML: reported
        header = None
        schema_raw = _without_inline_fixtures(raw)  # those get their own line, below (_rule)
        try:
            header = RuleFile.model_validate(schema_raw)
        except ValidationError as exc:
            problems.extend(validation_lines(label, exc, schema_raw))
        if not isinstance(raw, dict):
            continue
        raw_code, raw_family, raw_rules = raw.get("code"), raw.get("family"), raw.get("rules")
        code = raw_code if isinstance(raw_code, str) else None
        family = raw_family if isinstance(raw_family, str) else path.stem
        if header is not None:
            if header.code in codes:
                problems.append(f"{label}: family code {header.code} is also used by {codes[header.code]}")
            codes[header.code] = label
        reviewed = header.last_reviewed if header is not None else "?"  # "?": the header's problem is reported
        for n, raw_rule in enumerate(raw_rules if isinstance(raw_rules, list) else []):
            if isinstance(raw_rule, dict):  # anything else is reported by the schema
                rule = _rule(raw_rule, n, label, family, code, option_ids, evidence_files, settings, seen, problems, reviewed)
                if rule is not None:
                    (rules if rule.status == "active" else retired).append(rule)

    if fixtures:
        rules, retired = _with_fixtures(directory, rules, retired, {p.name for p in files}, seen, problems)
    if vocabulary is None:
        return Validation(None, problems)
    if registry.entries:  # a registry that did not load is reported; its key figures cannot be checked
        problems.extend(key_figure_problems([*rules, *retired], registry, vocabulary, options))
    problems.extend(product_problems([*rules, *retired], vocabulary, options))
    if registry.entries:
        problems.extend(erratum_mark_problems([*rules, *retired], registry))
    ruleset = RuleSet(
        rules=tuple(rules),
        retired=tuple(retired),
        options=tuple(options),
        vocabulary=vocabulary,
        registry=registry,
        settings=settings,
        digest=ruleset_digest(directory),
        directory=directory,
    )
    return Validation(ruleset, problems)


def _without_inline_fixtures(raw: object) -> object:
    """A rule file's document without the `fixtures` of its rules (fixtures moved to tests/)."""
    if not isinstance(raw, dict) or not isinstance(raw.get("rules"), list):
        return raw
    rules = [{k: v for k, v in r.items() if k != "fixtures"} if isinstance(r, dict) else r for r in raw["rules"]]
    return {**raw, "rules": rules}


def _with_fixtures(
    directory: Path,
    rules: list[Rule],
    retired: list[Rule],
    rule_files: set[str],
    seen: dict[str, str],
    problems: list[str],
) -> tuple[list[Rule], list[Rule]]:
    """The rules with their fixtures from ``tests/*.yaml``; a fixture file or entry that names no rule
    of its rule file (`seen`: every rule ID written there, valid or not) is a problem."""
    found: dict[tuple[str, str], Fixtures] = {}
    for path in sorted((directory / "tests").glob("*.yaml")):
        label = f"tests/{path.name}"
        before = len(problems)
        raw = _read(path, label, problems)
        if len(problems) > before:
            continue
        try:
            spec = FixtureFile.model_validate(raw)
        except ValidationError as exc:
            problems.extend(validation_lines(label, exc, raw))
            continue
        if spec.rules not in rule_files:
            problems.append(f"{label}: rules: no rule file {spec.rules!r} in the rule folder")
            continue
        ids = {rid for rid, file in seen.items() if file == spec.rules}
        for rid, fx in spec.fixtures.items():
            if rid not in ids:
                problems.append(f"{label} [{rid}]: no such rule in {spec.rules}")
            elif (spec.rules, rid) in found:
                problems.append(f"{label} [{rid}]: fixtures given twice for this rule")
            else:
                found[(spec.rules, rid)] = fx

    def attach(rs: list[Rule]) -> list[Rule]:
        return [dataclasses.replace(r, fixtures=found[(r.file, r.id)]) if (r.file, r.id) in found else r for r in rs]

    return attach(rules), attach(retired)


def _rule(
    raw_rule: dict[str, object],
    n: int,
    label: str,
    family: str,
    code: str | None,
    option_ids: list[str],
    evidence_files: dict[str, str],
    settings: dict[str, SettingSpec],
    seen: dict[str, str],
    problems: list[str],
    reviewed: str | None = None,
) -> Rule | None:
    """Check one rule entry of a file; the rule, if it can be compiled (see the module docstring)."""
    rid = raw_rule.get("id") if isinstance(raw_rule.get("id"), str) else None
    where = f"{label} [{rid or 'rule #' + str(n + 1)}]"
    if "fixtures" in raw_rule:
        problems.append(f"{where} fixtures: fixtures live in tests/{label} beside the rules, not in the rule file")
    try:
        spec: RuleSpec | None = RuleSpec.model_validate({k: v for k, v in raw_rule.items() if k != "fixtures"})
    except ValidationError:
        spec = None  # its problems came with the file's schema lines
    duplicate = False
    if isinstance(rid, str):
        if rid in seen:
            problems.append(f"{where}: duplicate rule ID (also in {seen[rid]})")
            duplicate = True
        else:
            seen[rid] = label
        if code and not rid.startswith(code + "-"):
            problems.append(f"{where}: rule ID must start with the family code {code}-")
    raw_options = raw_rule.get("options")
    if isinstance(raw_options, list):
        for oid in raw_options:
            if isinstance(oid, str) and option_ids and oid not in option_ids:
                problems.append(f"{where} options: unknown option {oid!r}")
        if len(set(map(str, raw_options))) != len(raw_options):
            problems.append(f"{where} options: an option is listed twice")
    raw_cites = raw_rule.get("cites")
    if isinstance(raw_cites, list):
        for cid in raw_cites:
            if isinstance(cid, str) and cid not in evidence_files:
                problems.append(f"{where} cites: unknown evidence ID {cid!r}")
    ok, condition = _condition(raw_rule.get("when"), where, "when", settings, problems)
    if not ok:
        return None
    key_conditions: list[Condition | None] = []
    raw_keys = raw_rule.get("key_figures")
    for k, raw_key in enumerate(raw_keys if isinstance(raw_keys, list) else []):
        key_ok, key_condition = _condition(
            raw_key.get("when") if isinstance(raw_key, dict) else None, where, f"key_figures[{k}].when", settings, problems
        )
        if not key_ok:
            return None
        key_conditions.append(key_condition)
    if spec is not None:
        when = spec.last_reviewed or reviewed
        if when is None:
            problems.append(
                f"{where} last_reviewed: missing: the date of the rule's last clinical review (YYYY-MM-DD), "
                "for the rule or once for its file"
            )
        elif when != "?" and when > date.today().isoformat():
            problems.append(f"{where} last_reviewed: {when} is in the future")
    if spec is None or duplicate:
        return None
    return Rule.from_spec(spec, family, label, condition, None if reviewed == "?" else reviewed, tuple(key_conditions))


def _condition(
    raw_when: object, where: str, name: str, settings: dict[str, SettingSpec], problems: list[str]
) -> tuple[bool, Condition | None]:
    """A rule's condition (or a key figure's), checked: (False, None) when it cannot be compiled."""
    if raw_when is None:
        return True, None
    op_problems = [p for s in _condition_strings(raw_when) if (p := _operator_problem(s))]
    op_problems += [p for s in _condition_strings(raw_when) for p in _literal_problems(s)]
    for p in op_problems:
        problems.append(f"{where} {name}: {p}")
    try:
        condition = parse_condition(raw_when, name, settings)
    except ValueError as exc:
        if not op_problems:
            problems.append(f"{where} {exc}")
        return False, None
    leaf_problems = [p for leaf in leaves(condition) if (p := check_leaf(leaf))]
    for p in leaf_problems:
        if not (op_problems and "wrong type" in p):
            problems.append(f"{where} {name}: {p}")
    if leaf_problems or op_problems:
        return False, None
    reason = impossibility(condition)
    if reason:
        problems.append(f"{where} {name}: can never hold: {reason}")
    return True, condition


# The levels whose figures are a trial arm's (or a cohort's): a review's or an expert's pooled
# figure is not the figure of the option's arm.
_ARM_LEVELS = ("randomized_phase3", "randomized_phase2", "single_arm", "subgroup_analysis", "real_world")
# The measures page 1 shows as a key figure: efficacy, as a haematologist compares options.
KEY_FIGURE_MEASURES = ("orr", "cr", "median_pfs", "median_os", "pfs_rate", "os_rate", "median_dor")


def key_figure_problems(
    rules: Iterable[Rule], registry: Registry, vocabulary: Vocabulary, options: list[OptionSpec]
) -> list[str]:
    """A key figure must exist in the registry, be cited by its rule, and be a figure of the rule's option.

    "Of the option": the rule acts on one option, the entry is a trial (or cohort) result, its
    agent is a drug of one of the option's drug classes, and exactly one figure of the entry has
    the measure, arm and timepoint named (an entry with figures for two arms needs the arm).
    """
    problems = []
    by_id = {o.id: o for o in options}
    for rule in rules:
        where = f"{rule.file} [{rule.id}] key_figures"
        for n, k in enumerate(rule.key_figures):
            at = f"{where}[{n}]"
            if len(rule.options) != 1:
                problems.append(f"{at}: a key figure belongs to one option; the rule acts on {len(rule.options)}")
                continue
            option = by_id.get(rule.options[0])
            entry = registry.entries.get(k.evidence)
            if entry is None:
                problems.append(f"{at}: unknown evidence ID {k.evidence!r}")
                continue
            if k.evidence not in rule.cites:
                problems.append(f"{at}: {k.evidence} is not cited by the rule (add it to cites)")
            if k.measure not in KEY_FIGURE_MEASURES:
                problems.append(f"{at}: measure {k.measure!r} is not an efficacy measure ({', '.join(KEY_FIGURE_MEASURES)})")
            if entry.level not in _ARM_LEVELS:
                problems.append(f"{at}: {k.evidence} is a {entry.level_label}, not a trial arm's result")
            drug = vocabulary.lookup(entry.agent) if entry.agent else None
            if option is not None and (drug is None or drug.drug_class not in option.drug_classes):
                agent = f"agent {entry.agent!r}" if entry.agent else "no agent"
                problems.append(
                    f"{at}: {k.evidence} has {agent}, not a drug of option {option.id} ({', '.join(option.drug_classes) or 'no drug class'})"
                )
            matches = [f for f in entry.figures if f.measure == k.measure and f.arm == k.arm and f.timepoint == k.timepoint]
            if len(matches) != 1:
                given = "; ".join(f"arm {f.arm!r}, timepoint {f.timepoint!r}" for f in entry.figures if f.measure == k.measure)
                problems.append(
                    f"{at}: {k.evidence} has {len(matches)} {k.measure} figures with arm {k.arm!r} and timepoint {k.timepoint!r}"
                    + (f" (it has: {given})" if given else "")
                )
    return problems


def product_problems(rules: Iterable[Rule], vocabulary: Vocabulary, options: list[OptionSpec]) -> list[str]:
    """An option's `products` are drugs of its classes; a rule's `restricts_products` names some of them, not all.

    Page 1 names a restricting rule's products in place of the title's list, so a product it names must be
    one the option lists (by the same drug: an alias is the drug), and it must leave at least one out.
    """
    problems = []
    by_id = {o.id: o for o in options}

    def drug_of(name: str, option: OptionSpec, at: str) -> str | None:
        drug = vocabulary.lookup(name)
        if drug is None:
            problems.append(f"{at}: {name!r} is not a drug of catalog/drugs.yaml")
            return None
        if drug.drug_class not in option.drug_classes:
            problems.append(
                f"{at}: {name!r} ({drug.name}) is not a drug of option {option.id} ({', '.join(option.drug_classes)})"
            )
            return None
        return drug.name

    listed: dict[str, set[str]] = {}
    for o in options:
        names = [drug_of(p, o, f"catalog/options.yaml [{o.id}] products") for p in o.products]
        listed[o.id] = {n for n in names if n is not None}
    for rule in rules:
        if rule.restricts_products is None:
            continue
        at = f"{rule.file} [{rule.id}] restricts_products"
        option = by_id.get(rule.options[0])
        if option is None:
            continue  # the unknown option is reported with the rule
        if not option.products:
            problems.append(f"{at}: option {option.id} lists no products (catalog/options.yaml products) to restrict")
            continue
        named = {n for n in (drug_of(p, option, at) for p in rule.restricts_products.products) if n is not None}
        outside = sorted(n for n in named if n not in listed[option.id])
        if outside:
            problems.append(f"{at}: {', '.join(outside)} not among option {option.id}'s products ({', '.join(option.products)})")
        elif named == listed[option.id]:
            problems.append(f"{at}: names every product of option {option.id}: that restricts nothing")
    return problems


# a figure in a rule text: a number with its unit (as the figure check of tests/test_evidence.py reads them)
_TEXT_FIGURE = re.compile(r"(\d+(?:\.\d+)?)\s*(%|percent\b|months?\b|-month\b|years?\b|-year\b)")
_UNIT = {"percent": "%", "month": "months", "-month": "months", "year": "years", "-year": "years"}
# the mark that must follow a figure an erratum corrects: "[erratum: 12.1 months]", "[probable erratum: median PFS]"
_MARK = re.compile(r"\s*\[(probable )?erratum: ([^\]]+)\]")


def _figures(text: str) -> Iterable[tuple[tuple[str, str], re.Match[str]]]:
    for m in _TEXT_FIGURE.finditer(text):
        yield (m.group(1), _UNIT.get(m.group(2), m.group(2))), m


def erratum_mark_problems(rules: Iterable[Rule], registry: Registry) -> list[str]:
    """A figure a rule restates from a cited entry whose figure carries an erratum is followed by its mark.

    The figures an erratum concerns: its `value`, or (none given) the entry's figures of its measure. A rule
    text's figure with the same number and unit needs ``[erratum: ...]`` (``[probable erratum: ...]`` when
    the correction is not certain) right after it, naming a number the publication gives (its
    `published`), so that the report shows the source's figure and the correction together, as the
    evidence rows do; the figure itself stays as the source prints it.
    """
    problems = []
    for rule in rules:
        errata: dict[tuple[str, str], list[tuple[str, bool, str]]] = {}
        for cid in rule.cites:
            entry = registry.entries.get(cid)
            if entry is None:
                continue  # an unknown evidence ID is reported with the rule
            for c in entry.errata:
                if c.about != "figure" or c.published is None:
                    continue
                values = [c.value] if c.value else [f.value for f in entry.figures if f.measure == c.measure]
                for v in values:
                    for key, _ in _figures(v):
                        errata.setdefault(key, []).append((cid, c.certain, c.published))
        for field in ("title", "rationale"):
            text = getattr(rule, field)
            inside = [range(*k.span()) for k in _MARK.finditer(text)]  # a mark's own figures are the publication's
            for key, m in _figures(text):
                if key not in errata or any(m.start() in span for span in inside):
                    continue
                cid, certain, published = errata[key][0]
                mark = _MARK.match(text, m.end())
                wanted = "erratum" if certain else "probable erratum"
                numbers = set(numbers_in(published))
                if mark is None or bool(mark.group(1)) == certain or (numbers and not numbers & set(numbers_in(mark.group(2)))):
                    problems.append(
                        f"{rule.file} [{rule.id}] {field}: {m.group(0)!r} is a figure {cid} carries an erratum for "
                        f"(published: {published}); write it as printed followed by '[{wanted}: ...]' giving the published figure"
                    )
    return problems
