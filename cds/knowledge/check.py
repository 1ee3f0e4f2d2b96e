"""`cds rules check`: prove the rule folder consistent, reporting every problem at once.

`load_ruleset` stops at the first broken file header, skips a file whose schema
fails, and raises on a broken catalogue; the check here reads every file
leniently instead, rule by rule, so that one problem never hides another, and
returns one line per problem naming the file and the rule:

- schema problems (pydantic), YAML that does not parse, a catalogue that does not load;
- duplicate rule IDs (also across files), IDs without the family code;
- an unknown option, fact (field), operator, setting or evidence ID;
- a condition that can never hold (`impossibility`): interval reasoning per fact
  over each conjunction of the condition's disjunctive normal form, using the
  fact catalogue's ranges, types and values (``ecog >= 3`` and ``ecog <= 1``;
  ``ecog >= 5``; ``frailty is unknown`` and ``frailty == frail``). An ``any`` is
  impossible only if all its branches are;
- a rule without citations or without fixtures (a rule without ``when`` needs
  ``fires`` fixtures; a conditional rule needs ``fires`` and ``silent`` ones);
- a rule too large for durable-rules even in a ruleset of its own (`capacity`: the same
  shard plan the engine compiles, `cds.engine.capacity`), and the plan's summary;
- a fixture that does not behave as declared, run through the real
  durable-rules engine (`cds.knowledge.fixtures.run_fixtures`).

Evidence entries that no rule cites are *warnings*: they do not fail the check.

The module also formats `cds rules list` and `cds rules show` (plain text; the
CLI only prints it).
"""

from __future__ import annotations

import difflib
import json
import math
import re
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import SimpleNamespace

import yaml
from pydantic import ValidationError

from cds.errors import CdsError, InputError, RuleSetError
from cds.knowledge.evidence import Registry, load_registry
from cds.knowledge.fixtures import FixtureRunner
from cds.knowledge.fixtures import run_fixtures as _run_fixtures
from cds.knowledge.ruleset import (
    OPS,
    Condition,
    Group,
    Leaf,
    OptionsFile,
    Rule,
    RuleFile,
    RuleSet,
    RuleSpec,
    SettingsFile,
    check_leaf,
    leaves,
    load_ruleset,
    parse_condition,
    ruleset_digest,
    validation_lines,
)
from cds.model.facts import FACTS
from cds.model.vocabulary import load_vocabulary
from cds.resources import load_yaml

_MAX_CONJUNCTIONS = 4096


# --------------------------------------------------------------------------- impossible conditions


def _dnf(cond: Condition) -> list[tuple[Leaf, ...]] | None:
    """Disjunctive normal form: a list of conjunctions of leaves (None if it would be too large)."""
    if isinstance(cond, Leaf):
        return [(cond,)]
    parts = [_dnf(item) for item in cond.items]
    if any(p is None for p in parts):
        return None
    if cond.mode == "any":
        out = [c for p in parts for c in p]  # type: ignore[union-attr]
        return out if len(out) <= _MAX_CONJUNCTIONS else None
    out2: list[tuple[Leaf, ...]] = [()]
    for p in parts:
        out2 = [a + b for a in out2 for b in p]  # type: ignore[union-attr]
        if len(out2) > _MAX_CONJUNCTIONS:
            return None
    return out2


def _range_text(spec) -> str:
    if spec.type == "bool":
        return "true or false"
    if spec.type == "enum":
        return "one of " + ", ".join(spec.values)
    lo = "-inf" if spec.minimum is None else f"{spec.minimum:g}"
    hi = "inf" if spec.maximum is None else f"{spec.maximum:g}"
    return f"{'an integer' if spec.type == 'int' else 'a number'} from {lo} to {hi}"


def _numeric_possible(spec, ls: list[Leaf]) -> bool:
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
        v = leaf.value
        if leaf.op == "in":
            vals = {float(x) for x in v}  # type: ignore[union-attr]
            candidates = vals if candidates is None else candidates & vals
            continue
        v = float(v)  # type: ignore[arg-type]
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
                elif leaf.op == "in":
                    allowed &= set(leaf.value)  # type: ignore[arg-type]
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


def _condition_strings(raw: object) -> Iterable[str]:
    if isinstance(raw, str):
        yield raw
    elif isinstance(raw, dict):
        for v in raw.values():
            if isinstance(v, list):
                for item in v:
                    yield from _condition_strings(item)


