"""The rules engine run: the only module that imports durable-rules.

Rules are compiled once per process into a durable-rules ruleset defined as
plain JSON (no `durable.lang` host, so no background timer threads). Each
evaluation asserts one or more *facts* (never events: an event is consumed by
the first matching rule, shared/notes pitfall 1) into a fresh session id, runs
the actions synchronously, checks for errors the engine would otherwise swallow
(pitfall 2), and always deletes the session (pitfall 7: at most 1,024 live
sessions).

Every pattern carries a type discriminator ``t == "patient"`` so that no rule
can match the session's state fact (pitfall 5). The action of every rule only
records the rule ID in a set, so an ``$or`` firing once per true branch
(pitfall 3) is harmless. A lowest-priority sentinel rule fires for every fact;
if it does not, the run is reported as an engine failure instead of an empty
result.

Several facts ("variants", e.g. the counterfactual profiles of the unknown-fact
analysis) can share one session: each carries its own ``cds_variant`` number
and rules match single facts, so variants never interact.

Speed. durable's Python layer (``durable.engine.Ruleset._flush_actions``) runs
every fired rule through a ``Closure``: ``json.loads`` of the state and of the
whole matched fact, then ``json.dumps`` + ``update_state`` of an unchanged
state, about 20 us per fired rule. Our actions have no side effect on the
session, so `Engine.run` drives the same C functions directly
(``assert_facts``, ``start_action_for_state``, ``complete_and_start_action``,
``abandon_action``, ``delete_state``), reads the rule name and the variant
number from the action message, and never writes the state back. Matching,
conflict resolution and firing order are still durable-rules' own; every
safety check stays (result codes, sentinel rule, unknown rule or malformed
message -> EngineError, ``abandon_action`` on failure, ``delete_state`` in
``finally``). Only the facts some rule names are asserted (the others cannot
change what fires), and numbers in exponent form are written with a decimal
point (``1.0e-05``): durable-rules' JSON reader crashes the process on ``1e-05``.

Scoped variants. A counterfactual variant differs from the patient's own fact
only in the facts of one unknown profile field (e.g. ``cytogenetics``). A rule
that names none of that field's facts sees the same values in both and fires
(or not) exactly as for the patient. Each rule therefore also matches a
``cds_scope`` discriminator: ``"*"`` (every rule) or the field names the rule's
facts come from; a variant asserted with ``cds_scope: <field>`` is matched only
by the rules that read that field, and its fired set is completed from the
patient's (`Engine.run_counterfactuals`, which takes each variant as the
patient's fact plus an assignment and refuses an assignment outside its
field). tests/test_batch.py checks scoped against unscoped runs on many
generated profiles.
"""

from __future__ import annotations

import contextlib
import functools
import itertools
import json
import re
import threading
from collections.abc import Mapping, Sequence

import durable_rules_engine as _core  # durable-rules' C core (what durable.engine.Ruleset wraps)

from cds.errors import EngineError
from cds.knowledge.ruleset import Condition, Group, Leaf, RuleSet, leaves
from cds.model.facts import FACTS, REFRACTORY_FIELD, Value

SENTINEL = "__evaluated__"
_TYPE = "patient"
ALL = "*"  # cds_scope of a fact every rule must see
_HEAD = '":{"m":{"cds_variant":'
_ENCODE = json.JSONEncoder(ensure_ascii=False, separators=(",", ":"), allow_nan=False).encode
# durable-rules' JSON reader crashes the process (SIGSEGV) on a number in exponent form
# without a decimal point, which is how Python writes 1e-05 or 1e+16: write 1.0e-05.
_BARE_EXPONENT = re.compile(r"(?<=[:,\[])(-?\d+)(?=[eE][-+]?\d)")


def _dumps(value: list[dict] | dict) -> str:
    text = _ENCODE(value)
    if "e+" in text or "e-" in text:  # Python's float repr always signs the exponent
        text = _BARE_EXPONENT.sub(r"\1.0", text)
    return text


