"""The contract with durable-rules' C core (issue 9): the pinned version, the guard, and the shapes cds relies on.

`cds.engine.durable` drives the C functions directly and parses their action messages itself, so
(1) `cds` refuses to start with any other durable-rules than the pinned one (exit 3, one line), and
(2) the shapes those functions return on the pinned version are checked here, straight on the C
module: ``create_ruleset`` -> int handle, ``assert_facts`` -> (code, state offset),
``start_action_for_state`` -> (state, message) or None, ``complete_and_start_action`` -> message or
None, ``retract_facts`` -> (code, state offset) leaving the session empty and firing nothing, so that
`Engine` reuses one session per shard, ``abandon_action``/``delete_state``/``delete_ruleset`` -> None, failures as the module's
``error`` with "error code: N", and an action message that is one rule and one fact, in the
fact's own key order (what `Engine._fire` reads up to its first comma).
"""

from __future__ import annotations

import itertools
import json
import os
import re
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

import durable_rules_engine as core
import pytest
from conftest import PROFILES, ROOT

from cds.engine import pin
from cds.engine.durable import _code, durable_version
from cds.errors import EngineError

_names = itertools.count()


def test_the_pin_in_the_code_is_the_pin_of_the_package_and_is_installed():
    deps = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]["dependencies"]
    assert f"durable-rules=={pin.PINNED}" in deps
    assert pin.installed() == pin.PINNED == durable_version()
    assert pin.problem() is None


def _fake_install(tmp: Path, version: str | None) -> dict[str, str]:
    """A folder holding a copy of the real C module, installed as durable-rules `version` (None: no metadata)."""
    tmp.mkdir()
    shutil.copy2(core.__file__, tmp / Path(core.__file__).name)
    if version is not None:
        info = tmp / f"durable_rules-{version}.dist-info"
        info.mkdir()
        (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: durable_rules\nVersion: {version}\n\n", encoding="utf-8")
    return {**os.environ, "PYTHONPATH": str(tmp)}  # first on sys.path: this copy is the one imported


@pytest.mark.parametrize("version", ["2.0.29", None])
def test_cds_refuses_to_start_with_another_durable_rules(tmp_path, version):
    env = _fake_install(tmp_path / "site", version)
    case = str(PROFILES / "fit_tcr_bcma_naive.json")
    for args in (["evaluate", case], ["rules", "check"], ["--help"]):
        out = subprocess.run([sys.executable, "-m", "cds", *args], capture_output=True, text=True, env=env, timeout=600)
        assert out.returncode == 3, (args, out.returncode, out.stderr)
        assert out.stdout == ""
        lines = out.stderr.splitlines()
        assert len(lines) == 1 and lines[0].startswith("error: "), out.stderr
        assert "durable-rules==2.0.28" in lines[0]
        assert (f"durable-rules {version} is installed" if version else "cannot tell which durable-rules") in lines[0]
    # the library refuses too: compiling an Engine is an EngineError with the same message
    code = "from cds.decide.pipeline import Evaluator\ntry:\n    Evaluator()\nexcept Exception as e:\n    print(type(e).__name__, e)\n"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=600)
    assert out.returncode == 0 and out.stdout.startswith("EngineError ") and "durable-rules==2.0.28" in out.stdout, out


def _ruleset(definition: dict) -> int:
    handle = core.create_ruleset(f"contract{next(_names)}", json.dumps(definition))
    assert type(handle) is int
    return handle


def _prime(h: int) -> None:
    """As Engine._prime: one action run in each of the first session slots (see cds.engine.durable)."""
    offsets = []
    for i in range(6):
        code, offset = core.assert_facts(h, json.dumps([{"t": "patient", "id": "p", "sid": f"prime{i}"}]))
        assert code == 0
        offsets.append((f"prime{i}", offset))
    for sid, offset in offsets:
        assert core.start_action_for_state(h, offset) is not None
        while core.complete_and_start_action(h, offset) is not None:
            pass
        assert core.delete_state(h, sid) is None