# --------------------------------------------------------------------------- the check


@dataclass
class CheckReport:
    problems: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    rules_checked: int = 0
    fixtures_run: int = 0
    capacity: str = ""  # how the engine holds the rules (`cds.engine.capacity.Plan.summary`)

    @property
    def ok(self) -> bool:
        return not self.problems

    def add(self, line: str) -> None:
        if line not in self.problems:
            self.problems.append(line)


def _read(path: Path, label: str, report: CheckReport) -> object:
    try:
        return load_yaml(path.read_text(encoding="utf-8"))
    except OSError as exc:
        report.add(f"{label}: cannot be read: {exc.strerror}")
    except yaml.YAMLError as exc:
        report.add(f"{label}: not valid YAML: {' '.join(str(exc).split())}")
    return None


def _raw_evidence_ids(evidence_dir: Path) -> dict[str, str]:
    """Best effort when the registry does not load: every entry ID in the evidence files."""
    out: dict[str, str] = {}
    for path in sorted(evidence_dir.glob("*.yaml")):
        if path.name == "sources.yaml":
            continue
        try:
            raw = load_yaml(path.read_text(encoding="utf-8"))
        except (OSError, yaml.YAMLError):
            continue
        entries = raw.get("entries") if isinstance(raw, dict) else None
        for e in entries if isinstance(entries, list) else []:
            if isinstance(e, dict) and isinstance(e.get("id"), str):
                out.setdefault(e["id"], f"evidence/{path.name}")
    return out


def _rule_key(line: str) -> str | None:
    m = re.match(r"^(\S+ \[[^\]]+\])", line)
    return m.group(1) if m else None


def default_profiles_dir(rules_directory: Path) -> Path | None:
    """The case folder fixtures refer to: beside the rule folder, else in the working directory."""
    for candidate in (rules_directory.parent / "patient_profiles", Path.cwd() / "patient_profiles"):
        if candidate.is_dir():
            return candidate
    return None


