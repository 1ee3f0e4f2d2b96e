"""Cohort mode: evaluate many profiles (`cds batch`) and compare two rule sets on them (`cds diff-rules`).

Input is a JSONL file (one profile per line) or a folder of profile ``*.json``
files (sorted by name). Records are read lazily (each JSONL line with a bound:
a line longer than 1 MiB is an invalid record, never held in memory), sent to
worker processes (cds.cohort.pool) in chunks of at most 128 records or 1 MiB with
a bounded number of chunks in flight, and the results are written in input
order as they come back: memory stays flat however large the input, or its lines.
Each worker uses one compiled rule set for its whole life (inherited from the
parent when processes are forked, on Linux; compiled once at start otherwise).

Every record gives exactly one output line: the evaluation (compact form of the
`cds evaluate --format json` report) or an error record carrying the same
message `cds evaluate` prints for that profile, except that a JSONL record's
JSON or UTF-8 problem is reported for the field ``(line)`` where `cds evaluate`
says ``(file)``. A blank line is an error record. In a folder, every entry named
``*.json`` (any case) is a record: one that is not a readable regular file (a
broken symbolic link, a FIFO, a folder named ``x.json``) gives an invalid record.

A worker process that dies (killed by the system when out of memory, a crash in
the rules engine's C core) stops the run with `WorkerLost` (exit code 3); what
happens on a signal or when the parent dies is in cds.cohort.pool.
"""

from __future__ import annotations

import contextlib
import json
import os
import stat
from collections import Counter
from collections.abc import Callable, Generator, Iterable, Iterator
from contextlib import closing
from dataclasses import dataclass, field
from pathlib import Path
from typing import (
    TYPE_CHECKING,
    Any,
    Literal,
    NotRequired,  # pydantic reads TypedDicts from here on Python < 3.12 (schemas)
    Protocol,
)

from typing_extensions import TypedDict

from cds.cohort.pool import WorkerPool
from cds.datafile import PROFILE_LIMIT, over_limit
from cds.decide.decision import exclusions, rules_by_option
from cds.errors import EXIT_FINDINGS, EXIT_INTERNAL, EXIT_OK, CdsError, InputError, ProfileError, printable
from cds.interop.inputs import load_input, load_input_profile  # light: the profile model is imported already
from cds.model.clock import evaluation_day

if TYPE_CHECKING:  # imported where used: a worker or the parent loads them only when it needs them
    from cds.cohort.reports import ReportOptions
    from cds.decide.pipeline import Evaluation, Evaluator
    from cds.decide.unknowns import UnknownFact
    from cds.knowledge.ruleset import RuleSet
    from cds.model.profile import PatientProfile

FORMAT_VERSION = "cds-batch/1"
CHUNK = 128  # records per task sent to a worker
CHUNK_BYTES = 1 << 20  # ... or fewer, once their lines hold 1 MiB: with the tasks in flight, a few MiB in all
MAX_LISTED_INVALID = 1000  # invalid records listed in the summary (all are in the output)

# A record: (position, key, payload). key is ("line", n) or ("file", name);
# payload is the raw line (bytes) or the file path (str).
Record = tuple[int, tuple[str, Any], Any]


# --------------------------------------------------------------------------- input


def count_records(source: Path) -> int | None:
    """Number of records (for the progress bar); reads a JSONL file once in 1 MiB blocks."""
    if source.is_dir():
        return sum(1 for _ in _profile_files(source))
    n, last = 0, b"\n"
    with source.open("rb") as fh:
        while block := fh.read(1 << 20):
            n += block.count(b"\n")
            last = block[-1:]
    return n + (last != b"\n")


def shown_name(name: str) -> str:
    """A folder entry's name as the output names it: a name that is not UTF-8 (bytes Python keeps as lone
    surrogates) with ``\\xNN`` for each byte that is not, so that every output line is UTF-8 text."""
    try:
        name.encode("utf-8")
    except UnicodeEncodeError:
        return name.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")
    return name


def _profile_files(folder: Path) -> list[str]:
    """Every entry named *.json (any case), whatever it is: one that is not a profile file is an invalid record."""
    with os.scandir(folder) as entries:
        return sorted(e.name for e in entries if e.name.lower().endswith(".json"))


