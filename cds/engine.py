"""The rules engine run: the only module that imports durable-rules.

Rules are compiled once per process into a durable-rules ruleset defined as
plain JSON (no `durable.lang` host, so no background timer threads). Each
evaluation asserts one or more *facts* (never events: an event is consumed by
the first matching rule, shared/notes pitfall 1) into a fresh session id, runs
the actions synchronously, checks for errors the engine would otherwise swallow
(pitfall 2), and always deletes the session (pitfall 7: at most 1,024 live
sessions).

Every pattern carries a type discriminator ``t == "patient"`` so that no rule
can match the session's state fact (pitfall 5). Actions only add the rule ID to
a set, so an ``$or`` firing once per true branch (pitfall 3) is harmless. A
lowest-priority sentinel rule fires for every fact; if it does not, the run is
reported as an engine failure instead of an empty result.

Several facts ("variants", e.g. the counterfactual profiles of the unknown-fact
analysis) can share one session: each carries its own ``variant`` number and
rules match single facts, so variants never interact.
"""

from __future__ import annotations

import itertools
import threading
from dataclasses import dataclass

from durable import engine as _durable

from .errors import EngineError
from .facts import Value
from .ruleset import Condition, Group, Leaf, RuleSet

SENTINEL = "__evaluated__"
_TYPE = "patient"


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


class _NoHost:
    """durable's Ruleset asks its host only for named actions; ours are callables."""

    def get_action(self, action_name: str):  # pragma: no cover - never called
        raise EngineError(f"no named action {action_name!r}")


_names = itertools.count()


@dataclass
class _Run:
    fired: list[set[str]]


class Engine:
    """A compiled rule set. Create once per process (recompiling leaks: pitfall 8)."""

    def __init__(self, ruleset: RuleSet):
        self.ruleset = ruleset
        self._lock = threading.Lock()  # the C core is not re-entrant; one evaluation at a time
        self._current: _Run | None = None
        self._sids = itertools.count()
        definition: dict[str, dict] = {}
        for pri, rule in enumerate(ruleset.rules):
            pattern: dict = {"t": _TYPE}
            if rule.condition is not None:
                pattern = {"$and": [{"t": _TYPE}, compile_condition(rule.condition)]}
            definition[rule.id] = {"all": [{"m": pattern}], "pri": pri, "run": self._action(rule.id)}
        definition[SENTINEL] = {"all": [{"m": {"t": _TYPE}}], "pri": len(ruleset.rules) + 1, "run": self._action(SENTINEL)}
        self.definition_size = len(definition)
        name = f"cds_{ruleset.digest[:12]}_{next(_names)}"
        try:
            self._rs = _durable.Ruleset(name, _NoHost(), definition)
        except BaseException as exc:  # the C core reports bare numeric codes
            raise EngineError(f"durable-rules refused the compiled rule set: {exc}") from None

    def _action(self, rule_id: str):
        def action(c) -> None:
            run = self._current
            if run is None:
                raise EngineError("rule fired outside an evaluation")
            run.fired[int(c.m["variant"])].add(rule_id)

        return action

    def run(self, variants: list[dict[str, Value]]) -> list[frozenset[str]]:
        """Assert each variant as a fact in one fresh session; return the rules fired per variant."""
        if not variants:
            return []
        facts = []
        for i, v in enumerate(variants):
            fact = dict(v)
            fact.update({"t": _TYPE, "variant": i, "id": f"v{i}"})
            facts.append(fact)
        with self._lock:
            sid = f"e{next(self._sids)}"
            for f in facts:
                f["sid"] = sid
            run = _Run(fired=[set() for _ in variants])
            self._current = run
            error: list[object] = [None]
            state: list[object] = [None]

            def complete(e, s) -> None:
                error[0] = e
                state[0] = s

            try:
                try:
                    handle = self._rs.assert_facts(facts)
                except _durable.MessageNotHandledException:
                    raise EngineError("the engine did not accept the patient fact") from None
                except _durable.MessageObservedException:
                    raise EngineError("the engine saw the same patient fact twice") from None
                self._rs.do_actions(handle, complete)
                if error[0]:
                    raise EngineError(f"a rule action failed inside the engine: {error[0]}")
                if isinstance(state[0], dict) and "exception" in state[0]:
                    raise EngineError(f"the engine reported: {state[0]['exception']}")
            finally:
                self._current = None
                try:
                    self._rs.delete_state(sid)
                except BaseException:  # noqa: BLE001 - nothing more to clean
                    pass
        out = []
        for i, fired in enumerate(run.fired):
            if SENTINEL not in fired:
                raise EngineError(f"the engine did not finish evaluating fact {i} (sentinel rule did not fire)")
            fired.discard(SENTINEL)
            out.append(frozenset(fired))
        return out


def durable_version() -> str:
    try:
        from importlib.metadata import version

        return version("durable_rules")
    except Exception:  # noqa: BLE001
        return "unknown"
