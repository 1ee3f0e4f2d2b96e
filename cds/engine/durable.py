"""The rules engine run: the only module that imports durable-rules.

Rules are compiled once per process (`cds.engine.compile`) into durable-rules rulesets defined as
plain JSON (no `durable.lang` host, so no background timer threads). Each evaluation asserts one or
more *facts* (never events: an event is consumed by the first matching rule, shared/notes pitfall 1)
into the shard's session, runs the actions synchronously, checks for errors the engine would
otherwise swallow (pitfall 2), and retracts the facts again, which leaves the session empty for the
next evaluation; after any failure the session is deleted and the next evaluation opens a new one
(pitfall 7: at most 1,024 live sessions; each shard has at most one).

Every pattern carries a type discriminator ``t == "patient"`` so that no rule can match the
session's state fact (pitfall 5). The action of every rule only records the rule ID in a set, so an
``$or`` firing once per true branch (pitfall 3) is harmless. A lowest-priority sentinel rule fires
for every fact; if it does not, the run is reported as an engine failure instead of an empty result.

Capacity: shards. One durable-rules ruleset holds only so much (`cds.engine.capacity`, derived from
the C source, jruizgit/rules ``src/rules/``). Two bounds: (1) the compiler's fixed tables per alpha
node (``rules.h``: 512 tests, 128 ``$nex``/``$or`` links, 256 rules ending at it): past the link
table ``linkAlpha`` returns error 107 (how the rule base failed at 4x in one ruleset), past the
rule table 108, and at their last entry the walk reads past the list, fires another rule's action
or loops forever; (2) the alpha-network walk (``handleAlpha``, events.c) keeps pending nodes on a
64-entry stack and returns error 303 when one fact would leave a 65th pending. `capacity.plan`
packs the rules, in `plan_order` (the scoped rules grouped first), into as many rulesets ("shards") as it takes for every shard to stay
within every table and to have at most `capacity.MAX_PENDING` = 32 alpha nodes pending at once for
any fact (a proved upper bound, half the stack). `cds rules check` runs the same plan, so a rule
folder that passes the check fits; a rule that does not fit even alone is a `RuleSetError` here and
a problem there. Each shard has its own sentinel. A patient's fact(s) are asserted into every shard
(each shard gets only the facts its rules read) and the fired sets are merged; every result code,
exception or missing sentinel is an `EngineError` naming the shard, the patient and the code.

Version. All of this is written against durable-rules 2.0.28's C core (its functions' return
shapes, its action-message text, its bugs): `cds.engine.pin` refuses any other version (the
command line exits 3 before doing anything; `Engine` raises `EngineError`), and
tests/test_engine_contract.py checks those shapes on the pinned version.

Session slots are primed. durable-rules never initialises a new session's action context, and
``delete_state``/``abandon_action`` free it (state.c:828, 930; events.c:2403): cleaning up a
session in which no action ever started (e.g. after a 303) freed heap garbage and killed the
process. Freed slots are reused first with a NULL context, so each shard runs, once at compile
time, one action in each of its first state slots (`_prime`); after that, an engine error is an
exception, never a crash.

Speed. durable's Python layer (``durable.engine.Ruleset._flush_actions``) runs every fired rule
through a ``Closure``: ``json.loads`` of the state and of the whole matched fact, then ``json.dumps``
+ ``update_state`` of an unchanged state, about 20 us per fired rule. Our actions have no side
effect on the session, so `Engine.run` drives the same C functions directly (``assert_facts``,
``start_action_for_state``, ``complete_and_start_action``, ``retract_facts``, ``abandon_action``,
``delete_state``), reads the rule name and the variant number from the action message's head (each
head seen once is remembered; a shard's action names and the fact ids below 100 are written with one
number of digits each, so that a head is a message's first characters, cut in C), and never writes
the state back. Matching, conflict
resolution and firing order are still durable-rules' own; every safety check stays (result codes,
sentinel rule, unknown rule or malformed message -> EngineError, a rule firing on retraction ->
EngineError, ``abandon_action`` and ``delete_state`` on failure), in every shard. Sessions are kept
because creating one (``createStateNode``: it clears the frame tables of every beta node) cost
about a quarter of a patient's evaluation, more than the matching. Only the facts some
rule of the shard names are asserted into it (the others cannot change what fires), under the
short property names the rules are compiled with (`cds.engine.compile.property_names`: the C core
hashes every name it parses and copies the whole fact into every action message), without a
boolean value no rule can match (`_unmatchable`: every test on it is false at that value, as it is
on a missing fact; 17 of a bench profile's 98 properties; the alpha walk reads every property of the
fact at every node it reaches, events.c handleAlpha), each item
encoded once per evaluation and joined per shard and variant into the text `json` would write, and numbers in
exponent form are written with a decimal point (``1.0e-05``): durable-rules' JSON reader crashes the
process on ``1e-05``.

Scoped variants. A counterfactual variant differs from the patient's own fact only in the facts of
one unknown profile field (e.g. ``cytogenetics``). A rule that names none of that field's facts sees
the same values in both and fires (or not) exactly as for the patient. Each rule therefore also
matches a ``cds_scope`` discriminator: ``"*"`` (every rule) or the field names the rule's facts come
from (each field as its short value, `cds.engine.compile.scope_values`); a variant asserted with
``cds_scope: <that field's value>`` is matched only by the rules that read that
field (and only in the shards holding such rules), and its fired set is completed from the
patient's (`Engine.run_counterfactuals`, which takes each variant as the patient's fact plus an
assignment and refuses an assignment outside its field). A variant is only ever decided (the
unknown-fact analysis compares its ranking decision with the patient's), so only the deciding rules
(`Rule.decides`: require, exclude, prefer, deprefer) carry scopes: a caution or a next step is matched
against the patient's fact alone and reported for every variant as it fired for the patient (about a
sixth of the fired rules' actions and a tenth of the loop's instructions less). tests/test_batch.py
checks scoped against unscoped runs, on the deciding rules, on many generated profiles.
"""