def check_rules(
    directory: Path,
    profiles_dir: Path | None = None,
    run_fixtures: bool = True,
    runner: Callable[[RuleSet], FixtureRunner] | None = None,
    capacity: Callable[[Sequence[Rule]], tuple[dict[str, str], str]] | None = None,
) -> CheckReport:
    """Check the rule folder; every problem is one line naming the file and the rule.

    `runner` builds the matcher the fixtures run on from the rules that compiled
    (the real engine: `cds.check_rules` passes it); without one, fixtures are not run.
    `capacity` plans the engine's rulesets for the rules that compiled: a problem line per
    rule ID that fits in none, and a summary (`cds.check_rules` passes the engine's).
    """
    report = CheckReport()
    directory = Path(directory)
    if not directory.is_dir():
        report.add(f"{directory}: rule folder not found")
        return report

    # --- catalogues and evidence: each loaded on its own, so one broken file hides nothing else
    vocabulary = None
    try:
        vocabulary = load_vocabulary(directory / "catalog" / "drugs.yaml")
    except RuleSetError as exc:
        for p in exc.problems:
            report.add(p)
    registry: Registry | None = None
    try:
        registry = load_registry(directory / "evidence")
        evidence_files = dict(registry.entry_files)
    except RuleSetError as exc:
        for p in exc.problems:
            report.add(p)
        evidence_files = _raw_evidence_ids(directory / "evidence")

    options = None
    option_ids: list[str] = []
    raw_opts = _read(directory / "catalog" / "options.yaml", "catalog/options.yaml", report)
    if raw_opts is not None:
        try:
            options = OptionsFile.model_validate(raw_opts).options
            option_ids = [o.id for o in options]
        except ValidationError as exc:
            for p in validation_lines("catalog/options.yaml", exc, raw_opts):
                report.add(p)
            items = raw_opts.get("options") if isinstance(raw_opts, dict) else None
            option_ids = [o["id"] for o in items or [] if isinstance(o, dict) and isinstance(o.get("id"), str)]
    for oid in sorted({o for o in option_ids if option_ids.count(o) > 1}):
        report.add(f"catalog/options.yaml: duplicate option ID {oid!r}")
    if options is not None and vocabulary is not None:
        for o in options:
            for c in o.drug_classes:
                if c not in vocabulary.classes:
                    report.add(f"catalog/options.yaml [{o.id}] drug_classes: unknown class {c!r}")

    settings: dict = {}
    raw_settings = _read(directory / "catalog" / "settings.yaml", "catalog/settings.yaml", report)
    if raw_settings is not None:
        try:
            settings = dict(SettingsFile.model_validate(raw_settings).settings)
        except ValidationError as exc:
            for p in validation_lines("catalog/settings.yaml", exc, raw_settings):
                report.add(p)
            raw_map = raw_settings.get("settings") if isinstance(raw_settings, dict) else None
            for name, spec in (raw_map or {}).items() if isinstance(raw_map, dict) else []:
                if isinstance(spec, dict) and isinstance(spec.get("value"), (int, float)):
                    settings[name] = SimpleNamespace(value=spec["value"])
    for name in settings:
        if not re.match(r"^[a-z][a-z0-9_]*$", str(name)):
            report.add(f"catalog/settings.yaml: setting name {name!r} must be lower_snake_case")

    # --- rule files, rule by rule
    runnable: list[Rule] = []
    cited: set[str] = set()
    seen: dict[str, str] = {}
    codes: dict[str, str] = {}
    files = sorted(directory.glob("*.yaml"))
    if not files:
        report.add(f"{directory}: no rule files (rules/*.yaml)")
    for path in files:
        label = path.name
        before = len(report.problems)
        raw = _read(path, label, report)
        if len(report.problems) > before:
            continue  # unreadable or not YAML: reported
        header = None
        try:
            header = RuleFile.model_validate(raw)
        except ValidationError as exc:
            for p in validation_lines(label, exc, raw):
                report.add(p)
        if not isinstance(raw, dict):
            continue
        code = raw.get("code") if isinstance(raw.get("code"), str) else None
        family = raw.get("family") if isinstance(raw.get("family"), str) else path.stem
        if header is not None:
            if header.code in codes:
                report.add(f"{label}: family code {header.code} is also used by {codes[header.code]}")
            codes[header.code] = label
        raw_rules = raw.get("rules") if isinstance(raw.get("rules"), list) else []
        for n, raw_rule in enumerate(raw_rules):
            if not isinstance(raw_rule, dict):
                continue  # reported by the schema
            rid = raw_rule.get("id") if isinstance(raw_rule.get("id"), str) else None
            where = f"{label} [{rid or 'rule #' + str(n + 1)}]"
            report.rules_checked += 1
            try:
                spec = RuleSpec.model_validate(raw_rule)
            except ValidationError:
                spec = None  # its problems came with the file's schema lines
            duplicate = False
            if rid is not None:
                if rid in seen:
                    report.add(f"{where}: duplicate rule ID (also in {seen[rid]})")
                    duplicate = True
                else:
                    seen[rid] = label
                if code and not rid.startswith(code + "-"):
                    report.add(f"{where}: rule ID must start with the family code {code}-")
            raw_options = raw_rule.get("options")
            if isinstance(raw_options, list):
                for oid in raw_options:
                    if isinstance(oid, str) and option_ids and oid not in option_ids:
                        report.add(f"{where} options: unknown option {oid!r}")
                if len(set(map(str, raw_options))) != len(raw_options):
                    report.add(f"{where} options: an option is listed twice")
            raw_cites = raw_rule.get("cites")
            if isinstance(raw_cites, list):
                for cid in raw_cites:
                    if not isinstance(cid, str):
                        continue
                    if raw_rule.get("status", "active") != "retired":
                        cited.add(cid)
                    if cid not in evidence_files:
                        report.add(f"{where} cites: unknown evidence ID {cid!r}")
            condition = None
            condition_ok = True
            raw_when = raw_rule.get("when")
            if raw_when is not None:
                op_problems = [p for s in _condition_strings(raw_when) if (p := _operator_problem(s))]
                for p in op_problems:
                    report.add(f"{where} when: {p}")
                try:
                    condition = parse_condition(raw_when, "when", settings)
                except ValueError as exc:
                    condition_ok = False
                    if not op_problems:
                        report.add(f"{where} {exc}")
                if condition is not None:
                    for leaf in leaves(condition):
                        problem = check_leaf(leaf)
                        if problem:
                            condition_ok = False
                            if not (op_problems and "wrong type" in problem):
                                report.add(f"{where} when: {problem}")
                    if condition_ok and not op_problems:
                        reason = impossibility(condition)
                        if reason:
                            report.add(f"{where} when: can never hold: {reason}")
                        fields = sorted(
                            {
                                FACTS[leaf.fact].input_field or leaf.fact
                                for leaf in leaves(condition)
                                if leaf.fact in FACTS and FACTS[leaf.fact].may_be_unknown
                            }
                        )
                        ranking_kinds = ("require", "exclude", "prefer", "deprefer")
                        if len(fields) > 1 and spec is not None and spec.status != "retired" and spec.kind in ranking_kinds:
                            # the unknown-fact analysis varies one missing field at a time
                            report.warnings.append(
                                f"{where} when: reads {len(fields)} fields that can be unknown ({', '.join(fields)}); "
                                "the unknown-facts analysis varies one field at a time and cannot show their joint effect"
                            )
            if spec is None or spec.status == "retired":
                continue
            fx = spec.fixtures
            if not fx.fires:
                report.add(f"{where} fixtures: no 'fires' fixture (a profile on which the rule must fire)")
            if raw_when is not None and not fx.silent:
                report.add(f"{where} fixtures: no 'silent' fixture (a profile on which the rule must not fire)")
            if duplicate or not condition_ok or (raw_when is not None and condition is None):
                continue
            runnable.append(Rule.from_spec(spec, family, label, condition))

    # --- whatever load_ruleset finds that the lenient pass did not (a safety net, without repeats)
    try:
        load_ruleset(directory)
    except RuleSetError as exc:
        covered = {k for k in map(_rule_key, report.problems) if k}
        for p in exc.problems:
            key = _rule_key(p)
            if key is None or key not in covered:
                report.add(p)
    except CdsError as exc:  # pragma: no cover - defensive
        report.add(f"{directory}: {exc}")

    # --- engine capacity: the shard plan the engine compiles (a rule that fits nowhere is not run)
    if capacity is not None and runnable:
        too_large, report.capacity = capacity(runnable)
        for line in too_large.values():
            report.add(line)
        runnable = [r for r in runnable if r.id not in too_large]

    # --- fixtures, through the real engine, on every rule that could be compiled
    if run_fixtures and runner is not None and any(r.fixtures.fires or r.fixtures.silent for r in runnable):
        if profiles_dir is None or not Path(profiles_dir).is_dir():
            report.add(f"fixtures: the case folder {profiles_dir or 'patient_profiles/'} was not found (use --profiles)")
        elif vocabulary is None:
            report.add("fixtures: not run, the drug vocabulary (catalog/drugs.yaml) does not load")
        else:
            ruleset = RuleSet(
                rules=tuple(runnable),
                retired=(),
                options=tuple(options or ()),
                vocabulary=vocabulary,
                registry=registry or Registry(sources={}, entries={}, entry_files={}),
                settings=dict(settings),
                digest=ruleset_digest(directory),
                directory=directory,
            )
            try:
                evaluator = runner(ruleset)
            except CdsError as exc:
                report.add(f"fixtures: not run, the rules do not compile on durable-rules: {exc}")
            else:
                for rule in runnable:
                    for result in _run_fixtures(rule, evaluator, Path(profiles_dir)):
                        report.fixtures_run += 1
                        if not result.ok:
                            report.add(f"{rule.file} [{rule.id}] fixtures: {result.problem}")

    # --- warnings
    for eid, efile in evidence_files.items():
        if eid not in cited:
            report.warnings.append(f"{efile} [{eid}]: cited by no rule")
    return report


