"""The review lock: a rule whose content changed needs a newer review date (issue 12 D).

Every rule carries `last_reviewed` (the rule's own, else its file's). Nothing in the date itself
shows that a rule changed after that review, so ``rules/review.lock`` records, per rule ID, the
`last_reviewed` it had and the sha256 of its clinical content when the lock was last written: all
the rule file says of the rule except `last_reviewed`, as validated (defaults filled in, runs of
whitespace in text counted as one space, so re-wrapping a rationale is no change; the fixtures in
``rules/tests/`` are test data and do not count). `cds rules check` compares (`compare`):

- content changed, `last_reviewed` not newer than the locked date: a problem naming the rule (it was
  changed without a review; review it, set `last_reviewed` to that review's date, run `cds rules lock`);
- content changed, `last_reviewed` newer: reviewed; a warning that the lock is stale;
- rules not in the lock (new), locked rules gone: one warning each, naming them.

`cds rules lock` (`refresh`) rewrites the lock from the rule files. It refuses while a changed
rule's `last_reviewed` is not newer than the locked date, except when that date is today (a second
change on the day of its review): the lock cannot be refreshed to hide a change. A rule folder
without ``review.lock`` (a copy made by a test, a grown folder) is not compared.

The lock is plain text, one line per rule sorted by ID (``ID DATE HASH``), so that two people
changing different rules never touch the same line. It is not a YAML file: not part of the rule
set's hash, never read when evaluating.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from dataclasses import dataclass
from datetime import date
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from cds.errors import InputError, RuleSetError
from cds.knowledge.rulefiles import RuleSpec
from cds.knowledge.ruleset import read_rule_yaml

LOCK_NAME = "review.lock"
REFRESH_COMMAND = "cds rules lock"
_HASH_CHARS = 16  # 64 bits: enough to see a change, short enough to read
_HEADER = (
    "# cds review lock (issue 12 D): rule ID, its last_reviewed, sha256 (first 16 hex digits) of its clinical content.\n"
    "# `cds rules check` fails on a rule whose content changed while its last_reviewed stayed as locked here.\n"
    f"# After reviewing a changed rule and setting its last_reviewed, refresh with `{REFRESH_COMMAND}` (README: Review dates).\n"
)


@dataclass(frozen=True)
class Current:
    """A rule as the rule files have it now."""

    file: str
    reviewed: str | None
    digest: str


@dataclass(frozen=True)
class Locked:
    reviewed: str
    digest: str


#: optional rule fields added after review.lock was introduced, left out of the digest while None (or False)
_LATER_FIELDS = ("restricts_products", "page1_first")


def _normal(value: Any) -> Any:
    if isinstance(value, str):
        return " ".join(value.split())
    if isinstance(value, list):
        return [_normal(v) for v in value]
    if isinstance(value, dict):
        return {k: _normal(v) for k, v in value.items()}
    return value


def content_digest(spec: RuleSpec) -> str:
    """sha256 (first 16 hex digits) of a validated rule without its `last_reviewed`. A field added to the rule
    format after the lock existed counts only where a rule gives it (`_LATER_FIELDS`), so adding it to the
    format does not change the content of every rule that does not use it."""
    absent = {f for f in _LATER_FIELDS if getattr(spec, f) in (None, False)}
    data = _normal(spec.model_dump(mode="json", exclude={"last_reviewed", *absent}))
    text = json.dumps(data, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(text.encode()).hexdigest()[:_HASH_CHARS]


def current_rules(directory: Path) -> dict[str, Current]:
    """Every rule of the folder that passes its schema, by ID (a rule that does not is the rule check's problem)."""
    out: dict[str, Current] = {}
    for path in sorted(Path(directory).glob("*.yaml")):
        try:
            raw = read_rule_yaml(path, path.name)
        except RuleSetError:
            continue  # reported by the rule check
        if not isinstance(raw, dict) or not isinstance(raw.get("rules"), list):
            continue
        file_reviewed = raw.get("last_reviewed") if isinstance(raw.get("last_reviewed"), str) else None
        for raw_rule in raw["rules"]:
            if not isinstance(raw_rule, dict):
                continue
            try:
                spec = RuleSpec.model_validate({k: v for k, v in raw_rule.items() if k != "fixtures"})
            except ValidationError:
                continue
            out.setdefault(spec.id, Current(path.name, spec.last_reviewed or file_reviewed, content_digest(spec)))
    return out


def read_lock(directory: Path) -> tuple[dict[str, Locked] | None, list[str]]:
    """(the lock by rule ID, or None when the folder has none; problems with its lines)."""
    path = Path(directory) / LOCK_NAME
    if not path.is_file():
        return None, []
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        return {}, [f"{LOCK_NAME}: cannot be read ({exc})"]
    out: dict[str, Locked] = {}
    problems = []
    for n, line in enumerate(text.splitlines(), 1):
        if not line.strip() or line.startswith("#"):
            continue
        parts = line.split()
        if len(parts) != 3 or len(parts[2]) != _HASH_CHARS or not _is_date(parts[1]):
            problems.append(f"{LOCK_NAME} line {n}: not 'RULE-ID YYYY-MM-DD HASH' ({REFRESH_COMMAND} writes it)")
            continue
        if parts[0] in out:
            problems.append(f"{LOCK_NAME} line {n}: {parts[0]} is locked twice")
        out[parts[0]] = Locked(parts[1], parts[2])
    return out, problems


def _is_date(text: str) -> bool:
    try:
        date.fromisoformat(text)
    except ValueError:
        return False
    return len(text) == 10


def _listed(ids: list[str], limit: int = 8) -> str:
    shown = ", ".join(ids[:limit])
    return shown + (f" and {len(ids) - limit} more" if len(ids) > limit else "")


def compare(directory: Path) -> tuple[list[str], list[str]]:
    """(problems, warnings) of the rule files against the folder's review lock (none without a lock)."""
    locked, problems = read_lock(directory)
    if locked is None:
        return [], []
    warnings: list[str] = []
    now = current_rules(directory)
    for rid, cur in sorted(now.items()):
        old = locked.get(rid)
        if old is None or old.digest == cur.digest:
            continue
        if cur.reviewed is None or cur.reviewed <= old.reviewed:
            problems.append(
                f"{cur.file} [{rid}] last_reviewed: {cur.reviewed or 'missing'} is not newer than the review of "
                f"{old.reviewed} recorded in {LOCK_NAME}, but the rule's content changed since: review the rule against "
                f"its sources, set last_reviewed to that review's date, then run `{REFRESH_COMMAND}`"
            )
        else:
            warnings.append(
                f"{cur.file} [{rid}] {LOCK_NAME}: changed and reviewed {cur.reviewed} (locked: {old.reviewed}); "
                f"refresh the lock with `{REFRESH_COMMAND}`"
            )
    new = sorted(set(now) - set(locked))
    if new:
        warnings.append(f"{LOCK_NAME}: {len(new)} rule(s) not in the lock ({_listed(new)}); add them with `{REFRESH_COMMAND}`")
    gone = sorted(set(locked) - set(now))
    if gone:
        warnings.append(
            f"{LOCK_NAME}: {len(gone)} locked rule(s) no longer in the rule files ({_listed(gone)}); `{REFRESH_COMMAND}` drops them"
        )
    return problems, warnings


def refresh(directory: Path, today: str | None = None) -> tuple[int, list[str]]:
    """Rewrite the folder's lock from its rule files: (rules locked, refusals). Nothing is written when a
    changed rule's last_reviewed is not newer than its locked date (unless that date is `today`), or when
    the lock cannot be read; each refusal names the rule."""
    today = today or date.today().isoformat()
    locked, problems = read_lock(directory)
    now = current_rules(directory)
    refusals = list(problems)
    for rid, cur in sorted(now.items()):
        old = (locked or {}).get(rid)
        if cur.reviewed is None:
            refusals.append(f"{cur.file} [{rid}] last_reviewed: missing")
        elif old is not None and old.digest != cur.digest and cur.reviewed <= old.reviewed and cur.reviewed != today:
            refusals.append(
                f"{cur.file} [{rid}] changed since its review of {old.reviewed}: review it, set last_reviewed to that "
                "review's date (newer), then lock again"
            )
    if refusals:
        return 0, refusals
    lines = [f"{rid} {cur.reviewed} {cur.digest}\n" for rid, cur in sorted(now.items())]
    path = Path(directory) / LOCK_NAME
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".review-", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(_HEADER + "".join(lines))
        os.replace(tmp, path)
    except OSError as exc:
        Path(tmp).unlink(missing_ok=True)
        raise InputError(f"{path}: cannot write ({exc.strerror or exc})") from None
    return len(lines), []