from __future__ import annotations

import contextlib
import functools
import itertools
import json
import math
import operator
import re
import threading
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, NoReturn, cast

import durable_rules_engine as _core  # durable-rules' C core (what durable.engine.Ruleset wraps)

from cds.engine import capacity, pin
from cds.engine.compile import (
    ALL,
    BOOKKEEPING,
    PATIENT,
    SENTINEL,
    compile_condition,
    fact_scope,
    property_names,
    rule_definition,
    rule_facts,
    rule_scopes,
    scope_values,
    sentinel_definition,
)
from cds.errors import EngineError, RuleSetError
from cds.knowledge.ruleset import Leaf, Rule, RuleSet, leaves
from cds.model.facts import Value
from cds.usercache import cached

__all__ = [
    "SENTINEL",
    "Engine",
    "capacity_problems",
    "compile_condition",
    "durable_version",
    "fact_scope",
    "plan_order",
    "plan_rules",
]

_HEAD = '":{"m":{"id":"v'  # what follows an action name in an action message (`_fact_text`: the id first)
_ENCODE = json.JSONEncoder(ensure_ascii=False, separators=(",", ":"), allow_nan=False).encode
# durable-rules' JSON reader crashes the process (SIGSEGV) on a number in exponent form
# without a decimal point, which is how Python writes 1e-05 or 1e+16: write 1.0e-05.
_BARE_EXPONENT = re.compile(r"(?<=[:,\[])(-?\d+)(?=[eE][-+]?\d)")
_ERROR_CODE = re.compile(r"error code: (\d+)")
#: durable-rules' result codes (src/rules/rules.h), for the error messages
CODES = {
    1: "ERR_EVENT_NOT_HANDLED: no rule accepted the fact",
    2: "ERR_EVENT_OBSERVED: the same fact twice",
    3: "ERR_EVENT_DEFERRED",
    101: "ERR_OUT_OF_MEMORY",
    102: "ERR_UNEXPECTED_TYPE",
    105: "ERR_UNEXPECTED_NAME",
    106: "ERR_RULE_LIMIT_EXCEEDED",
    107: "ERR_RULE_EXISTS_LIMIT_EXCEEDED",
    108: "ERR_RULE_BETA_LIMIT_EXCEEDED",
    111: "ERR_INVALID_HANDLE",
    113: "ERR_EXPRESSION_LIMIT_EXCEEDED",
    201: "ERR_PARSE_VALUE",
    202: "ERR_PARSE_STRING",
    203: "ERR_PARSE_NUMBER",
    204: "ERR_PARSE_OBJECT",
    205: "ERR_PARSE_ARRAY",
    302: "ERR_EVENT_MAX_PROPERTIES",
    303: "ERR_MAX_STACK_SIZE: more alpha nodes pending than the 64-entry stack holds",
    304: "ERR_MAX_MESSAGES_IN_FRAME",
    309: "ERR_SID_NOT_FOUND",
    310: "ERR_NO_ACTION_AVAILABLE",
}
_PATIENT_JSON = json.dumps(PATIENT)
_PRIMED_SLOTS = 6  # a state pool starts with 8 slots, slot 0 unused, and grows when the 7th is taken


def _dumps(value: list[dict[str, Any]] | dict[str, Any]) -> str:
    return _engine_json(_ENCODE(value))


def _engine_json(text: str) -> str:
    """JSON text as durable-rules' reader takes it: a number in exponent form gets its decimal point."""
    if "e+" in text or "e-" in text:  # Python's float repr always signs the exponent
        text = _BARE_EXPONENT.sub(r"\1.0", text)
    return text


