"""The `cds` command line (typer). The only module that knows about the terminal.

Exit codes: 0 success; 1 findings (``cds rules check`` problems, invalid records
in a batch); 2 bad input or usage; 3 internal error. Errors are one clear
message on stderr, never a traceback (set CDS_DEBUG=1 to see one).
"""

from __future__ import annotations

import os
import sys
import tempfile
from enum import Enum
from pathlib import Path
from typing import Optional

import typer

from .errors import EXIT_INTERNAL, CdsError, ProfileError, RuleSetError

app = typer.Typer(
    add_completion=False,
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    help="Clinical decision support for relapsed/refractory multiple myeloma: ranked, cited treatment options.",
)


@app.callback()
def _root() -> None:
    """Clinical decision support for relapsed/refractory multiple myeloma: ranked, cited treatment options."""


class Format(str, Enum):
    markdown = "markdown"
    html = "html"
    json = "json"


def _fail(message: str, code: int) -> None:
    typer.echo(f"error: {message}", err=True)
    raise typer.Exit(code)


def _run(fn):
    """Map every error to one message and an exit code; never show a traceback."""
    try:
        return fn()
    except typer.Exit:
        raise
    except RuleSetError as exc:
        lines = "\n".join(f"  {p}" for p in exc.problems)
        _fail(f"the rule set is invalid:\n{lines}", exc.exit_code)
    except ProfileError as exc:
        _fail(f"invalid patient profile: {exc}", exc.exit_code)
    except CdsError as exc:
        _fail(str(exc), exc.exit_code)
    except KeyboardInterrupt:
        _fail("interrupted", 130)
    except Exception as exc:  # noqa: BLE001 - last line of defence: no traceback for the user
        if os.environ.get("CDS_DEBUG"):
            raise
        _fail(f"internal error ({type(exc).__name__}: {exc}); rerun with CDS_DEBUG=1 for details", EXIT_INTERNAL)


def write_atomically(path: Path, text: str) -> None:
    """Write the whole report or nothing: a partial report is never left behind."""
    path = path.expanduser()
    directory = path.parent if str(path.parent) else Path(".")
    if not directory.is_dir():
        raise ProfileError("--output", f"folder {directory} does not exist")
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=directory)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(text)
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise


def _rules_option() -> Optional[Path]:
    return typer.Option(None, "--rules", help="Rule folder to use instead of the packaged rules/.", show_default=False)


@app.command()
def evaluate(
    path: Path = typer.Argument(..., help="Patient profile (JSON).", show_default=False),
    format: Format = typer.Option(Format.markdown, "--format", "-f", help="Output format."),
    output: Optional[Path] = typer.Option(None, "--output", "-o", help="Write the report to FILE instead of stdout."),
    timestamp: Optional[str] = typer.Option(
        None, "--timestamp", help="Fix the evaluation time (ISO 8601) for reproducible output; SOURCE_DATE_EPOCH works too."
    ),
    rules: Optional[Path] = _rules_option(),
) -> None:
    """Rank the treatment options for one patient, with rules, evidence, cautions and exclusions."""

    def go() -> None:
        from .evaluate import default_evaluator
        from .report import build_report, render

        evaluator = default_evaluator(str(rules) if rules else None)
        profile = evaluator.load(path)
        text = render(build_report(evaluator.evaluate(profile), timestamp), format.value)
        if output is not None:
            write_atomically(output, text)
        else:
            sys.stdout.write(text)

    _run(go)


def main() -> None:  # console-script entry point
    app()


if __name__ == "__main__":  # pragma: no cover
    main()