@dataclass(frozen=True)
class LongLine:
    """A JSONL line longer than PROFILE_LIMIT: never held in memory, only its length is known."""

    size: int


def _jsonl_lines(fh: Any) -> Iterator[bytes | LongLine]:
    """The lines of a binary file, each read with a bound: a longer line is skipped in 1 MiB steps."""
    while raw := fh.readline(PROFILE_LIMIT + 1):
        if len(raw) <= PROFILE_LIMIT or raw.endswith(b"\n"):
            yield raw
            continue
        size = len(raw)
        while more := fh.readline(1 << 20):
            size += len(more)
            if more.endswith(b"\n"):
                break
        yield LongLine(size)


def read_records(source: Path) -> Iterator[Record]:
    """Lazily yield the records of a JSONL file or a folder of JSON files, in order."""
    if source.is_dir():
        for i, name in enumerate(_profile_files(source)):
            yield i, ("file", shown_name(name)), str(source / name)
        return
    with source.open("rb") as fh:
        for i, raw in enumerate(_jsonl_lines(fh)):
            yield i, ("line", i + 1), raw


def check_input(source: Path) -> None:
    """Usage errors before anything starts (exit 2)."""
    if not source.exists():
        raise InputError(f"input {printable(source, 200)}: no such file or folder")
    try:
        if source.is_dir():
            _profile_files(source)
            return
        if not source.is_file():
            raise InputError(f"input {printable(source, 200)}: not a regular file or folder")
        with source.open("rb"):
            pass
    except OSError as exc:
        raise InputError(f"input {printable(source, 200)}: cannot be read ({exc.strerror})") from None


# --------------------------------------------------------------------------- one record (in a worker)


_ENCODE = json.JSONEncoder(ensure_ascii=False, separators=(",", ":")).encode
#: what _ENCODE writes a string with (ensure_ascii=False), without the encoder's Python-level encode() around it
_ENCODE_STRING = json.encoder.encode_basestring
# characters JSON leaves raw that Python's str.splitlines() (and JavaScript) take for a line break
_LINE_BREAKS = {0x85: "\\u0085", 0x2028: "\\u2028", 0x2029: "\\u2029"}


def json_line(record: Any) -> str:
    """`record` as one line of JSON: a value with U+2028, U+2029 or U+0085 in it cannot break the line."""
    text = _ENCODE(record)
    if "\u2028" in text or "\u2029" in text or "\x85" in text:
        text = text.translate(_LINE_BREAKS)
    return text


def _line_text(raw: bytes | LongLine, line_no: int) -> str:
    if isinstance(raw, LongLine):
        raise ProfileError("(line)", f"{raw.size:,} bytes: {over_limit(PROFILE_LIMIT, 'one line (a patient profile)')}")
    try:
        text = raw.decode("utf-8-sig" if line_no == 1 else "utf-8")
    except UnicodeDecodeError as exc:
        raise ProfileError("(line)", f"not UTF-8 text (byte {exc.start})") from None
    text = text.rstrip("\r\n")
    if not text or text.isspace():  # not text.strip()
        raise ProfileError("(line)", "blank line: every line must hold one profile (JSON object)")
    return text


_KINDS = (
    (stat.S_ISFIFO, "a FIFO (named pipe)"),
    (stat.S_ISCHR, "a character device"),
    (stat.S_ISBLK, "a block device"),
    (stat.S_ISSOCK, "a socket"),
)


def _check_profile_file(path: str) -> None:
    """A folder entry named *.json must be a regular file (never open a FIFO: it would block)."""
    shown = shown_name(path)
    try:
        mode = os.stat(path).st_mode
    except FileNotFoundError:
        if os.path.islink(path):
            raise ProfileError(
                "(file)", f"{shown}: broken symbolic link (its target {shown_name(os.readlink(path))} does not exist)"
            ) from None
        raise ProfileError("(file)", f"{shown}: no such file") from None
    except OSError as exc:
        raise ProfileError("(file)", f"{shown}: cannot be read ({exc.strerror})") from None
    if stat.S_ISDIR(mode):
        raise ProfileError("(file)", f"{shown}: is a directory, not a profile file")
    if not stat.S_ISREG(mode):
        kind = next((name for test, name in _KINDS if test(mode)), "not a regular file")
        raise ProfileError("(file)", f"{shown}: is {kind}, not a profile file")


