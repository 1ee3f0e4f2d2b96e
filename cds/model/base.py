"""The one strict pydantic base class for every input and data-file model.

Strict types (no coercion of ``"40"`` to 40 or ``"true"`` to true), unknown
keys are errors (a typo is never silently ignored), and validated objects are
immutable.
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)