_encode_string = json.encoder.encode_basestring  # what _ENCODE writes for a str (ensure_ascii=False)


def _value(value: Any) -> str:
    """`value` as `_dumps` writes it.

    The patient's facts are encoded item by item once per evaluation and joined per shard and
    variant (`_fact_text`): a shard's fact is a subset of the patient's, and encoding whole dicts
    encoded every value once per shard and variant. bool, int and str are the fact types
    (`cds.model.facts.Value`); a float is checked as ``allow_nan=False`` does and written with the
    decimal point durable-rules' reader needs (``1e-05`` -> ``1.0e-05``, as `_engine_json`); anything
    else goes through `_dumps` itself (`_ENCODE` raises ValueError for NaN and the infinities)."""
    t = type(value)
    if t is bool:
        return "true" if value else "false"
    if t is str:
        return _encode_string(value)
    if t is int:
        return int.__repr__(value)
    if t is float and math.isfinite(value):
        text = float.__repr__(value)
        return text.replace("e", ".0e") if "e" in text and "." not in text else text
    return _dumps(value)


def _encoded(
    values: Mapping[str, Any], prefixes: Mapping[str, str], booleans: Mapping[str, tuple[str, str]], patient: str | None
) -> dict[str, str]:
    """``"<property>":value`` of each item of `values` some rule reads (`prefixes`: fact -> ``"<property>":``;
    `booleans`: fact -> its two texts for false and true, written ahead); a value JSON cannot hold is an EngineError."""
    out: dict[str, str] = {}
    get, get_bool = prefixes.get, booleans.get
    try:
        for k, v in values.items():
            t = type(v)  # the fact types first (`_value` does the same), without a call per item
            if t is bool:  # most facts: no text to build
                b = get_bool(k)
                if b is not None:
                    out[k] = b[v]
                continue
            p = get(k)
            if p is None:
                continue
            out[k] = p + _encode_string(v) if t is str else p + _value(v)
        return out
    except ValueError as exc:
        raise EngineError(f"a fact of {patient or 'a patient'} cannot be sent to the engine: {exc}") from None


def _unmatchable(rules: Sequence[Rule]) -> set[tuple[str, bool]]:
    """(fact, value) for each boolean value every test of `rules` on the fact is false at, as it is when the fact
    is missing: each test is ``== not value``, ``in`` a list without `value`, or ``!= value`` (a missing fact
    matches none of these, shared/notes pitfall 4), and none is ``is unknown`` (which a missing fact matches);
    facts the rules do not test are not named."""
    tests: dict[str, list[Leaf]] = {}
    for rule in rules:
        for leaf in leaves(rule.condition):
            tests.setdefault(leaf.fact, []).append(leaf)

    def false_at(leaf: Leaf, value: bool) -> bool:
        v = leaf.value
        if leaf.op == "==":
            return type(v) is bool and v is not value
        if leaf.op == "!=":
            return type(v) is bool and v is value
        if leaf.op == "in":
            return isinstance(v, tuple) and all(type(x) is bool and x is not value for x in v)
        return False

    return {(f, value) for f, found in tests.items() for value in (False, True) if all(false_at(t, value) for t in found)}


def _fact_text(number: int, items: list[str], scope: str, sid: str) -> str:
    """One fact as `_ENCODE` writes ``{"id": f"v{number}", **items, "t": PATIENT, "cds_scope": scope, "sid": sid}``:
    the id, which carries the variant number, first (the action messages are read by it)."""
    return ",".join([f'{{"id":"v{number:02d}"', *items, _tail(scope, _encode_string(sid))])


def _tail(scope: str, sid_text: str) -> str:
    """The end of a fact's text (what follows its items and their comma); `sid_text`: the session ID in JSON."""
    return f'"t":{_PATIENT_JSON},"cds_scope":{_encode_string(scope)},"sid":{sid_text}}}'


def _retracted(number: int, sid_text: str) -> str:
    """What `retract_facts` is given for fact `number` of a session (`sid_text`: its ID in JSON)."""
    return f'{{"id":"v{number:02d}","sid":{sid_text}}}'


_MAX_ID = 65  # the variant numbers whose fact id and retraction are written ahead (`_IDS`, `Engine._session_texts`)
_IDS = tuple(f'{{"id":"v{n:02d}"' for n in range(_MAX_ID))  # how `_fact_text` starts fact n
_ONLY_BASE = (0,)
_EMPTY: frozenset[str] = frozenset()


def _payload(facts: list[str]) -> str:
    """The facts' texts as one JSON array (their numbers are written as durable-rules reads them: `_value`)."""
    return f"[{','.join(facts)}]"


