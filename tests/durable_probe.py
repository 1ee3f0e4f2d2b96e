"""Probes of durable-rules' C core at the limits `cds.engine.capacity` models (run by tests/test_capacity.py).

Each probe builds a small ruleset straight on the C functions (no cds code), asserts one fact and
reports what the engine did: ``{"name": ..., "n": ..., "result": "ok" | "<error code>", "fired": k}``
plus the definition, so that the test can compare the model's numbers with the engine's. Run in a
subprocess (``python tests/durable_probe.py``, JSON lines on stdout): a wrong model could crash it.

Every ruleset's session slots are primed first, as cds.engine.durable does (one action run in
each, here of a rule matching only ``t == "prime"``), so that cleaning up a session after an
error frees nothing uninitialised.
"""

from __future__ import annotations

import json
import re
import sys

import durable_rules_engine as core

_names = iter(range(10**6))


def _rule(expr: dict, pri: int) -> dict:
    return {"all": [{"m": expr}], "pri": pri}


def _prime(h: int) -> None:
    offsets = []
    for i in range(6):
        _, off = core.assert_facts(h, json.dumps([{"id": "p", "sid": f"prime{i}", "t": "prime"}]))
        offsets.append((f"prime{i}", off))
    for sid, off in offsets:
        core.start_action_for_state(h, off)
        while core.complete_and_start_action(h, off) is not None:
            pass
        core.delete_state(h, sid)


def run(name: str, definition: dict, fact: dict, repeat: int = 1) -> dict:
    """Compile `definition`, assert `fact` `repeat` times (fresh session each), report the last outcome."""
    definition = dict(definition, sentinel=_rule({"t": "x"}, 10**4), primer=_rule({"t": "prime"}, 10**4 + 1))
    try:
        h = core.create_ruleset(f"probe{next(_names)}", json.dumps(definition))
    except Exception as exc:  # noqa: BLE001 - the C core's error codes are the result
        return {"name": name, "definition": definition, "fact": fact, "result": _code(exc), "fired": []}
    _prime(h)
    for rep in range(repeat):
        sid = f"s{rep}"
        fired: list[str] = []
        try:
            code, off = core.assert_facts(h, json.dumps([{**fact, "id": "f", "sid": sid}]))
            result = "ok" if code == 0 else str(code)
            m = core.start_action_for_state(h, off) if code == 0 else None
            message = m[1] if m else None
            while message is not None:
                fired.append(json.loads(message).popitem()[0])
                message = core.complete_and_start_action(h, off)
        except Exception as exc:  # noqa: BLE001
            result = _code(exc)
        finally:
            core.delete_state(h, sid)
    return {"name": name, "definition": definition, "fact": fact, "result": result, "fired": sorted(fired)}


def _code(exc: BaseException) -> str:
    m = re.search(r"error code: (\d+)", str(exc))
    return m.group(1) if m else repr(exc)


def probes() -> list[dict]:
    out = []
    for n in (64, 65):
        # n true tests on distinct facts under one node: n pending
        d = {f"r{i}": _rule({"$and": [{"t": "x"}, {f"p{i}": True}]}, i) for i in range(n)}
        out.append(run(f"star of tests {n}", d, {"t": "x", **{f"p{i}": True for i in range(n)}}, repeat=3))
        # n forward nodes (one per `$or`) under one node: always pending
        d = {f"r{i}": _rule({"$and": [{"t": "x"}, {"$or": [{"s": "a"}, {"s": "b"}]}, {f"p{i}": True}]}, i) for i in range(n)}
        out.append(run(f"star of $or {n}", d, {"t": "x", "s": "a", **{f"p{i}": True for i in range(n)}}, repeat=3))
    for k, m in ((10, 55), (10, 56)):
        # k true nodes, each with m true children: k - 1 wait while the first one's m are pushed
        d = {}
        for g in range(k):
            for i in range(m):
                d[f"r{g}_{i}"] = _rule({"$and": [{"t": "x"}, {f"g{g}": True}, {f"h{i}": True}]}, len(d))
        fact = {"t": "x", **{f"g{g}": True for g in range(k)}, **{f"h{i}": True for i in range(m)}}
        out.append(run(f"two levels {k}x{m}", d, fact))
    # 200 equality tests on one property: one value matches one of them, whatever its type
    for lit, val in ((lambda i: i, 7), (lambda i: f"v{i}", "v7"), (lambda i: i, "7"), (lambda i: f"v{i}", 7)):
        d = {f"r{i}": _rule({"$and": [{"t": "x"}, {"v": lit(i)}]}, i) for i in range(200)}
        out.append(run(f"200 equalities, value {val!r}", d, {"t": "x", "v": val}))
    # the largest safe tables: 127 `$nex` children, 255 rules at one node, 511 tests under one node
    d = {f"r{i}": _rule({"$and": [{"t": "x"}, {"$nex": {f"q{i}": 1}}]}, i) for i in range(127)}
    out.append(run("127 $nex children", d, {"t": "x", **{f"q{i}": 1 for i in range(127) if i != 5}}))
    d = {f"r{i}": _rule({"$and": [{"t": "x"}, {"a": 1}]}, i) for i in range(255)}
    d["other"] = _rule({"$and": [{"t": "x"}, {"b": 1}]}, 300)
    out.append(run("255 rules at one node", d, {"t": "x", "b": 1}))
    d = {f"r{i}": _rule({"$and": [{"t": "x"}, {"v": i}]}, i) for i in range(511)}
    out.append(run("511 tests under one node", d, {"t": "x", "v": 510}))
    # the expression sequence of one pattern: 2 entries per group, 32 refused
    for groups in (15, 16):
        expr: dict = {"a": 1}
        for g in range(groups - 1):
            expr = {"$and": [{f"b{g}": 1}, expr]} if g % 2 else {"$or": [{f"b{g}": 1}, expr]}
        out.append(run(f"{groups} groups", {"r": _rule({"$and": [{"t": "x"}, expr]}, 0)}, {"t": "x", "a": 1}))
    return out


if __name__ == "__main__":
    for p in probes():
        sys.stdout.write(json.dumps(p) + "\n")