def _load(evaluator: Evaluator, key: tuple[str, Any], payload: Any, evaluated_at: str | None = None) -> PatientProfile:
    """A record's profile; a FHIR Bundle (a file, or one JSONL line) is imported (cds.interop), on the
    evaluation time's date when it has no timestamp."""
    day = evaluation_day(evaluated_at) if evaluated_at is not None else None
    if key[0] == "file":
        _check_profile_file(payload)
        return load_input(Path(payload), evaluator.vocabulary, default_date=day).profile
    try:
        return load_input_profile(_line_text(payload, key[1]), evaluator.vocabulary, day)
    except ProfileError as exc:
        if exc.field != "(file)":
            raise
        # a JSONL record is a line, not a file: same message as `cds evaluate`, but for "(line)"
        raise ProfileError("(line)", exc.problem) from None


# The shape of one output line (schemas/batch-result.schema.json is generated from these types; the
# records themselves are plain dicts, built fast). "line" (JSONL input) or "file" (a folder) names the record.
class _Where(TypedDict, total=False):
    line: int
    file: str


class RankedId(TypedDict):
    id: str
    rank: int
    score: int


class ExcludedId(TypedDict):
    id: str
    rules: list[str]


class EffectTop(TypedDict):
    if_value: str
    top_option: str | None


class UnknownTop(TypedDict):
    field: str
    effects: list[EffectTop]


class EvaluationDateLine(TypedDict):
    date: str | None  # the date the date-relative facts count to (the report's evaluation_date)
    source: str  # "profile", "evaluation_time" or "not_given"


class EvaluatedLine(_Where):
    status: Literal["evaluated"]
    patient_id: str
    top_option: str | None
    ranking: list[RankedId]
    excluded: list[ExcludedId]
    fired_rules: list[str]
    unknown_facts_that_matter: list[UnknownTop]
    unknown_facts_affecting_ranking: list[str]
    input_hash: str
    ruleset_hash: str
    engine_version: str
    evaluated_at: str
    evaluation_date: EvaluationDateLine
    # with --site: the site file's sha256 and the top option's availability status there
    site_hash: NotRequired[str]
    top_option_availability: NotRequired[str | None]
    # with --reports: the file name of this record's report in that folder
    report: NotRequired[str]


class InvalidLine(_Where):
    status: Literal["invalid"]
    error: str
    field: str
    problem: str


class ErrorLine(_Where):
    status: Literal["error"]
    error: str


ResultLine = EvaluatedLine | InvalidLine | ErrorLine


def compact(ev: Evaluation, evaluated_at: str) -> dict[str, Any]:
    """The compact batch form of an evaluation: what the `cds evaluate --format json` report decides."""
    d = ev.decision  # the decision of ev.ranking, without building the reasons' texts
    return {
        "status": "evaluated",
        "patient_id": ev.profile.patient_id,
        "top_option": d.top,
        "ranking": [{"id": o, "rank": n, "score": s} for n, (o, s) in enumerate(d.ranked(), 1)],
        "excluded": [{"id": oid, "rules": list(rules)} for oid, rules in exclusions(ev.ruleset, d)],
        "fired_rules": sorted(ev.fired),
        "unknown_facts_that_matter": [
            {"field": u.field, "effects": [{"if_value": e.label, "top_option": e.top} for e in u.effects]}
            for u in ev.unknown_facts
            if u.changes_top
        ],
        "unknown_facts_affecting_ranking": [u.field for u in ev.unknown_facts if not u.changes_top],
        "input_hash": ev.input_hash,
        "ruleset_hash": ev.ruleset.digest,
        "engine_version": ev.engine_version,
        "evaluated_at": evaluated_at,
        "evaluation_date": {"date": ev.evaluation_date, "source": ev.evaluation_date_source},
    }