# --------------------------------------------------------------------------- list and show


def list_rows(ruleset: RuleSet) -> list[tuple[str, str, str, str, str]]:
    """(ID, family, kind, option(s), title) for every rule, active then retired."""
    rows = []
    for r in (*ruleset.rules, *ruleset.retired):
        title = r.title if r.status == "active" else f"[retired] {r.title}"
        rows.append((r.id, r.family, r.kind, ", ".join(r.options), title))
    return rows


def format_table(header: tuple[str, ...], rows: list[tuple[str, ...]]) -> str:
    widths = [max(len(str(x)) for x in col) for col in zip(header, *rows)]
    widths[-1] = 0  # the last column is not padded
    out = []
    for row in (header, *rows):
        out.append("  ".join(str(x).ljust(w) for x, w in zip(row, widths)).rstrip())
    return "\n".join(out) + "\n"


_KIND_EFFECT = {
    "require": "the option is offered only if the condition holds (an unknown fact never satisfies it)",
    "exclude": "the option is excluded when the condition holds",
    "prefer": "adds {w} to the option's score when the condition holds",
    "deprefer": "subtracts {w} from the option's score when the condition holds",
    "caution": "attaches a caution or monitoring note to the option when the condition holds",
    "next_step": "attaches a note on what comes next at relapse when the condition holds",
}