def test_shapes_the_engine_relies_on():
    rules = {
        "r_all": {"all": [{"m": {"t": "patient"}}], "pri": 0},
        "r_one": {"all": [{"m": {"$and": [{"t": "patient"}, {"x": 1}]}}], "pri": 1},
    }
    h = _ruleset(rules)
    try:
        _prime(h)
        facts = [{"id": f"v{i}", "t": "patient", "x": i + 1, "sid": "s"} for i in range(2)]
        result = core.assert_facts(h, json.dumps(facts))
        assert type(result) is tuple and len(result) == 2 and all(type(x) is int for x in result)
        code, offset = result
        assert code == 0
        started = core.start_action_for_state(h, offset)
        assert type(started) is tuple and len(started) == 2 and all(type(x) is str for x in started)
        state, message = started
        assert json.loads(state)["sid"] == "s"
        messages = [message]
        while (message := core.complete_and_start_action(h, offset)) is not None:
            assert type(message) is str
            messages.append(message)
        # one action per (rule, fact): r_all for both facts, r_one for the first; each message one rule and one fact
        seen = set()
        for text in messages:
            ((rule, body),) = json.loads(text).items()
            assert list(body) == ["m"]
            fact = body["m"]
            assert fact == facts[int(fact["id"][1:])] and list(fact) == list(facts[0])  # the fact's own key order
            # what Engine._fire reads: the text up to the first comma is '{"<action>":{"m":{"id":"v<i>"'
            head = text[: text.find(",")]
            assert re.fullmatch(r'\{"(\w+)":\{"m":\{"id": ?"v(\d+)"', head), text
            seen.add((rule, int(fact["id"][1:])))
        assert seen == {("r_all", 0), ("r_all", 1), ("r_one", 0)} and len(messages) == 3

        # the same facts again without retracting them: code 2 (ERR_EVENT_OBSERVED), nothing fires
        code, offset = core.assert_facts(h, json.dumps(facts))
        assert code == 2 and core.start_action_for_state(h, offset) is None
        # retracted, the session holds no fact, nothing fires, and the same IDs can be asserted again
        result = core.retract_facts(h, json.dumps(facts))
        assert type(result) is tuple and len(result) == 2 and result[0] == 0
        assert json.loads(core.get_facts(h, "s")) == [] and core.start_action_for_state(h, offset) is None
        code, offset = core.assert_facts(h, json.dumps(facts))
        assert code == 0 and core.start_action_for_state(h, offset) is not None
        while core.complete_and_start_action(h, offset) is not None:
            pass
        assert core.delete_state(h, "s") is None

        # a fact no rule matches: code 1 (ERR_EVENT_NOT_HANDLED), no action
        code, offset = core.assert_facts(h, json.dumps([{"t": "other", "id": "q", "sid": "s2"}]))
        assert code == 1 and core.start_action_for_state(h, offset) is None
        assert core.delete_state(h, "s2") is None

        # an action abandoned is offered again (what Engine._abandon relies on to leave a clean session)
        code, offset = core.assert_facts(h, json.dumps([{"t": "patient", "id": "a", "sid": "s3"}]))
        first = core.start_action_for_state(h, offset)
        assert core.abandon_action(h, offset) is None
        again = core.start_action_for_state(h, offset)
        assert again is not None and again[1] == first[1]
        assert core.delete_state(h, "s3") is None
    finally:
        assert core.delete_ruleset(h) is None


def test_failures_are_the_module_error_with_a_numeric_code():
    assert issubclass(core.error, Exception)
    with pytest.raises(core.error) as err:  # an unknown operator: error 202
        core.create_ruleset("contract_bad", json.dumps({"r": {"all": [{"m": {"$nope": {"x": 1}}}]}}))
    assert re.fullmatch(r"Could not create ruleset, error code: \d+", str(err.value)), str(err.value)
    assert _code(err.value).startswith(str(err.value).rsplit(" ", 1)[1] + " (")


def test_the_engine_reuses_one_empty_session_per_shard():
    """`Engine` retracts every evaluation's facts instead of deleting the session (creating one costs more
    than the matching); after a failure the session is deleted and the next evaluation gets a new one."""
    from conftest import case_names, load_case

    from cds.api import Evaluator
    from cds.model.facts import derive, engine_facts

    evaluator = Evaluator(analyze_unknowns=False)
    engine = evaluator.engine
    facts = [engine_facts(derive(evaluator.parse(load_case(n)), evaluator.vocabulary)) for n in case_names()]
    first = engine.run(facts)
    sessions = dict(engine._live)
    assert len(sessions) == engine.shard_count
    assert engine.run(facts) == first and [engine.run([f])[0] for f in facts] == first
    assert engine._live == sessions  # the same sessions, each left empty
    for shard in engine._shards:
        assert json.loads(core.get_facts(shard.handle, sessions[shard.number])) == []
    with pytest.raises(EngineError):
        engine.run([{"age": float("nan")}])  # refused before the engine: the sessions stay
    assert engine._live == sessions
    # a failure inside the C core (a fact no rule accepts: code 1): that shard's session is deleted, the next is new
    shard = engine._shards[0]
    with pytest.raises(EngineError, match="code 1"):
        other = {"id": "v0", "t": "other", "sid": sessions[1]}
        engine._fire(shard, sessions[shard.number], [json.dumps(other)], [0], [set()], "P")
    assert shard.number not in engine._live
    assert engine.run(facts) == first and engine._live[shard.number] != sessions[shard.number]