class _LineWriter:
    """The JSON line of an evaluated record without options: exactly `json_line({**where, **compact(ev, at)})`,
    from the rule and option IDs encoded once per rule set instead of a dict per record and the encoder walking it.
    Only the patient's own strings (patient ID, file name, unknown-fact labels, dates) are encoded per record."""

    def __init__(self, ruleset: RuleSet):
        self.ruleset = ruleset
        ids = [*(r.id for r in ruleset.rules), *(o.id for o in ruleset.options)]
        self.quoted = {i: _ENCODE(i) for i in ids}
        self.rank_head = {o.id: '{"id":' + _ENCODE(o.id) + ',"rank":' for o in ruleset.options}
        # per option: its excluded record's head, and (ID, encoded ID, whether it excludes when fired) of its exclude
        # rules (True) then of its require rules (False), in rule order (`OptionRules.excluding`: the fired
        # exclude rules, then the require rules that did not fire)
        self.exclusion = {
            g.option.id: (
                '{"id":' + _ENCODE(g.option.id) + ',"rules":[',
                tuple(
                    [(r.id, self.quoted[r.id], True) for r in g.excludes] + [(r.id, self.quoted[r.id], False) for r in g.requires]
                ),
            )
            for g in rules_by_option(ruleset)
        }
        self.rankings: dict[tuple[tuple[str, ...], tuple[int, ...]], str] = {}  # (order, scores) -> the ranking's items
        self.strings: dict[str, str] = {}  # a field name or an effect's label -> encoded (bounded)
        self.tails: dict[tuple[str, str], str] = {}  # (rule set digest, evaluated_at) -> the text after input_hash
        # rule IDs are plain (RULE_ID: capitals, digits, hyphens): their JSON strings are '"' + ID + '"', so the
        # fired rules are written as one join of the sorted IDs (checked here; else by their encoded strings)
        self.plain_rules = all(self.quoted[r.id] == f'"{r.id}"' for r in ruleset.rules)
        self.rule_ids = frozenset(r.id for r in ruleset.rules)  # a fired set within it is written by the join

    def line(self, ev: Evaluation, key: tuple[str, Any], evaluated_at: str) -> str:
        try:
            return self._line(ev, key, evaluated_at)
        except KeyError:  # an ID outside the rule set's (none is known): the record as compact() has it
            return json_line({key[0]: key[1], **compact(ev, evaluated_at)})

    def _line(self, ev: Evaluation, key: tuple[str, Any], evaluated_at: str) -> str:
        d = ev.decision
        quoted, fired = self.quoted, d.fired
        kind, where = key
        head = f'{{"line":{where},' if kind == "line" and type(where) is int else _ENCODE({kind: where})[:-1] + ","
        top = d.top
        ranking = self.rankings.get((d.order, d.scores))
        if ranking is None:
            rank_head = self.rank_head
            ranking = ",".join([f'{rank_head[o]}{n},"score":{s}}}' for n, (o, s) in enumerate(zip(d.order, d.scores), 1)])
            if len(self.rankings) > 1024:
                self.rankings.clear()
            self.rankings[d.order, d.scores] = ranking
        exclusion = self.exclusion
        parts = []
        for oid in d.excluded:
            opening, checks = exclusion[oid]
            rules = []  # a plain loop: two comprehensions would build two function objects per excluded option
            for r, q, when_fired in checks:
                if (r in fired) is when_fired:
                    rules.append(q)
            parts.append(opening + ",".join(rules) + "]}")
        excluded = ",".join(parts)
        # the engine version is the same for every evaluation of the process (cds and durable-rules' versions)
        tail_key = (ev.ruleset.digest, evaluated_at)
        tail = self.tails.get(tail_key)
        if tail is None:
            if len(self.tails) > 64:  # bounded (a batch has one evaluated_at)
                self.tails.clear()
            tail = self.tails[tail_key] = (
                f',"ruleset_hash":{_ENCODE(tail_key[0])},"engine_version":{_ENCODE(ev.engine_version)},'
                f'"evaluated_at":{_ENCODE(evaluated_at)},"evaluation_date":{{"date":'
            )
        if self.plain_rules and fired and fired <= self.rule_ids:
            # the fired rules are the rule set's (checked: 0.3 us): each ID written as it is; another ID (no matcher
            # reports one) goes through `quoted` below, whose KeyError writes the record as `compact` has it
            fired_text = '"' + '","'.join(sorted(fired)) + '"'
        else:
            fired_text = ",".join(map(quoted.__getitem__, sorted(fired)))
        unknown = ev.unknown_facts
        text = "".join(
            (
                head,
                '"status":"evaluated","patient_id":',
                _ENCODE_STRING(ev.profile.patient_id),
                ',"top_option":',
                "null" if top is None else quoted[top],
                ',"ranking":[',
                ranking,
                '],"excluded":[',
                excluded,
                '],"fired_rules":[',
                fired_text,
                '],"unknown_facts_that_matter":[',
                self._mattering(unknown) if unknown else "",
                '],"unknown_facts_affecting_ranking":[',
                ",".join([self._string(u.field) for u in unknown if not u.changes_top]) if unknown else "",
                "]",
                ',"input_hash":',
                _ENCODE_STRING(ev.input_hash),
                tail,
                "null" if ev.evaluation_date is None else _ENCODE_STRING(ev.evaluation_date),
                ',"source":',
                self._string(ev.evaluation_date_source),
                "}}",
            )
        )
        if "\u2028" in text or "\u2029" in text or "\x85" in text:
            text = text.translate(_LINE_BREAKS)
        return text

    def _string(self, text: str) -> str:
        """`_ENCODE(text)` of a field name or an effect's label (the same few recur), kept (bounded)."""
        encoded = self.strings.get(text)
        if encoded is None:
            if len(self.strings) > 4096:
                self.strings.clear()
            encoded = self.strings[text] = _ENCODE_STRING(text)
        return encoded

    def _mattering(self, unknown: tuple[UnknownFact, ...]) -> str:
        """The items of `_ENCODE([{"field": ..., "effects": [{"if_value": ..., "top_option": ...}, ...]}, ...])` of
        the unknown facts that change the top option, as `compact` lists them."""
        string, quoted = self._string, self.quoted
        return ",".join(
            [
                '{"field":'
                + string(u.field)
                + ',"effects":['
                + ",".join(
                    [
                        '{"if_value":' + string(e.label) + ',"top_option":' + ("null" if e.top is None else quoted[e.top]) + "}"
                        for e in u.effects
                    ]
                )
                + "]}"
                for u in unknown
                if u.changes_top
            ]
        )


