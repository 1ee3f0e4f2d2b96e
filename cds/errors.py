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