def compile_condition(cond: Condition) -> dict:
    """Translate a parsed condition into a durable-rules JSON expression."""
    if isinstance(cond, Group):
        return {"$and" if cond.mode == "all" else "$or": [compile_condition(c) for c in cond.items]}
    assert isinstance(cond, Leaf)
    f, op, v = cond.fact, cond.op, cond.value
    if op == "==":
        return {f: v}
    if op == "!=":
        return {"$neq": {f: v}}
    if op in ("<", "<=", ">", ">="):
        key = {"<": "$lt", "<=": "$lte", ">": "$gt", ">=": "$gte"}[op]
        return {key: {f: v}}
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


_names = itertools.count()


class Engine:
    """A compiled rule set. Create once per process (recompiling leaks: pitfall 8)."""

    def __init__(self, ruleset: RuleSet):
        self.ruleset = ruleset
        self._lock = threading.Lock()  # the C core is not re-entrant; one evaluation at a time
        self._sids = itertools.count()
        self.rule_ids = frozenset(r.id for r in ruleset.rules) | {SENTINEL}
        used: set[str] = set()
        in_scope: dict[str, set[str]] = {}
        definition: dict[str, dict] = {}
        for pri, rule in enumerate(ruleset.rules):
            facts = {leaf.fact for leaf in leaves(rule.condition)}
            used |= facts
            scopes = sorted({s for s in map(fact_scope, facts) if s is not None})
            for s in scopes:
                in_scope.setdefault(s, set()).add(rule.id)
            scope: dict = {"cds_scope": ALL}
            if scopes:
                scope = {"$or": [{"cds_scope": ALL}] + [{"cds_scope": s} for s in scopes]}
            parts: list[dict] = [{"t": _TYPE}, scope]
            if rule.condition is not None:
                parts.append(compile_condition(rule.condition))
            definition[rule.id] = {"all": [{"m": {"$and": parts}}], "pri": pri}
        definition[SENTINEL] = {"all": [{"m": {"t": _TYPE}}], "pri": len(ruleset.rules) + 1}
        self.definition = definition
        self.definition_size = len(definition)
        #: facts some rule names: the only ones asserted (the others cannot change what fires)
        self.used_facts = frozenset(used)
        #: scope -> the rules that read a fact of that scope
        self.rules_in_scope = {s: frozenset(ids) for s, ids in in_scope.items()}
        self._used_order = tuple(sorted(used))
        #: fact -> its scope, for the facts rules read that can be unknown
        self._scope_of = {f: s for f in used if (s := fact_scope(f)) is not None}
        #: scope -> every fact read by the rules of that scope
        self._scope_facts = {
            s: tuple(sorted({leaf.fact for r in ruleset.rules if r.id in ids for leaf in leaves(r.condition)}))
            for s, ids in self.rules_in_scope.items()
        }
        #: '{"<rule id>":{"m":{"cds_variant"' (an action message up to the variant number) -> rule id
        self._prefixes = {f'{{"{r}{_HEAD[:-1]}': r for r in self.rule_ids}
        self.name = f"cds_{ruleset.digest[:12]}_{next(_names)}"
        try:
            self._handle = _core.create_ruleset(self.name, _dumps(definition))  # type: ignore[arg-type]
        except BaseException as exc:  # noqa: BLE001 - the C core reports bare numeric codes
            raise EngineError(f"durable-rules refused the compiled rule set: {exc}") from None

    def run(self, variants: Sequence[dict[str, Value]]) -> list[frozenset[str]]:
        """Assert each variant as a fact in one fresh session; return the rules fired per variant."""
        if not variants:
            return []
        used = self._used_order
        facts = []
        for i, v in enumerate(variants):
            fact: dict = {"cds_variant": i}
            fact.update({k: v[k] for k in used if k in v})
            fact["t"] = _TYPE
            fact["cds_scope"] = ALL
            facts.append(fact)
        return self._finish(self._fire(facts), [None] * len(facts))

    def run_counterfactuals(
        self, base: dict[str, Value], variants: Sequence[tuple[str, Mapping[str, Value]]]
    ) -> list[frozenset[str]]:
        """The rules fired for `base` and for each variant ``base | assignment``, in one session.

        Each variant is ``(scope, assignment)``: ``scope`` is the profile field
        (`fact_scope`) every fact of ``assignment`` comes from. Only the rules that
        read that field are matched against the variant; the others fire as for
        `base` (see the module docstring). Returns ``[fired(base), fired(variant 1), ...]``.
        """
        scope_of, used, scope_facts = self._scope_of, self.used_facts, self._scope_facts
        fact: dict = {"cds_variant": 0}
        fact.update({k: base[k] for k in self._used_order if k in base})
        fact["t"] = _TYPE
        fact["cds_scope"] = ALL
        facts: list[dict] = [fact]
        scopes: list[str | None] = [None]
        for i, (scope, assignment) in enumerate(variants, 1):
            fact = {"cds_variant": i}
            # only what the rules of this scope read (they are the only ones matched against it)
            fact.update({k: base[k] for k in scope_facts.get(scope, ()) if k in base})
            for name, value in assignment.items():
                if name in used:
                    if scope_of.get(name) != scope:
                        raise EngineError(f"a variant scoped to {scope!r} also changes {name!r}")
                    fact[name] = value
            fact["t"] = _TYPE
            fact["cds_scope"] = scope
            facts.append(fact)
            scopes.append(scope)
        return self._finish(self._fire(facts), scopes)

    def _fire(self, facts: list[dict]) -> list[set[str]]:
        h = self._handle
        heads: list[str] = []
        with self._lock:
            sid = f"e{next(self._sids)}"
            for i, f in enumerate(facts):
                f["id"] = f"v{i}"
                f["sid"] = sid
            try:
                payload = _dumps(facts)
            except ValueError as exc:
                raise EngineError(f"a fact cannot be sent to the engine: {exc}") from None
            state_offset = None
            try:
                code, state_offset = _core.assert_facts(h, payload)
                if code == 1:
                    raise EngineError("the engine did not accept the patient fact")
                if code == 2:
                    raise EngineError("the engine saw the same patient fact twice")
                if code != 0:
                    raise EngineError(f"the engine deferred the patient fact (code {code})")
                started = _core.start_action_for_state(h, state_offset)
                message = started[1] if started else None
                # Each action message is {"<rule id>":{"m":{"cds_variant": <i>, ...the fact...}}}
                # (the C core keeps the fact's key order and rule IDs hold no comma): keep the
                # text up to the first comma, parsed and checked below once the session is done.
                append, complete = heads.append, _core.complete_and_start_action
                while message is not None:
                    append(message[: message.find(",")])
                    message = complete(h, state_offset)
            except EngineError:
                self._abandon(state_offset)
                raise
            except Exception as exc:  # noqa: BLE001 - the C core raises bare errors with numeric codes
                self._abandon(state_offset)
                raise EngineError(f"the engine failed: {exc}") from None
            finally:
                with contextlib.suppress(BaseException):  # nothing more to clean
                    _core.delete_state(h, sid)
        fired: list[set[str]] = [set() for _ in facts]
        prefixes = self._prefixes
        try:
            for head in heads:
                prefix, _, variant = head.rpartition(":")
                if not variant.lstrip().isdigit():
                    raise ValueError(variant)
                fired[int(variant)].add(prefixes[prefix])
        except (KeyError, ValueError, IndexError):
            raise EngineError(f"unexpected action message from the engine: {head[:80]!r}") from None
        return fired

    def _finish(self, fired: list[set[str]], scopes: list[str | None]) -> list[frozenset[str]]:
        out: list[frozenset[str]] = []
        for i, (got, scope) in enumerate(zip(fired, scopes)):
            if SENTINEL not in got:
                raise EngineError(f"the engine did not finish evaluating fact {i} (sentinel rule did not fire)")
            got.discard(SENTINEL)
            if scope is not None:
                # the rules outside the scope see the same values as the base fact
                got |= out[0] - self.rules_in_scope.get(scope, frozenset())
            out.append(frozenset(got))
        return out

    def _abandon(self, state_offset) -> None:
        if state_offset is None:
            return
        with contextlib.suppress(BaseException):  # no action in progress
            _core.abandon_action(self._handle, state_offset)


@functools.cache
def durable_version() -> str:
    """The installed durable-rules version (read once: package metadata is slow to read)."""
    try:
        from importlib.metadata import version

        return version("durable_rules")
    except Exception:  # noqa: BLE001
        return "unknown"