_WRITERS: dict[int, _LineWriter] = {}


def _writer(ruleset: RuleSet) -> _LineWriter:
    """The line writer of a rule set (built on its first record in this process)."""
    writer = _WRITERS.get(id(ruleset))
    if writer is None or writer.ruleset is not ruleset:
        writer = _WRITERS[id(ruleset)] = _LineWriter(ruleset)
    return writer


def _error_record(exc: Exception) -> dict[str, Any]:
    if isinstance(exc, ProfileError):
        # exactly what `cds evaluate` prints after "error: "
        return {"status": "invalid", "error": f"invalid patient profile: {exc}", "field": exc.field, "problem": exc.problem}
    # a FHIR Bundle that cannot be imported (cds.interop.fhir.bundle.BundleError: field and problem as ProfileError's)
    if isinstance(exc, InputError) and hasattr(exc, "field") and hasattr(exc, "problem"):
        return {"status": "invalid", "error": str(exc), "field": exc.field, "problem": exc.problem}
    if isinstance(exc, CdsError):
        return {"status": "error", "error": str(exc)}
    return {"status": "error", "error": f"internal error ({type(exc).__name__}: {exc})"}


@dataclass
class ChunkStats:
    evaluated: int = 0
    invalid: int = 0
    errors: int = 0
    tops: Counter[str | None] = field(default_factory=Counter)
    problems: list[tuple[dict[str, Any], str]] = field(default_factory=list)  # (key, message), capped
    pdfs: list[str] = field(default_factory=list)  # reports queued for printing by the parent


@dataclass(frozen=True)
class RecordOptions:
    """What `cds batch` adds to each evaluated record: availability at a site file, a report file."""

    site: str | None = None
    reports: ReportOptions | None = None


