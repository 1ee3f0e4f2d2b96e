"""One exception hierarchy and every exit code of cds (the model is httpx's ``_exceptions.py``).

    CdsError                      base; never shown with a traceback by the CLI
    +-- InputError                bad input or usage: exit code 2
    |   +-- ProfileError          a patient profile that is malformed or out of scope (field, problem)
    |   +-- SiteError             a site-settings file that is malformed
    |   +-- RuleSetError          a rule, evidence or catalogue file that is invalid (problems, one line each);
    |   |                         exit 2 from every command, `cds rules check` included
    |   +-- ReadError             a file that cannot be read as data: unreadable, over its size limit,
    |   |                         not UTF-8, not valid YAML, nested too deeply, anchors/aliases (problem)
    |   +-- BundleError           a FHIR Bundle that cannot be imported (problems, one line each; field
    |   |   |                     and problem as ProfileError's)
    |   |   +-- NoMyelomaDiagnosis  a Bundle without a multiple-myeloma diagnosis (CDS Hooks: no card)
    |   +-- StoreError            a case store that cannot be opened or migrated (a bad --db, a database
    |                             that refuses), or a case that is not in it
    +-- EngineError               the rules engine reported a failure (internal: exit 3)
    +-- WorkerLost                a batch worker process died (killed, out of memory, crashed): exit 3
    +-- WorkerFailed              a worker's exception that could not be sent back as it was: exit 3
    +-- PdfError                  the PDF engine (headless Chromium) failed: exit 3

    BaseException
    +-- Terminated                a signal (SIGTERM, SIGINT, SIGHUP) stops the command: exit 128 + signal

`Terminated` is not an Exception, so that no ``except Exception`` on the way
swallows it: it unwinds to the command line, removing temporary files and
stopping workers on the way.

Third-party errors are converted into these where they enter, with a message
that names the field or file and the problem: pydantic.ValidationError and
json.JSONDecodeError in cds.model.profile and the knowledge loaders, yaml.YAMLError
and OSError on reading in cds.datafile, OSError on writing in cds.apps.outputs,
errors swallowed into durable-rules' state in cds.engine.durable, a dead worker
process in cds.cohort.pool, fhir.resources' ValidationError in cds.interop.fhir.bundle,
Chromium's failures (OSError, its DevTools errors) in cds.report.pdf, SQLAlchemy's and
Alembic's on opening a case store in cds.store.

Every message that quotes user data (a key, a name, a value, a path) passes it
through `printable`, so that no input can break a message over several lines,
move the cursor, clear the screen or reorder the text (bidi controls).
"""

from __future__ import annotations

import signal
import unicodedata
from typing import Any

EXIT_OK = 0
EXIT_FINDINGS = 1  # batch had invalid records; `cds examples|schemas --check`, `cds.apps.http.openapi --check`: stale files
EXIT_INPUT = 2  # bad input or usage (InputError and its subclasses)
EXIT_INTERNAL = 3  # internal error, engine failure, a dead worker process
EXIT_INTERRUPTED = 128 + signal.SIGINT  # 130
EXIT_TERMINATED = 128 + signal.SIGTERM  # 143


PROBLEMS_SHOWN = 20  # problems of one profile or Bundle spelled out in its message (all are in `.problems`)


class CdsError(Exception):
    exit_code = EXIT_INTERNAL


class InputError(CdsError):
    exit_code = EXIT_INPUT


class ProfileError(InputError):
    """A patient profile that cannot be evaluated. `field` is a dotted path.

    `problems` holds every (field, problem) found, the first being `field` and
    `problem`; with more than one the message lists them one per line.
    """

    def __init__(self, field: str, problem: str, more: tuple[tuple[str, str], ...] = ()):
        self.field = field
        self.problem = problem
        self.problems: tuple[tuple[str, str], ...] = ((field, problem), *more)
        if more:
            shown = self.problems[:PROBLEMS_SHOWN]
            lines = "\n".join(f"  {f}: {p}" if f else f"  {p}" for f, p in shown)
            if len(self.problems) > len(shown):
                lines += f"\n  ... and {len(self.problems) - len(shown)} more problems"
            super().__init__(f"{len(self.problems)} problems:\n{lines}")
        else:
            super().__init__(f"{field}: {problem}" if field else problem)

    @classmethod
    def many(cls, problems: list[tuple[str, str]]) -> ProfileError:
        return cls(problems[0][0], problems[0][1], tuple(problems[1:]))


class SiteError(InputError):
    pass