def _code(exc: BaseException) -> str:
    """The numeric code in a C-core exception, with its name: '303 (ERR_MAX_STACK_SIZE: ...)'."""
    if isinstance(exc, MemoryError):
        return f"101 ({CODES[101]})"
    m = _ERROR_CODE.search(str(exc))
    if not m:
        return f"unknown ({exc})"
    code = int(m.group(1))
    return f"{code} ({CODES.get(code, 'see durable-rules src/rules/rules.h')})"


_PLAN_FORMAT = "cds-shard-plan/1"


def plan_rules(rules: Sequence[Rule], max_pending: int = capacity.MAX_PENDING) -> tuple[capacity.Plan, dict[str, dict[str, Any]]]:
    """The shard plan of the (active) rules and each rule's durable-rules definition: what `Engine` compiles.

    `capacity.plan` is a function of the definitions, the sentinel, the bookkeeping properties and the
    bound alone, and most of the compile's cost: a plan made before comes from this user's cache
    (``shard-plan``), named by a key over exactly those inputs and `cds.usercache.code_fingerprint`
    (the cds sources, capacity's model among them), and read like every cache file
    (`cds.usercache.cached`: owner and mode, header key, only cds classes).
    """
    names = property_names(set().union(*(rule_facts(r) for r in rules)))
    scopes = scope_values(rules)
    definitions = {rule.id: rule_definition(rule, pri, names, scopes) for pri, rule in enumerate(rules)}
    items, sentinel = [(r.id, definitions[r.id]) for r in plan_order(rules)], _sentinel(rules)
    inputs = json.dumps([items, sentinel, BOOKKEEPING, max_pending], sort_keys=True, ensure_ascii=False)
    plan = cached(
        "shard-plan",
        _PLAN_FORMAT,
        inputs.encode("utf-8", "surrogatepass"),
        capacity.Plan,
        lambda: capacity.plan(items, sentinel, BOOKKEEPING, max_pending),
    )
    return plan, definitions


def plan_order(rules: Sequence[Rule]) -> list[Rule]:
    """The order the rules are packed into shards in: the scoped rules first, grouped by their scopes (`rule_scopes`),
    then the others, each group in the rule set's order.

    A counterfactual variant of a field is asserted into every shard holding a rule of that field's scope
    (`Engine.run_counterfactuals`); packed in the rule set's order, the 27 scoped rules of 166 were spread over 3
    of the 4 shards and a bench profile's 7.1 variants made 11.2 facts to match; grouped, they fill one shard
    and each variant is one fact in one shard. Only the packing changes: each rule keeps its priority (its
    place in the rule set), and what a fact fires is a set, so which shard holds a rule changes no result."""
    return sorted(rules, key=lambda r: (not rule_scopes(r), rule_scopes(r)))


def capacity_problems(rules: Sequence[Rule]) -> tuple[dict[str, str], str]:
    """For `cds rules check`: rule ID -> problem line for every rule that fits in no ruleset, and the plan's summary."""
    plan, _ = plan_rules(rules)
    return dict(zip((rid for rid, _ in plan.problems), _problem_lines(rules, plan))), plan.summary()


def _problem_lines(rules: Sequence[Rule], plan: capacity.Plan) -> list[str]:
    files = {r.id: r.file for r in rules}
    return [
        f"{files[rid]} [{rid}] when: too large for one durable-rules ruleset even on its own: {why}; split it into smaller rules"
        for rid, why in plan.problems
    ]


def _sentinel(rules: Sequence[Rule]) -> dict[str, Any]:
    return sentinel_definition(len(rules) + 1)


@dataclass(frozen=True)
class _Shard:
    number: int  # 1-based, for messages
    handle: int
    label: str  # 'ruleset 2 of 3 (CARTM-SBCMA-001 .. SEQ-CD38-004, 36 rules)'
    facts: tuple[str, ...]  # the facts its rules read: the only ones asserted into it
    scope_facts: Mapping[str, tuple[str, ...]]  # scope -> facts read by its rules of that scope
    scope_keys: Mapping[str, frozenset[str]]  # the same as sets
    prefixes: Mapping[str, str]  # '{"<action name>":{"m":{"id":"v' -> rule ID (incl. the sentinel)
    # '{"<action name>":{"m":{"id":"v<i>"' -> (i, rule ID), filled as action messages are read
    heads: dict[str, tuple[int, str]] = field(default_factory=dict)
    # the same for the heads of fact 0: head -> rule ID (`Engine._fire` reads a lone base fact's messages by it)
    base_heads: dict[str, str] = field(default_factory=dict)
    # an action message -> its first characters: its head when the fact's number is below 100 (two digits, `_IDS`),
    # else a text no head is (it ends in a digit, a head in '"'), so not in `heads` (read the old way, `_fire`)
    cut: Callable[[str], str] = operator.itemgetter(slice(0, 0))


_names = itertools.count()