def _with_options(
    record: dict[str, Any], ev: Evaluation, key: tuple[str, Any], evaluated_at: str, opts: RecordOptions, stats: ChunkStats
) -> None:
    from cds.cohort.reports import site_for, write_report

    if opts.site is not None:
        from cds.knowledge.site import availability

        site = site_for(opts.site, ev.ruleset)
        access = ev.facts["car_t_center_access"].value
        assert access is None or isinstance(access, bool)  # a bool fact (cds.model.facts.FACTS)
        record["site_hash"] = site.digest
        top = record["top_option"]
        record["top_option_availability"] = availability(site, ev.ruleset, top, access).status if top else None
    if opts.reports is not None:
        record["report"] = write_report(ev, opts.reports, key, evaluated_at)
        if opts.reports.fmt == "pdf":
            stats.pdfs.append(record["report"])


_EVALUATORS: dict[str, Evaluator] = {}


def evaluator_for(rules: str | None, analyze_unknowns: bool = True) -> Evaluator:
    """One compiled evaluator per rule folder per process (recompiling leaks in durable-rules)."""
    key = f"{rules}|{analyze_unknowns}"
    if key not in _EVALUATORS:
        from cds.decide.pipeline import Evaluator, default_evaluator

        if analyze_unknowns:
            _EVALUATORS[key] = default_evaluator(rules)
        else:
            _EVALUATORS[key] = Evaluator(Path(rules) if rules else None, analyze_unknowns=False)
    return _EVALUATORS[key]


def evaluate_chunk(task: tuple[Any, ...]) -> tuple[str, ChunkStats]:
    """Worker: evaluate a chunk of records; one JSON line per record, in order.

    task: (rules, evaluated_at, records[, RecordOptions]).
    """
    rules, evaluated_at, records = task[:3]
    opts: RecordOptions | None = task[3] if len(task) > 3 else None
    evaluator = evaluator_for(rules)
    stats = ChunkStats()
    out: list[str] = []
    dumps = json_line
    writer = _writer(evaluator.ruleset)
    evaluate, line, tops = evaluator.evaluate, writer.line, stats.tops
    for _, key, payload in records:
        try:
            ev = evaluate(_load(evaluator, key, payload, evaluated_at), evaluated_at)
            if opts is None:
                out.append(line(ev, key, evaluated_at))
                stats.evaluated += 1
                tops[ev.decision.top] += 1
                continue
            where = {key[0]: key[1]}
            record = {**where, **compact(ev, evaluated_at)}
            _with_options(record, ev, key, evaluated_at, opts, stats)
            stats.evaluated += 1
            stats.tops[record["top_option"]] += 1
        except Exception as exc:
            if os.environ.get("CDS_DEBUG") and not isinstance(exc, CdsError):
                raise
            where = {key[0]: key[1]}
            record = {**where, **_error_record(exc)}
            if record["status"] == "invalid":
                stats.invalid += 1
            else:
                stats.errors += 1
            if len(stats.problems) < MAX_LISTED_INVALID:
                stats.problems.append((where, record["error"]))
        out.append(dumps(record))
    out.append("")
    return "\n".join(out), stats


# --------------------------------------------------------------------------- the pipeline


def _chunks(records: Iterable[Record], size: int, max_bytes: int = CHUNK_BYTES) -> Iterator[list[Record]]:
    """Records in chunks of `size`, or fewer when their lines add up to `max_bytes` (bounded memory in flight)."""
    chunk: list[Record] = []
    held = 0
    for r in records:
        chunk.append(r)
        held += len(r[2]) if isinstance(r[2], bytes) else 0
        if len(chunk) == size or held >= max_bytes:
            yield chunk
            chunk, held = [], 0
    if chunk:
        yield chunk


def preload(rule_dirs: list[str | None], analyze_unknowns: bool) -> None:
    for d in rule_dirs:
        evaluator_for(d, analyze_unknowns)