class RuleSetError(InputError):
    """An invalid rule set. Carries every problem found, one line each."""

    def __init__(self, problems: list[str]):
        self.problems = list(problems)
        super().__init__("\n".join(self.problems))


class ReadError(InputError):
    """A file that cannot be read as data; `problem` is one line without the file's name (callers add their label)."""

    def __init__(self, problem: str):
        self.problem = problem
        super().__init__(problem)


class EngineError(CdsError):
    exit_code = EXIT_INTERNAL


class WorkerLost(CdsError):
    """A worker process died (killed, out of memory, crashed): the run stops, nothing is written."""

    exit_code = EXIT_INTERNAL


class WorkerFailed(CdsError):
    """A task raised an exception in a worker that could not be sent back as it was (internal: exit 3)."""


class PdfError(CdsError):
    """The PDF engine failed (exit code 3; a missing engine is an InputError, exit 2, saying how to install it)."""


class StoreError(InputError):
    """The case store cannot be opened (a bad --db, a database that refuses), or a case is not in it: one line, exit code 2."""


class BundleError(InputError):
    """A Bundle that cannot be imported. `problems`: one line each, naming the entry."""

    def __init__(self, problems: list[str]):
        self.problems = list(problems)
        # like ProfileError: where (the first problem's entry, or "(bundle)") and what
        head, sep, rest = self.problems[0].partition(": ") if self.problems else ("", "", "")
        self.field, self.problem = (
            (head, rest) if sep and head.startswith("entry[") else ("(bundle)", self.problems[0] if self.problems else "")
        )
        shown = self.problems[:PROBLEMS_SHOWN]
        more = f"\n  (and {len(self.problems) - PROBLEMS_SHOWN} more)" if len(self.problems) > PROBLEMS_SHOWN else ""
        if len(shown) == 1:
            text = f"FHIR bundle: {shown[0]}"
        else:
            text = f"FHIR bundle: {len(self.problems)} problems:\n  " + "\n  ".join(shown) + more
        super().__init__(text)


class NoMyelomaDiagnosis(BundleError):
    """The Bundle has no multiple-myeloma diagnosis: not a patient for cds (a CDS Hooks call answers with no card)."""


class Terminated(BaseException):
    """A signal asked the command to stop: unwind (removing temporary files, stopping workers) and exit 128 + signal."""

    def __init__(self, signum: int = signal.SIGTERM):
        self.signum = signum
        super().__init__(signum)

    @property
    def exit_code(self) -> int:
        return 128 + self.signum

    @property
    def signal_name(self) -> str:
        return signal.Signals(self.signum).name


# --------------------------------------------------------------------------- quoting user data

MESSAGE_VALUE_LIMIT = 80  # characters of a quoted value shown in a message (then an ellipsis)

# Characters that must never reach a terminal raw: C0/C1 controls and DEL (Cc), format characters
# such as the bidi overrides U+202A-U+202E, U+2066-U+2069 and zero-width marks (Cf), the line and
# paragraph separators U+2028/U+2029 (Zl, Zp), and unassigned or private-use code points.
_UNSAFE_CATEGORIES = frozenset({"Cc", "Cf", "Zl", "Zp", "Cs", "Co", "Cn"})
_ESCAPES = {"\n": "\\n", "\r": "\\r", "\t": "\\t"}


def _escape_char(ch: str) -> str:
    if ch in _ESCAPES:
        return _ESCAPES[ch]
    if ch.isascii() and ch.isprintable():
        return ch
    if unicodedata.category(ch) in _UNSAFE_CATEGORIES:
        code = ord(ch)
        return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}" if code < 0x10000 else f"\\U{code:08x}"
    return ch


def printable(value: Any, limit: int | None = MESSAGE_VALUE_LIMIT) -> str:
    """`value` as text that is safe in a one-line message: control, bidi and separator characters escaped
    (``\\n``, ``\\x1b``, ``\\u202e``), cut to `limit` characters with an ellipsis.

    The cut is made before escaping, so that a huge value costs no more than `limit` characters' work.
    ``limit=None`` escapes without cutting (for whole messages).
    """
    text = value if isinstance(value, str) else str(value)
    cut = False
    if limit is not None and len(text) > limit:
        text, cut = text[: max(limit - 1, 1)], True
    if not (text.isascii() and text.isprintable()):
        text = "".join(map(_escape_char, text))
    return text + "\u2026" if cut else text


def quoted(value: Any, limit: int | None = MESSAGE_VALUE_LIMIT) -> str:
    """`printable(value)` in single quotes, the way messages quote a user's key, name or value."""
    return f"'{printable(value, limit)}'"
