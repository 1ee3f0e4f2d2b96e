"""What the decision layer needs from a rule matcher: the `Matcher` protocol.

Two implementations: `cds.engine.durable.Engine` (durable-rules, what every
evaluation runs on) and `cds.engine.reference.Reference` (a pure-Python
interpreter of the same rule files, the differential tests' oracle and the
benchmark's baseline). `cds.decide.pipeline.Evaluator` takes either.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Protocol

from cds.model.facts import Value


class Matcher(Protocol):
    """Rules fired per set of facts (a fact set is the engine's dict of fact name -> value)."""

    def run(self, variants: Sequence[dict[str, Value]], patient: str | None = None) -> list[frozenset[str]]:
        """The rules fired for each fact set; `patient` (an ID) only names the patient in an error."""
        ...

    def run_counterfactuals(
        self, base: dict[str, Value], variants: Sequence[tuple[str, Mapping[str, Value]]], patient: str | None = None
    ) -> list[frozenset[str]]:
        """The rules fired for `base`, then for each ``base | assignment`` (``(scope, assignment)``: the
        profile field the assignment's facts come from; see `cds.engine.durable.fact_scope`). For a variant
        only the deciding rules (`cds.knowledge.ruleset.DECIDING_KINDS`) are matched: every other rule is
        reported as it fired for `base` (a variant is only ever decided).

        A variant's fired set must differ from the base's only in rules that read a fact of its assignment:
        `Decider.decide(..., among=)` compares only those (`Evaluator._among`), and a rule outside them that
        fired differently, with another that cancelled it out in number, would not be decided again
        (tests/test_worker_loop.py checks both matchers on this)."""
        ...