def run_ordered(
    fn: Callable[[Any], Any],
    tasks: Iterable[Any],
    jobs: int,
    init: tuple[list[str | None], bool],
    method: str | None = None,
) -> Generator[Any, None, None]:
    """fn over tasks on `jobs` worker processes (cds.cohort.pool); results in task order, a bounded number in flight.

    Tasks are taken as results are (never the whole input at once). A worker that dies raises
    `WorkerLost`; on any exception, a signal, or when the generator is closed early, the workers
    are killed and reaped before this returns.
    """
    # Build the evaluators here first: a bad rule folder fails once, in the parent,
    # and forked workers inherit the compiled rule sets instead of recompiling them.
    preload(*init)
    if jobs <= 1:
        for t in tasks:
            yield fn(t)
        return
    with WorkerPool(fn, jobs, preload, init, method) as pool:
        yield from pool.map_ordered(tasks)


@dataclass
class Summary:
    input: str
    records: int = 0
    evaluated: int = 0
    invalid: int = 0
    errors: int = 0
    tops: Counter[str | None] = field(default_factory=Counter)
    problems: list[tuple[dict[str, Any], str]] = field(default_factory=list)

    def add(self, s: ChunkStats) -> None:
        self.evaluated += s.evaluated
        self.invalid += s.invalid
        self.errors += s.errors
        self.records += s.evaluated + s.invalid + s.errors
        self.tops.update(s.tops)
        room = MAX_LISTED_INVALID - len(self.problems)
        self.problems.extend(s.problems[:room])

    @property
    def exit_code(self) -> int:
        return EXIT_INTERNAL if self.errors else EXIT_FINDINGS if self.invalid else EXIT_OK

    def as_dict(self) -> dict[str, Any]:
        dist = sorted(self.tops.items(), key=lambda kv: (-kv[1], str(kv[0])))
        return {
            "format": FORMAT_VERSION,
            "input": self.input,
            "records": self.records,
            "evaluated": self.evaluated,
            "invalid": self.invalid,
            "errors": self.errors,
            "top_option_distribution": [
                {"option": k, "patients": v, "share": round(v / self.evaluated, 4) if self.evaluated else 0.0} for k, v in dist
            ],
            "invalid_records": [{**where, "error": msg} for where, msg in self.problems],
            "invalid_records_listed": len(self.problems),
        }

    def text(self) -> str:
        lines = [
            f"{self.records} record(s): {self.evaluated} evaluated, {self.invalid} invalid"
            + (f", {self.errors} internal error(s)" if self.errors else "")
        ]
        if self.tops:
            lines.append("top-ranked option:")
            width = max(len(str(k or "none")) for k in self.tops)
            for d in self.as_dict()["top_option_distribution"]:
                lines.append(f"  {d['option'] or 'none'!s:<{width}}  {d['patients']:>8}  {100 * d['share']:5.1f}%")
        for where, msg in self.problems[:20]:
            ((k, v),) = where.items()
            lines.append(f"  {k} {printable(v, 200)}: {msg}")
        if self.invalid + self.errors > 20:
            lines.append(f"  ... ({self.invalid + self.errors - 20} more in the output)")
        return "\n".join(lines) + "\n"


class TextSink(Protocol):
    """Where `run_batch` writes the result lines: `cds batch`'s OutputFile, an open text file, io.StringIO."""

    def write(self, text: str, /) -> object: ...


def run_batch(
    source: Path,
    out: TextSink,
    rules: str | None,
    evaluated_at: str,
    jobs: int,
    progress: Callable[[int], None] | None = None,
    options: RecordOptions | None = None,
) -> Summary:
    """Evaluate every record; with `options`, availability at a site and a report file per record."""
    summary = Summary(input=shown_name(str(source)))
    tasks = ((rules, evaluated_at, chunk, *((options,) if options else ())) for chunk in _chunks(read_records(source), CHUNK))
    reports = options.reports if options is not None else None
    with contextlib.ExitStack() as stack:
        pdf = None
        if reports is not None and reports.fmt == "pdf":
            from cds.cohort.reports import PdfStage

            pdf = stack.enter_context(PdfStage(reports.directory, evaluated_at))
        results = stack.enter_context(closing(run_ordered(evaluate_chunk, tasks, jobs, ([rules], True))))
        for text, stats in results:
            if pdf is not None:
                for name in stats.pdfs:
                    pdf.print(name)
            out.write(text)
            summary.add(stats)
            if progress is not None:
                progress(stats.evaluated + stats.invalid + stats.errors)
    return summary


