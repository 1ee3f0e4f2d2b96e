"""One exception hierarchy for cds.

    CdsError                      base; never shown with a traceback by the CLI
    +-- InputError                bad user input: exit code 2
    |   +-- ProfileError          a patient profile that is malformed or out of scope
    |   +-- SiteError             a site-settings file that is malformed
    +-- RuleSetError              a rule, evidence or catalogue file that is invalid
    +-- EngineError               the rules engine reported a failure (internal: exit 3)

Third-party errors (pydantic.ValidationError, json.JSONDecodeError,
yaml.YAMLError, errors swallowed into durable-rules' state) are converted into
these where they enter, with a message that names the field or file and the
problem.
"""

from __future__ import annotations

from typing import Any

EXIT_OK = 0
EXIT_FINDINGS = 1  # e.g. `cds rules check` found problems, batch had invalid records
EXIT_INPUT = 2
EXIT_INTERNAL = 3


class CdsError(Exception):
    exit_code = EXIT_INTERNAL


class InputError(CdsError):
    exit_code = EXIT_INPUT


class ProfileError(InputError):
    """A patient profile that cannot be evaluated. `field` is a dotted path."""

    def __init__(self, field: str, problem: str):
        self.field = field
        self.problem = problem
        super().__init__(f"{field}: {problem}" if field else problem)


class SiteError(InputError):
    pass


class RuleSetError(CdsError):
    """An invalid rule set. Carries every problem found, one line each."""

    exit_code = EXIT_INPUT

    def __init__(self, problems: list[str]):
        self.problems = list(problems)
        super().__init__("\n".join(self.problems))


class EngineError(CdsError):
    exit_code = EXIT_INTERNAL


def validation_problems(label: str, exc: Any, raw: object, list_key: str, noun: str) -> list[str]:
    """One line per pydantic error of a data file: ``<label> [<item id>] <field>: <problem>``.

    `exc` is a pydantic ValidationError raised on `raw`; errors inside the list
    `raw[list_key]` are named by the item's ``id`` (or ``<noun> #n``).
    """
    out = []
    for err in exc.errors():
        loc = list(err["loc"])
        where = label
        if len(loc) >= 2 and loc[0] == list_key and isinstance(loc[1], int):
            try:
                item_id = raw[list_key][loc[1]].get("id")  # type: ignore[index,union-attr]
            except Exception:  # noqa: BLE001 - best effort to name the item
                item_id = None
            where += f" [{item_id or f'{noun} #{loc[1] + 1}'}]"
            loc = loc[2:]
        field = ".".join(str(p) for p in loc) or f"({noun})"
        out.append(f"{where} {field}: {err['msg'].removeprefix('Value error, ')}")
    return out