def _condition_lines(cond: Condition, indent: str) -> list[str]:
    if isinstance(cond, Leaf):
        return [f"{indent}{cond.text()}"]
    out = [f"{indent}{'all of' if cond.mode == 'all' else 'any of'}:"]
    for item in cond.items:
        out.extend(_condition_lines(item, indent + "  "))
    return out


def _wrap(text: str, indent: str, width: int = 100) -> list[str]:
    import textwrap

    return textwrap.wrap(" ".join(text.split()), width=width, initial_indent=indent, subsequent_indent=indent) or [indent]


def show_rule(ruleset: RuleSet, rule_id: str) -> str:
    """The rule in plain language: condition, effect, rationale, evidence with quotes, fixtures."""
    try:
        r = ruleset.rule(rule_id.strip().upper())
    except KeyError:
        ids = [x.id for x in (*ruleset.rules, *ruleset.retired)]
        close = difflib.get_close_matches(rule_id.upper(), ids, n=3, cutoff=0.6)
        hint = f"; did you mean {', '.join(close)}?" if close else " (see `cds rules list`)"
        raise InputError(f"unknown rule ID {rule_id!r}{hint}") from None
    lines = [f"{r.id}: {r.title}", ""]
    lines.append(f"  file:     {r.file} (family {r.family}){'   RETIRED' if r.status == 'retired' else ''}")
    lines.append(
        f"  kind:     {r.kind}{f' (weight {r.weight})' if r.weight else ''}" + (f", category {r.category}" if r.category else "")
    )
    opts = []
    for oid in r.options:
        try:
            opts.append(f"{oid} ({ruleset.option(oid).title})")
        except KeyError:
            opts.append(oid)
    lines.append(f"  options:  {'; '.join(opts)}")
    lines.append(f"  effect:   {_KIND_EFFECT[r.kind].format(w=r.weight)}")
    lines.append("")
    if r.condition is None:
        lines.append("When: always (no condition)")
    else:
        lines.append(f"When: {r.condition_text()}")
        if isinstance(r.condition, Group):
            lines.extend(_condition_lines(r.condition, "  "))
        lines.append("  (a comparison on an unknown fact is never true)")
        lines.append("Facts used:")
        for fact in r.facts_used():
            spec = FACTS.get(fact)
            lines.append(f"  {fact}: {spec.description if spec else '(not in the fact catalogue)'}")
    lines.append("")
    lines.append("Rationale:")
    lines.extend(_wrap(r.rationale, "  "))
    lines.append("")
    lines.append("Evidence:")
    for cid in r.cites:
        entry = ruleset.registry.entries.get(cid)
        if entry is None:
            lines.append(f"  {cid}: (not in the evidence registry)")
            continue
        where = entry.source + (f", {entry.location}" if entry.location else "")
        lines.append(f"  {cid}: {entry.title} [{where}]")
        lines.extend(_wrap(f'"{entry.quote.strip()}"', "      "))
    lines.append("")
    lines.append("Fixtures:")
    any_fixture = False
    for kind, specs in (("fires", r.fixtures.fires), ("silent", r.fixtures.silent)):
        for spec in specs:
            any_fixture = True
            overrides = f" with {json.dumps(spec.set, ensure_ascii=False)}" if spec.set else ""
            note = f"  ({spec.note})" if spec.note else ""
            lines.append(f"  {kind:<6}  {spec.profile}{overrides}{note}")
    if not any_fixture:
        lines.append("  (none)")
    return "\n".join(lines) + "\n"


__all__ = [
    "CheckReport",
    "check_rules",
    "default_profiles_dir",
    "format_table",
    "impossibility",
    "list_rows",
    "show_rule",
]
