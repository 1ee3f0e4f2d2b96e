"""The one durable-rules version cds runs with, and the guard that refuses any other.

`cds.engine.durable` drives durable-rules' C functions directly (``assert_facts``,
``start_action_for_state``, ``complete_and_start_action``, ...), relies on the exact shape of what
they return and of the action messages they write, and works around memory-safety bugs of that
exact C core (see `cds.engine.capacity`). Another release could change any of these, so
`check` refuses it: the command line says so in one line and exits 3 before doing anything, and
`Engine` raises the same `EngineError`. tests/test_engine_contract.py checks those shapes on the
pinned version.

The version is read from the ``durable_rules-<v>.dist-info`` beside the C module that would be
imported (located with ``importlib.util.find_spec``, which imports nothing), not from
``importlib.metadata.version``: that is the package that installed *this* binary, and it costs a
directory listing instead of a walk over every installed distribution (about 80 ms at start-up on
a loaded machine).
"""

from __future__ import annotations

import functools
import importlib.util
from pathlib import Path

from cds.errors import EngineError

PINNED = "2.0.28"  # pyproject.toml pins durable-rules==2.0.28 (tests/test_engine_contract.py checks they agree)
_MODULE = "durable_rules_engine"  # durable-rules' C core


@functools.cache
def installed() -> str | None:
    """The version of the durable-rules that installed the C module Python would import, or None if none is found."""
    try:
        spec = importlib.util.find_spec(_MODULE)
    except (ImportError, ValueError):
        return None
    if spec is None or not spec.origin:
        return None
    versions = set()
    for info in Path(spec.origin).parent.glob("durable_rules-*.dist-info"):
        try:
            with (info / "METADATA").open(encoding="utf-8") as f:
                for line in f:
                    if line.startswith("Version:"):
                        versions.add(line.split(":", 1)[1].strip())
                        break
                    if not line.strip():  # end of the headers
                        break
        except OSError:
            continue
    return versions.pop() if len(versions) == 1 else None


def problem() -> str | None:
    """One line saying why this durable-rules cannot be used, or None when it is the pinned one."""
    got = installed()
    if got == PINNED:
        return None
    fix = f"install exactly that one (pip install durable-rules=={PINNED})"
    if got is None:
        return f"cds needs durable-rules {PINNED} and cannot tell which durable-rules is installed; {fix}"
    return f"durable-rules {got} is installed, but cds drives the C core of durable-rules {PINNED} directly and runs only with that version; {fix}"


def check() -> None:
    """Raise `EngineError` (exit 3) unless the pinned durable-rules is installed."""
    why = problem()
    if why is not None:
        raise EngineError(why)