class Engine:
    """A compiled rule set. Create once per process (recompiling leaks: pitfall 8).

    `max_pending` is the stack bound the shards are planned to (tests raise it to provoke the
    engine's own error 303 and check that it is reported, not a crash).
    """

    def __init__(self, ruleset: RuleSet, max_pending: int = capacity.MAX_PENDING):
        pin.check()  # the C functions below are driven as durable-rules 2.0.28 has them
        self.ruleset = ruleset
        self._lock = threading.Lock()  # the C core is not re-entrant; one evaluation at a time
        self._sids = itertools.count()
        self._live: dict[int, str] = {}  # shard number -> its open session, empty between evaluations
        #: session -> its texts (`_session_texts`): the retraction of fact 0, retraction items, fact tails
        self._texts: dict[str, tuple[str, list[str], dict[str, str]]] = {}
        self.rule_ids = frozenset(r.id for r in ruleset.rules) | {SENTINEL}
        by_id = {r.id: r for r in ruleset.rules}
        in_scope: dict[str, set[str]] = {}
        for rule in ruleset.rules:
            for s in rule_scopes(rule):
                in_scope.setdefault(s, set()).add(rule.id)
        #: facts some rule names: the only ones asserted (the others cannot change what fires)
        self.used_facts = frozenset().union(*(rule_facts(r) for r in ruleset.rules))
        #: scope -> the rules that read a fact of that scope
        self.rules_in_scope = {s: frozenset(ids) for s, ids in in_scope.items()}
        #: fact -> its scope (None: none), for every fact rules read (`run_counterfactuals` checks assignments by it)
        self._scope_used = {f: fact_scope(f) for f in self.used_facts}
        #: fact -> '"<its short property name>":' (`property_names`: the names plan_rules compiles with)
        self._prefixes = {f: f"{_encode_string(name)}:" for f, name in property_names(self.used_facts).items()}
        #: fact -> its '"<property>":false' and '"<property>":true' (`_encoded`), "" for a value no rule can
        #: match (`_unmatchable`): the fact is then asserted without it, as durable-rules would match it
        unmatchable = _unmatchable(ruleset.rules)
        self._booleans = {
            f: ("" if (f, False) in unmatchable else f"{p}false", "" if (f, True) in unmatchable else f"{p}true")
            for f, p in self._prefixes.items()
        }
        #: scope -> its short cds_scope value (`scope_values`: the values plan_rules compiles with)
        self._scope_values = scope_values(ruleset.rules)

        self.plan, definitions = plan_rules(ruleset.rules, max_pending)
        if self.plan.problems:
            raise RuleSetError(_problem_lines(ruleset.rules, self.plan))
        sentinel = _sentinel(ruleset.rules)
        base = f"cds_{ruleset.digest[:12]}_{next(_names)}"
        total = len(self.plan.shards)
        shards: list[_Shard] = []
        try:
            for number, part in enumerate(self.plan.shards, 1):
                rules = [by_id[rid] for rid in part.rule_ids]
                label = f"ruleset {number} of {total} ({part.rule_ids[0]} .. {part.rule_ids[-1]}, {len(rules)} rules)"
                # each rule compiled under a short action name ("r<k>": every action message starts with it)
                # (as many digits for each: every message head of a fact numbered below 100 has one length, `_Shard.cut`)
                named = (*part.rule_ids, SENTINEL)
                actions = {f"r{k:0{len(str(len(named) - 1))}d}": rid for k, rid in enumerate(named)}
                definition = {a: definitions[rid] if rid != SENTINEL else sentinel for a, rid in actions.items()}
                try:
                    handle = _core.create_ruleset(f"{base}_{number}", _dumps(definition))
                except BaseException as exc:  # noqa: BLE001 - the C core reports bare numeric codes
                    raise EngineError(f"durable-rules refused {label}: error code {_code(exc)}") from None
                scope_facts: dict[str, set[str]] = {}
                for r in rules:
                    for s in rule_scopes(r):
                        scope_facts.setdefault(s, set()).update(rule_facts(r))
                shard = _Shard(
                    number=number,
                    handle=handle,
                    label=label,
                    facts=tuple(sorted(set().union(*(rule_facts(r) for r in rules)))),
                    scope_facts={s: tuple(sorted(f)) for s, f in scope_facts.items()},
                    scope_keys={s: frozenset(f) for s, f in scope_facts.items()},
                    prefixes={f'{{"{a}{_HEAD}': rid for a, rid in actions.items()},
                    cut=operator.itemgetter(slice(0, len(f'{{"{next(iter(actions))}{_HEAD}00"'))),
                )
                shards.append(shard)
                self._prime(shard)
        except BaseException:
            for shard in shards:
                with contextlib.suppress(BaseException):
                    _core.delete_ruleset(shard.handle)
            raise
        self._shards = tuple(shards)

    @property
    def shard_count(self) -> int:
        return len(self._shards)

    def run(self, variants: Sequence[dict[str, Value]], patient: str | None = None) -> list[frozenset[str]]:
        """Assert each variant as a fact in one fresh session; return the rules fired per variant.

        `patient` (an ID) only names the patient in an error message.
        """
        if not variants:
            return []
        fired: list[set[str]] = [set() for _ in variants]
        encoded = [_encoded(v, self._prefixes, self._booleans, patient) for v in variants]
        with self._lock:
            for shard in self._shards:
                sid = self._session(shard)
                keys = shard.facts
                facts = [_fact_text(i, [t for k in keys if (t := e.get(k))], ALL, sid) for i, e in enumerate(encoded)]
                self._fire(shard, sid, facts, range(len(facts)), fired, patient)
        return [frozenset(f) for f in fired]

    def run_counterfactuals(
        self, base: dict[str, Value], variants: Sequence[tuple[str, Mapping[str, Value]]], patient: str | None = None
    ) -> list[frozenset[str]]:
        """The rules fired for `base` and for each variant ``base | assignment``, in one session per shard.

        Each variant is ``(scope, assignment)``: ``scope`` is the profile field
        (`fact_scope`) every fact of ``assignment`` comes from. Only the deciding rules
        (`Rule.decides`) that read that field are matched against the variant; the others
        are reported as they fired for `base` (see the module docstring). Returns
        ``[fired(base), fired(variant 1), ...]``.
        """
        prefixes, booleans, scope_used = self._prefixes, self._booleans, self._scope_used
        changed: list[dict[str, str]] = []  # each assignment's items as `_encoded` writes them
        refused = False
        try:
            # one pass per assignment: its scope checked (a used fact outside it: EngineError), its items encoded
            for scope, assignment in variants:
                own: dict[str, str] = {}
                for k, v in assignment.items():
                    if scope_used.get(k, scope) != scope:  # a fact no rule reads is outside every scope
                        raise EngineError(f"a variant scoped to {scope!r} also changes {k!r}")
                    if type(v) is bool:
                        b = booleans.get(k)
                        if b is not None:
                            own[k] = b[v]
                        continue
                    p = prefixes.get(k)
                    if p is not None:
                        own[k] = p + _encode_string(v) if type(v) is str else p + _value(v)
                changed.append(own)
        except Exception:  # noqa: BLE001 - replayed below, in the order the checks one at a time raise
            refused = True
        if refused:
            self._refuse(base, variants, patient)  # the EngineError the checks one at a time raise first
        encoded = _encoded(base, prefixes, booleans, patient)
        fired: list[set[str]] = [set() for _ in range(len(variants) + 1)]
        ids, short_scope = _IDS, self._scope_values
        with self._lock:
            for shard in self._shards:
                sid = self._session(shard)
                tails = (self._texts.get(sid) or self._session_texts(sid))[2]
                # each fact's text as `_fact_text` writes it: its id, its items (never empty texts: map/filter drop
                # only the facts the patient lacks), then its tail (per session)
                facts = [",".join([ids[0], *filter(None, map(encoded.get, shard.facts)), tails[ALL]])]
                scope_facts = shard.scope_facts
                if not scope_facts:
                    self._fire(shard, sid, facts, _ONLY_BASE, fired, patient)
                    continue
                numbers = [0]
                common: dict[str, list[str]] = {}  # scope -> the base's items its rules here read
                for i, (scope, assignment) in enumerate(variants, 1):
                    keys = scope_facts.get(scope)
                    if keys is None:
                        continue  # no rule of this shard reads that field: it fires as for the base fact
                    # only what this shard's rules of the scope read (the only ones matched against it): the
                    # base's items in the shard's order with the assignment's values, then the assignment's others
                    own, key_set = changed[i - 1], shard.scope_keys[scope]
                    # (an empty text: a value no rule can match, left out, `_unmatchable`)
                    if own.keys().isdisjoint(encoded):  # what a variant of unknown facts is: the base's items as they are
                        same = common.get(scope)
                        if same is None:
                            same = common[scope] = list(filter(None, map(encoded.get, keys)))
                        items = [*same, *[t for k in assignment if k in key_set and (t := own[k])]]
                    else:
                        items = [t for k in keys if k in encoded and (t := own[k] if k in own else encoded[k])]
                        items += [t for k in assignment if k in key_set and k not in encoded and (t := own[k])]
                    short = short_scope[scope]
                    facts.append(",".join([ids[i], *items, tails[short]]) if i < _MAX_ID else _fact_text(i, items, short, sid))
                    numbers.append(i)
                self._fire(shard, sid, facts, numbers, fired, patient)
        base_fired = frozenset(fired[0])
        out = [base_fired]
        # scope -> (the base's fired rules in it, those outside it); a variant sees the base's values outside its scope
        parts: dict[str, tuple[frozenset[str], frozenset[str]]] = {}
        in_scope = self.rules_in_scope
        for (scope, _), got in zip(variants, fired[1:]):
            known = parts.get(scope)
            if known is None:
                rules = in_scope.get(scope, _EMPTY)
                known = parts[scope] = (base_fired & rules, base_fired - rules)
            # the base's own frozenset when the variant fires as the base does (most do): equal, and found by
            # identity where results are compared (Evaluator.evaluate decides each distinct fired set once)
            out.append(base_fired if got == known[0] else known[1] | got)  # a frozenset
        return out

    def _refuse(
        self, base: Mapping[str, Value], variants: Sequence[tuple[str, Mapping[str, Value]]], patient: str | None
    ) -> NoReturn:
        """Raise the EngineError the checks one at a time raise first: every variant's scope, then the base's
        facts, then each assignment's (`run_counterfactuals` checks and encodes in one pass)."""
        scope_used = self._scope_used
        for scope, assignment in variants:
            for name in assignment:
                if scope_used.get(name, scope) != scope:
                    raise EngineError(f"a variant scoped to {scope!r} also changes {name!r}")
        prefixes, booleans = self._prefixes, self._booleans
        for values in (base, *(assignment for _, assignment in variants)):
            _encoded(values, prefixes, booleans, patient)
        raise AssertionError("no fact to refuse")  # unreachable: these encode every item the pass did

    def _session_texts(self, sid: str) -> tuple[str, list[str], dict[str, str]]:
        """Per session: the retraction of fact 0 alone, each fact's retraction item by number (`_retracted`), and
        the facts' tails by scope value, ALL included (`_tail`); made once per session (a new one only after a
        failure)."""
        if len(self._texts) >= 64:  # sessions of earlier failures
            self._texts.clear()
        sid_text = _encode_string(sid)
        pieces = [_retracted(n, sid_text) for n in range(_MAX_ID)]
        tails = {scope: _tail(scope, sid_text) for scope in (ALL, *self._scope_values.values())}
        texts = self._texts[sid] = (f"[{pieces[0]}]", pieces, tails)
        return texts

    def _fail(self, shard: _Shard, patient: str | None, what: str) -> EngineError:
        who = f"patient {patient}" if patient else "a fact without patient ID"
        return EngineError(f"durable-rules {shard.label} failed for {who}: {what}")

    def _session(self, shard: _Shard) -> str:
        """The shard's open session (a new one after a failure): creating one costs more than the matching."""
        sid = self._live.get(shard.number)
        if sid is None:
            sid = self._live[shard.number] = f"s{next(self._sids)}"
        return sid

    def _fire(
        self, shard: _Shard, sid: str, facts: list[str], numbers: Sequence[int], into: Sequence[set[str]], patient: str | None
    ) -> None:
        """Assert `facts` (their JSON texts, `_fact_text`; `numbers` their variant numbers) into one shard's
        session `sid`; add the rules fired for variant number n to ``into[n]`` (sentinel checked).

        The facts are retracted once their actions have run, which leaves the session empty for the
        next evaluation; on any failure the session is deleted instead (the next one is new).
        """
        h = shard.handle
        payload = _payload(facts)
        # retract_facts finds a fact by its id and session alone (events.c handleMessageCore: getMessage(sid
        # state, mid) then handleDeleteMessage; the rest of the object is parsed and never read)
        single = len(numbers) == 1
        retract_one, pieces, _ = self._texts.get(sid) or self._session_texts(sid)
        if single and numbers[0] == 0:
            retraction = retract_one
        else:
            sid_text = _encode_string(sid)
            retraction = "[" + ",".join([pieces[n] if n < _MAX_ID else _retracted(n, sid_text) for n in numbers]) + "]"
        messages: list[str] = []
        state_offset = None
        emptied = False
        try:
            code, state_offset = _core.assert_facts(h, payload)
            if code != 0:
                raise self._fail(shard, patient, f"assert_facts returned code {code} ({CODES.get(code, '?')})")
            started = _core.start_action_for_state(h, state_offset)
            message = started[1] if started else None
            # Each action message is {"r<k>":{"m":{"id":"v<i>", ...the fact...}}} (the C core keeps
            # the fact's key order and action names hold no comma): read below once the session is done.
            if message is not None:
                # the others until complete_and_start_action returns None, called from C (iter with a sentinel):
                # the same calls in the same order as a Python loop, without its ~90 iterations per patient
                messages.append(message)
                messages.extend(iter(functools.partial(_core.complete_and_start_action, h, state_offset), None))
            code, _ = _core.retract_facts(h, retraction)
            if code != 0:
                raise self._fail(shard, patient, f"retract_facts returned code {code} ({CODES.get(code, '?')})")
            if _core.start_action_for_state(h, state_offset) is not None:
                raise self._fail(shard, patient, "a rule fired when the facts were retracted")
            emptied = True
        except EngineError:
            self._abandon(h, state_offset)
            raise
        except BaseException as exc:  # noqa: BLE001 - the C core raises bare errors with numeric codes
            self._abandon(h, state_offset)
            raise self._fail(shard, patient, f"error code {_code(exc)}") from None
        finally:
            if not emptied:
                self._live.pop(shard.number, None)
                with contextlib.suppress(BaseException):  # nothing more to clean
                    _core.delete_state(h, sid)
        fired: dict[int, set[str]] = {n: into[n] for n in numbers}  # a number not asserted here: KeyError
        # the heads seen before (`_Shard.cut`, in C); None marks one not seen before: all read the old way below
        if single and numbers[0] == 0:  # most shards get the base fact alone
            pending = cast("set[str | None]", into[0])  # None in it only until the check below
            pending.update(map(shard.base_heads.get, map(shard.cut, messages)))
            if None not in pending:
                messages = []
            pending.discard(None)
        else:
            hits = list(map(shard.heads.get, map(shard.cut, messages)))
            if None not in hits:
                try:
                    for number, rule in cast("list[tuple[int, str]]", hits):
                        fired[number].add(rule)
                    messages = []
                except KeyError:  # a fact not asserted here: reported below
                    pass
        if messages:
            # each message's text up to its first comma: '{"r<k>":{"m":{"id":"v<i>"', parsed and checked
            known = shard.heads
            try:
                for head in [m[: m.find(",")] for m in messages]:
                    hit = known.get(head) or self._head(shard, head)
                    fired[hit[0]].add(hit[1])
            except (KeyError, ValueError):
                raise self._fail(shard, patient, f"unexpected action message {head[:80]!r}") from None
        for number, got in fired.items():
            if SENTINEL not in got:
                raise self._fail(shard, patient, f"fact {number} was not evaluated to the end (the sentinel rule did not fire)")
            got.discard(SENTINEL)

    @staticmethod
    def _head(shard: _Shard, head: str) -> tuple[int, str]:
        """(variant number, rule ID) of an action message's head; remembered (at most 64 variants per rule)."""
        start, mark, variant = head[:-1].rpartition('"v')
        if not (head.endswith('"') and variant.isascii() and variant.isdigit()):
            raise ValueError(variant)
        hit = int(variant), shard.prefixes[start + mark]
        if hit[0] < 64:
            shard.heads[head] = hit
            if hit[0] == 0:
                shard.base_heads[head] = hit[1]
        return hit

    @staticmethod
    def _abandon(handle: int, state_offset: int | None) -> None:
        if state_offset is None:
            return
        with contextlib.suppress(BaseException):  # no action in progress
            _core.abandon_action(handle, state_offset)

    def _prime(self, shard: _Shard) -> None:
        """Run one action in each of the shard's first state slots, so that none holds an uninitialised context.

        durable-rules' ``createStateNode`` never initialises a session's action context; ``delete_state``
        and ``abandon_action`` free it. Starting an action sets it, finishing one frees and NULLs it, and
        a deleted slot is the next one reused: after this, cleaning up a session in which no action ran
        (e.g. after error 303) frees nothing it should not (see the module docstring).
        """
        h = shard.handle
        fact = {"id": "p", "t": PATIENT, "cds_scope": ""}  # only the sentinel matches it
        done: list[str] = []  # sessions whose action ran: safe to delete (a failed one is left to leak)
        try:
            offsets = []
            for i in range(_PRIMED_SLOTS):  # all live at once: each takes its own slot
                sid = f"prime{i}"
                code, offset = _core.assert_facts(h, _dumps([{**fact, "sid": sid}]))
                if code != 0:
                    raise EngineError(f"durable-rules {shard.label}: priming returned code {code}")
                offsets.append((sid, offset))
            for sid, offset in offsets:
                if _core.start_action_for_state(h, offset) is None:
                    raise EngineError(f"durable-rules {shard.label}: the sentinel rule did not fire while priming")
                while _core.complete_and_start_action(h, offset) is not None:
                    pass
                done.append(sid)
        except EngineError:
            raise
        except BaseException as exc:  # noqa: BLE001 - the C core raises bare errors with numeric codes
            raise EngineError(f"durable-rules {shard.label} failed while priming: error code {_code(exc)}") from None
        finally:
            for sid in done:
                with contextlib.suppress(BaseException):
                    _core.delete_state(h, sid)


def durable_version() -> str:
    """The installed durable-rules version (`cds.engine.pin`: read once, beside the C module)."""
    return pin.installed() or "unknown"
