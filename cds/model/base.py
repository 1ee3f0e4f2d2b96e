"""The one strict pydantic base class for every input and data-file model, the one way its errors are written,
and the one decorator for output records (`record`).

Strict types (no coercion of ``"40"`` to 40 or ``"true"`` to true), unknown
keys are errors (a typo is never silently ignored), and validated objects are
immutable. `schema_problems` turns a model's ValidationError on a data file
(rule, catalogue, evidence or site file) into one line per problem; `error_field`
and `error_text` are its parts, for the callers that write their own shape of
line (a cases export, the HTTP service's ``{"error", "field"}``). Patient profiles
have their own wording (`cds.model.profile`), which names fields for clinicians.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any, TypeVar

from pydantic import BaseModel, ConfigDict, ValidationError, with_config
from typing_extensions import dataclass_transform

from cds.errors import printable

_T = TypeVar("_T")


class Strict(BaseModel):
    # defer_build: a model's validator is built when it first validates, not when the class is made;
    # a command that never reads a site file (or finds the rule set in its cache) never pays for those
    model_config = ConfigDict(extra="forbid", strict=True, frozen=True, defer_build=True)


@dataclass_transform(frozen_default=True)
def record(cls: type[_T]) -> type[_T]:
    """A frozen, slotted dataclass for output data (the report and what it embeds), marked for the JSON Schema
    generator (`cds schemas`): no properties beyond its fields."""
    return with_config(ConfigDict(extra="forbid"))(dataclass(frozen=True, slots=True)(cls))


def schema_problems(
    exc: ValidationError,
    raw: object = None,
    label: str = "",
    list_key: str | None = None,
    noun: str | None = "file",
    with_input: bool = False,
    brackets: bool = False,
) -> list[str]:
    """One line per error of a data file: ``<label> [<item id>] <field>: <problem>``.

    `exc` is the ValidationError raised on the file's data `raw`. Errors inside the
    list ``raw[list_key]`` are named by the item's ``id`` (or ``<noun> #n``); an
    error on the whole file names the field ``(<noun>)``, or none when `noun` is None.
    The field is dotted (``prior_lines.0.agents``), or with `brackets` JSON-path-like
    (``code.coding[0].system``, as FHIR writes it). With `with_input`, the
    offending value is quoted after the problem (except for a missing or an
    unknown key, or a whole mapping or list). Every part taken from the file is
    passed through `cds.errors.printable`.
    """
    out = []
    for err in exc.errors():
        loc = list(err["loc"])
        where = label
        if list_key is not None and len(loc) >= 2 and loc[0] == list_key and isinstance(loc[1], int):
            item_id = _item_id(raw, list_key, loc[1])
            where += f" [{printable(item_id) if item_id else f'{noun} #{loc[1] + 1}'}]"
            loc = loc[2:]
        field = error_field(loc, brackets) or (f"({noun})" if noun is not None else "")
        problem = error_text(err["msg"])
        value = err.get("input")
        if with_input and err["type"] not in ("missing", "extra_forbidden") and not isinstance(value, (dict, list)):
            problem += f" (got {printable(repr(value))})"
        line = f"{field}: {problem}" if field else problem
        out.append(f"{where} {line}" if where else line)
    return out


def error_field(loc: Iterable[Any], brackets: bool = False) -> str:
    """A pydantic error's location as a field path (``prior_lines.0.agents``, or with `brackets`
    ``code.coding[0].system``), every part through `cds.errors.printable`: a key is user data."""
    if not brackets:
        return ".".join(printable(p) for p in loc)
    out = ""
    for part in loc:
        out += f"[{part}]" if isinstance(part, int) else ("." if out else "") + printable(part)
    return out


def error_text(msg: str) -> str:
    """A pydantic error's message, without pydantic's ``Value error, `` prefix, through `printable` (a
    validator's message may quote the input)."""
    return printable(msg.removeprefix("Value error, "), None)


def _item_id(raw: object, list_key: str, index: int) -> Any:
    """The ``id`` of item `index` of the list ``raw[list_key]``, if the data has one."""
    items = raw.get(list_key) if isinstance(raw, dict) else None
    item = items[index] if isinstance(items, list) and 0 <= index < len(items) else None
    return item.get("id") if isinstance(item, dict) else None