# --------------------------------------------------------------------------- diff-rules


def _outcome(evaluator: Evaluator, key: tuple[str, Any], payload: Any, evaluated_at: str) -> dict[str, Any]:
    try:
        ev = evaluator.evaluate(_load(evaluator, key, payload, evaluated_at), evaluated_at)
    except Exception as exc:
        if os.environ.get("CDS_DEBUG") and not isinstance(exc, CdsError):
            raise
        return _error_record(exc)
    return {
        "status": "evaluated",
        "patient_id": ev.profile.patient_id,
        "top_option": ev.decision.top,
        "ranking": list(ev.decision.order),
    }


def diff_chunk(task: tuple[str, str, list[Record], str]) -> list[dict[str, Any]]:
    """Worker: each record under both rule sets, at the same instant; returns one small row per record."""
    old_dir, new_dir, records, evaluated_at = task
    old, new = evaluator_for(old_dir, False), evaluator_for(new_dir, False)
    rows: list[dict[str, Any]] = []
    for _, key, payload in records:
        a, b = _outcome(old, key, payload, evaluated_at), _outcome(new, key, payload, evaluated_at)
        row: dict[str, Any] = {key[0]: key[1], "patient_id": a.get("patient_id") or b.get("patient_id")}
        if a["status"] != "evaluated" or b["status"] != "evaluated":
            row["status"] = "invalid"
            row["old"] = a if a["status"] != "evaluated" else {"top_option": a["top_option"]}
            row["new"] = b if b["status"] != "evaluated" else {"top_option": b["top_option"]}
            row["changed"] = a["status"] != b["status"]
        else:
            row["status"] = "evaluated"
            row["old"] = {"top_option": a["top_option"], "ranking": a["ranking"]}
            row["new"] = {"top_option": b["top_option"], "ranking": b["ranking"]}
            row["top_changed"] = a["top_option"] != b["top_option"]
            row["ranking_changed"] = a["ranking"] != b["ranking"]
            row["changed"] = row["ranking_changed"]
        rows.append(row)
    return rows


def run_diff(
    old_dir: str,
    new_dir: str,
    source: Path,
    jobs: int,
    on_change: Callable[[dict[str, Any]], None],
    progress: Callable[[int], None] | None = None,
    evaluated_at: str | None = None,
) -> dict[str, Any]:
    """Stream every record whose outcome differs to `on_change`; return the totals. Both rule sets
    evaluate every record at `evaluated_at` (None: `evaluation_time()`), so only the rules differ."""
    from cds.model.clock import evaluation_time

    at = evaluation_time(evaluated_at)
    totals: Counter[str] = Counter()
    tasks = ((old_dir, new_dir, chunk, at) for chunk in _chunks(read_records(source), CHUNK))
    with closing(run_ordered(diff_chunk, tasks, jobs, ([old_dir, new_dir], False))) as results:
        for rows in results:
            for row in rows:
                totals["records"] += 1
                if row["status"] != "evaluated":
                    totals["invalid"] += 1
                else:
                    totals["top_changed"] += row["top_changed"]
                    totals["ranking_changed"] += row["ranking_changed"]
                if row["changed"]:
                    totals["changed"] += 1
                    on_change(row)
            if progress is not None:
                progress(len(rows))
    return {k: totals[k] for k in ("records", "invalid", "changed", "top_changed", "ranking_changed")}


def diff_row_text(row: dict[str, Any]) -> tuple[str, str, str, str, str]:
    # the patient ID and the file name are the user's: escaped and cut, so that no row can forge another
    where = f"line {row['line']}" if "line" in row else printable(row.get("file"))
    pid = printable(row.get("patient_id") or "-")

    def side(s: dict[str, Any]) -> str:
        if s.get("status") in ("invalid", "error"):
            return "invalid"
        return str(s.get("top_option") or "none")

    old, new = side(row["old"]), side(row["new"])
    if row["status"] != "evaluated":
        change = "validity"
    elif row["top_changed"]:
        change = "top option"
    else:
        change = "ranking"
    return where, pid, old, new, change
