"""`cds rules check`: prove the rule folder consistent, reporting every problem at once.

The problems of the rule folder itself come from the one collecting validator,
`cds.knowledge.validate.validate` (which the rule loader uses too); the check
adds what concerns the fixtures, one line per problem naming the file and the rule:

- a plain value or key anywhere in the folder's YAML (rule files, catalogues, evidence,
  fixtures) that YAML 1.1, which the loader follows, reads otherwise than YAML 1.2
  (`scalar_literal_problems`: ``value: 030`` is 24, ``set: {dialysis: no}`` false to the
  loader; the reference interpreter and YAML 1.2 tools read the words);
- a rule without fixtures (a rule without ``when`` needs ``fires`` fixtures; a
  conditional rule needs ``fires`` and ``silent`` ones);
- a rule too large for durable-rules even in a ruleset of its own (`capacity`: the same
  shard plan the engine compiles, `cds.engine.capacity`), and the plan's summary;
- a fixture that does not behave as declared, run through the real
  durable-rules engine (`cds.knowledge.fixtures.run_fixtures`) on every rule
  that could be compiled, and a fixture whose base is not a profile of the rule folder's
  ``tests/profiles/`` (a tumor-board case of ``patient_profiles/`` is named as such: editing a
  case must never move a rule's boundary), or a base profile named like a case.

Warnings do not fail the check: evidence entries that no rule cites,
ranking rules that read two or more fields that can be unknown, and require
rules without an ``unmet`` reason (page 1 then prints the requirement's title).

The module also formats `cds rules list` and `cds rules show` (plain text; the
CLI only prints it).
"""

from __future__ import annotations

import dataclasses
import difflib
import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from cds.errors import CdsError, InputError, quoted
from cds.knowledge.fixtures import FixtureRunner, base_folder
from cds.knowledge.fixtures import run_fixtures as _run_fixtures
from cds.knowledge.reviewlock import compare as review_lock
from cds.knowledge.ruleset import Condition, Group, Leaf, Rule, RuleSet, leaves
from cds.knowledge.validate import impossibility, scalar_literal_problems, validate
from cds.model.facts import FACTS

#: rule kinds that take part in the ranking (the unknown-fact analysis varies the fields they read)
_RANKING_KINDS = ("require", "exclude", "prefer", "deprefer")


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


def default_profiles_dir(rules_directory: Path) -> Path | None:
    """The tumor-board case folder (fixtures may not start from its cases): beside the rule folder, else here."""
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
    ruleset, problems = validate(Path(directory), fixtures=True)
    report = CheckReport(problems=problems)
    report.problems.extend(scalar_literal_problems(Path(directory)))
    # --- the review lock: a rule changed without a newer last_reviewed (cds.knowledge.reviewlock)
    lock_problems, lock_warnings = review_lock(Path(directory))
    report.problems.extend(lock_problems)
    report.warnings.extend(lock_warnings)
    if ruleset is None:
        return report
    report.rules_checked = len(ruleset.rules) + len(ruleset.retired)

    for rule in ruleset.rules:
        where = f"{rule.file} [{rule.id}]"
        fx = rule.fixtures
        if not fx.fires:
            report.problems.append(f"{where} fixtures: no 'fires' fixture (a profile on which the rule must fire)")
        if rule.condition is not None and not fx.silent:
            report.problems.append(f"{where} fixtures: no 'silent' fixture (a profile on which the rule must not fire)")
        fields = sorted(
            {
                FACTS[leaf.fact].input_field or leaf.fact
                for leaf in leaves(rule.condition)
                if leaf.fact in FACTS and FACTS[leaf.fact].may_be_unknown
            }
        )
        if rule.kind == "require" and rule.unmet is None:
            report.warnings.append(
                f"{where} unmet: not given; page 1 says 'Requirement not met: {rule.title}' when it does not hold"
            )
        if len(fields) > 1 and rule.kind in _RANKING_KINDS:
            report.warnings.append(
                f"{where} when: reads {len(fields)} fields that can be unknown ({', '.join(fields)}); "
                "the unknown-facts analysis varies one field at a time and cannot show their joint effect"
            )

    # --- engine capacity: the shard plan the engine compiles (a rule that fits nowhere is not run)
    if capacity is not None and ruleset.rules:
        too_large, report.capacity = capacity(ruleset.rules)
        report.problems.extend(too_large.values())
        if too_large:
            ruleset = dataclasses.replace(ruleset, rules=tuple(r for r in ruleset.rules if r.id not in too_large))

    # --- fixtures, through the real engine, on every rule that could be compiled
    if run_fixtures and runner is not None and any(r.fixtures.fires or r.fixtures.silent for r in ruleset.rules):
        cases = Path(profiles_dir) if profiles_dir is not None and Path(profiles_dir).is_dir() else None
        folder = base_folder(Path(directory))
        if cases is not None:
            for path in sorted(folder.glob("*.json")):
                if (cases / path.name).exists():
                    report.problems.append(
                        f"tests/profiles/{path.name}: a case of {profiles_dir} has the same name (a base profile is named "
                        "for what it shows, a tumor-board case is not a fixture's base)"
                    )
        try:
            evaluator = runner(ruleset)
        except CdsError as exc:
            report.problems.append(f"fixtures: not run, the rules do not compile on durable-rules: {exc}")
        else:
            for rule in ruleset.rules:
                for result in _run_fixtures(rule, evaluator, folder, cases):
                    report.fixtures_run += 1
                    if not result.ok:
                        report.problems.append(f"{rule.file} [{rule.id}] fixtures: {result.problem}")

    # --- warnings
    cited = {cid for r in ruleset.rules for cid in r.cites}
    for eid, efile in ruleset.registry.entry_files.items():
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


def format_table(header: tuple[str, ...], rows: Sequence[tuple[str, ...]]) -> str:
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
        raise InputError(f"unknown rule ID {quoted(rule_id)}{hint}") from None
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
    lines.append(f"  reviewed: {r.last_reviewed or 'not recorded'} (last clinical review against the sources)")
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
            fact_spec = FACTS.get(fact)
            lines.append(f"  {fact}: {fact_spec.description if fact_spec else '(not in the fact catalogue)'}")
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
        lines.append(f"  {cid}: {entry.title} [{where}; level: {entry.level_label}]")
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
