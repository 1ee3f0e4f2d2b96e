"""The `cds` command line (typer). The only module that knows about the terminal.

Exit codes (cds.errors): 0 success; 1 findings (invalid records in a batch,
stale examples); 2 bad input or usage (an invalid rule set included); 3 internal
error; 128 + signal when stopped by a signal. Errors are one clear message on
stderr, never a traceback (set CDS_DEBUG=1 to see one).
"""

import atexit
import contextlib
import errno
import gc
import os
import signal
import sys
import threading
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from enum import Enum
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, NoReturn, TypedDict, TypeVar

import typer
from typer.core import TyperGroup

from cds.apps.outputs import OutputFile, flush_stdout, stdout_error, write_stdout
from cds.errors import (
    EXIT_FINDINGS,
    EXIT_INPUT,
    EXIT_INTERNAL,
    EXIT_INTERRUPTED,
    EXIT_OK,
    MESSAGE_VALUE_LIMIT,
    CdsError,
    InputError,
    ProfileError,
    RuleSetError,
    Terminated,
    printable,
    quoted,
)

if TYPE_CHECKING:  # imported where used: `cds --help` and `cds evaluate` do not load what they do not need
    import datetime as dt

    from rich.progress import Progress

    from cds.api import Evaluator, RecordOptions, RuleSet

_T = TypeVar("_T")


class _PathChecks(TypedDict):
    exists: bool
    file_okay: bool
    dir_okay: bool
    readable: bool
    writable: bool
    resolve_path: bool


# Every Path parameter: typer/click check nothing (its checks print a multi-line usage panel);
# cds's own loaders report a missing, unreadable or wrong kind of path in one `error:` line.
_PATH: _PathChecks = dict(exists=False, file_okay=True, dir_okay=True, readable=False, writable=False, resolve_path=False)


class _OneLineUsageErrors(TyperGroup):
    """A usage error (a missing argument, an unknown option, a bad --format or --jobs value) is one
    `error:` line and exit 2, like every other bad input, not typer's six-line panel."""

    def main(
        self,
        args: Sequence[str] | None = None,
        prog_name: str | None = None,
        complete_var: str | None = None,
        standalone_mode: bool = True,
        windows_expand_args: bool = True,
        **extra: Any,
    ) -> Any:
        from typer._click import exceptions as usage  # typer's own copy of click (what it raises)

        try:
            code = super().main(args, prog_name, complete_var, False, windows_expand_args, **extra)
        except usage.NoArgsIsHelpError as exc:  # `cds` or `cds rules` alone: the help (printed already)
            code = exc.exit_code
        except usage.UsageError as exc:
            where = exc.ctx.command_path if exc.ctx is not None else "cds"
            message = exc.format_message().replace("Value error, ", "")
            for arg in sys.argv[1:] if args is None else args:  # a long value quoted in the message: cut, like any other
                if isinstance(arg, str) and len(arg) > MESSAGE_VALUE_LIMIT:
                    message = message.replace(repr(arg), quoted(arg)).replace(arg, printable(arg))
            message = printable(" ".join(message.split()), 400)
            typer.echo(f"error: {message} (see: {where} --help)", err=True)
            code = EXIT_INPUT
        except typer.Abort:
            typer.echo("error: aborted", err=True)
            code = EXIT_FINDINGS
        if not standalone_mode:
            return code
        sys.exit(code if isinstance(code, int) else EXIT_OK)


app = typer.Typer(
    cls=_OneLineUsageErrors,
    add_completion=False,
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    help="Clinical decision support for relapsed/refractory multiple myeloma: ranked, cited treatment options.",
)


@app.callback()
def _root() -> None:
    """Clinical decision support for relapsed/refractory multiple myeloma: ranked, cited treatment options."""


class Format(str, Enum):  # noqa: UP042 - typer renders str-mixin enums as plain choices
    markdown = "markdown"
    html = "html"
    json = "json"
    pdf = "pdf"


# --output's suffix gives the format when --format is not given (and must agree with it when it is)
SUFFIX_FORMAT = {
    ".md": "markdown",
    ".markdown": "markdown",
    ".txt": "markdown",  # Markdown is text
    ".html": "html",
    ".htm": "html",
    ".json": "json",
    ".pdf": "pdf",
}


def output_format(format: Format | None, output: str | None, option: str = "--output") -> str | None:
    """The report format: --format, else --output's suffix; None: neither (the caller's default)."""
    suffix = Path(output).suffix.lower() if output else ""
    implied = SUFFIX_FORMAT.get(suffix)
    if format is None and suffix and implied is None:  # e.g. report.docx: never Markdown under a name that says otherwise
        raise InputError(
            f"{option} {quoted(output)}: the suffix {quoted(suffix)} names no report format "
            "(.md .txt .html .json .pdf); use one of those or give --format"
        )
    if format is not None:
        if implied is not None and implied != format.value:
            raise InputError(f"{option} {output}: the suffix says {implied}, but --format is {format.value}")
        return format.value
    return implied


def _fail(message: str, code: int) -> NoReturn:
    # every part that quotes user data is escaped and cut where the message is made; escaping each
    # line once more makes sure that no character a terminal acts on is ever printed raw
    safe = "\n".join(printable(line, None) for line in message.split("\n"))
    typer.echo(f"error: {safe}", err=True)
    raise typer.Exit(code)


def _say(text: str) -> None:
    """A line on standard output (a full disk or a closed pipe is exit 2, like a failing --output)."""
    write_stdout(text + "\n")


_STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT, signal.SIGHUP)


@contextmanager
def _signals_stop() -> Iterator[None]:
    """While inside, SIGTERM, SIGINT (Ctrl-C) and SIGHUP raise `Terminated` in the main thread, once.

    The command unwinds (temporary files removed, workers stopped) and exits 128 + the signal.
    Further signals while it unwinds are ignored (SIG_IGN, which also outlasts the interpreter's
    own clean-up at exit): the first one is being obeyed, and an exception raised in the middle of
    the clean-up could leave a file or a worker behind. SIGKILL still works.
    """
    stopping: list[int] = []

    def handler(signum: int, frame: Any) -> None:
        if not stopping:
            stopping.append(signum)
            for s in _STOP_SIGNALS:
                signal.signal(s, signal.SIG_IGN)
            raise Terminated(signum)

    try:
        previous = {s: signal.signal(s, handler) for s in _STOP_SIGNALS}
    except ValueError:  # not the main thread (e.g. an embedding application): leave signals alone
        yield
        return
    try:
        yield
    finally:
        if not stopping:
            for s, h in previous.items():
                signal.signal(s, h)


def _stdout_failed(exc: OSError) -> bool:
    """An OSError that escaped from a write to standard output (then flushing it fails too)."""
    try:
        sys.stdout.flush()
    except OSError:
        return True
    return False


_PATH_ERRNOS = frozenset({errno.ENAMETOOLONG, errno.ELOOP, errno.ENOTDIR, errno.EACCES, errno.ENOENT})


class _Start:
    """How `main` started this process: garbage collection paused, and whether the command may exit at once."""

    gc_paused = False
    exit_at_once = False


def _run(fn: Callable[[], _T], signals: bool = True, *, single: bool = False, leave: bool = False) -> _T:
    """Map every error to one message and an exit code; never show a traceback.

    With `signals` (every command but `cds serve`, whose server handles them itself), SIGTERM,
    SIGINT and SIGHUP stop the command cleanly: exit 128 + signal. `single`: one short piece of
    work that leaves nothing open once it returns (`cds evaluate`): started from `main`, it runs
    without garbage collection and, on success, exits without the interpreter's teardown (`_leave`).
    `leave`: a command that collects as usual but also leaves nothing open once it returns (`cds
    batch`: its output committed, its workers reaped) exits that way too on success.
    """
    if _Start.gc_paused and not single:  # a command that may run long (a batch, a server) collects as usual
        gc.enable()
        _Start.gc_paused = False
    try:
        with _signals_stop() if signals else contextlib.nullcontext():
            result = fn()
            flush_stdout()
            _Start.exit_at_once = single or leave
            return result
    except typer.Exit:
        raise
    except Terminated as exc:
        how = "interrupted" if exc.signum == signal.SIGINT else "terminated"
        _fail(f"{how} ({exc.signal_name}); no output file was written", exc.exit_code)
    except RuleSetError as exc:
        if len(exc.problems) == 1:
            _fail(f"the rule set is invalid: {exc.problems[0]}", exc.exit_code)
        lines = "\n".join(f"  {p}" for p in exc.problems)
        _fail(f"the rule set is invalid:\n{lines}", exc.exit_code)
    except ProfileError as exc:
        _fail(f"invalid patient profile: {exc}", exc.exit_code)
    except CdsError as exc:
        _fail(str(exc), exc.exit_code)
    except KeyboardInterrupt:  # signals could not be handled here (not the main thread)
        _fail("interrupted (SIGINT); no output file was written", EXIT_INTERRUPTED)
    except OSError as exc:
        if _stdout_failed(exc):
            err = stdout_error(exc)
            _fail(str(err), err.exit_code)
        if exc.filename is not None and exc.errno in _PATH_ERRNOS and not os.environ.get("CDS_DEBUG"):
            # a path given on the command line that the system refuses (too long, a loop of links, ...)
            _fail(f"{printable(exc.filename, 200)}: {exc.strerror}", EXIT_INPUT)
        if os.environ.get("CDS_DEBUG"):
            raise
        _fail(f"internal error ({type(exc).__name__}: {printable(exc, 300)}); rerun with CDS_DEBUG=1 for details", EXIT_INTERNAL)
    except Exception as exc:  # an OSError from stdout is the branch above
        if os.environ.get("CDS_DEBUG"):
            raise
        _fail(f"internal error ({type(exc).__name__}: {printable(exc, 300)}); rerun with CDS_DEBUG=1 for details", EXIT_INTERNAL)


_PLUGIN_LOADER = "pydantic.plugin._loader"


@contextmanager
def _no_pydantic_plugins() -> Iterator[None]:
    """Within: pydantic looks for no plugins (``PYDANTIC_DISABLE_PLUGINS``, pydantic's own switch), nor imports
    what it would look for them with. `main` runs every command inside (cds uses no pydantic plugin, and one
    installed beside it should not act on a clinical evaluation).

    The first validator pydantic builds would otherwise walk every installed distribution's metadata for
    plugins. With the switch on, pydantic's loader (`pydantic.plugin._loader`) finds none, but importing it
    still imports importlib.metadata (with email, zipfile and csv: about 55M instructions, a seventeenth of a
    cold `cds evaluate`) for the one function it would call. So, unless something imported it already, the
    loader is a module whose `get_plugins` returns what pydantic's own returns with the switch on: no plugins.
    """
    before = os.environ.get("PYDANTIC_DISABLE_PLUGINS")
    os.environ["PYDANTIC_DISABLE_PLUGINS"] = "__all__"
    loader = None
    if _PLUGIN_LOADER not in sys.modules:
        import types

        loader = types.ModuleType(_PLUGIN_LOADER, "cds: no pydantic plugins (PYDANTIC_DISABLE_PLUGINS=__all__)")
        vars(loader)["get_plugins"] = tuple  # get_plugins() -> (), as pydantic's with the switch on
        sys.modules[_PLUGIN_LOADER] = loader
    try:
        yield
    finally:
        if loader is not None and sys.modules.get(_PLUGIN_LOADER) is loader:
            del sys.modules[_PLUGIN_LOADER]
        if before is None:
            os.environ.pop("PYDANTIC_DISABLE_PLUGINS", None)
        else:
            os.environ["PYDANTIC_DISABLE_PLUGINS"] = before


def _output_option(help: str, *decls: str) -> Any:
    # str, not Path: typer turns "" into Path(".") and an empty path could not be reported
    return typer.Option(*(decls or ("--output", "-o")), metavar="FILE", help=help, show_default=False)


def _check_folder(path: Path | None, option: str) -> None:
    """An option that names a folder: one `error: <option> ...` line if it is not one."""
    if path is None:
        return
    if not path.exists():
        raise InputError(f"{option} {printable(path, 200)}: no such folder")
    if not path.is_dir():
        raise InputError(f"{option} {printable(path, 200)}: not a folder")


def _not_over_inputs(
    outputs: Sequence[OutputFile | None],
    files: tuple[Path | None, ...] = (),
    rules: Path | None = None,
    records: Path | None = None,
) -> None:
    """Refuse (exit 2) an output that would replace an input: one of `files`, a file of the rule
    folder (default: the packaged one), or a record (``*.json``) of the input folder `records`."""
    from cds.api import rules_dir

    for out in outputs:
        if out is None:
            continue
        for f in files:
            out.refuse(f)
        out.refuse_inside(rules or rules_dir(), "rule folder")
        if records is not None:
            out.refuse_record(records, lambda name: name.lower().endswith(".json"))


def _rules_option() -> Any:
    return typer.Option("--rules", help="Rule folder to use instead of the packaged rules/.", show_default=False, **_PATH)


@app.command()
def evaluate(
    path: Annotated[Path, typer.Argument(help="Patient profile (JSON) or FHIR R4 Bundle.", show_default=False, **_PATH)],
    format: Annotated[
        Format | None,
        typer.Option(
            "--format",
            "-f",
            help="Output format. Default: from --output's suffix (.md .html .json .pdf); on a terminal a short summary; "
            "piped, Markdown.",
            show_default=False,
        ),
    ] = None,
    output: Annotated[
        str | None, _output_option("Write the report to FILE instead of stdout (the whole report or nothing).")
    ] = None,
    timestamp: Annotated[
        str | None,
        typer.Option(
            "--timestamp", help="Fix the evaluation time (ISO 8601) for reproducible output; SOURCE_DATE_EPOCH works too."
        ),
    ] = None,
    rules: Annotated[Path | None, _rules_option()] = None,
    site: Annotated[
        Path | None,
        typer.Option(
            "--site",
            help="Site settings (YAML): availability, reimbursement and CAR-T delivery at this centre. "
            "Default: the sources' setting shipped with the rules (catalog/site_default.yaml).",
            show_default=False,
            **_PATH,
        ),
    ] = None,
) -> None:
    """Rank the treatment options for one patient, with rules, evidence, cautions and exclusions."""

    def go() -> None:
        from cds.api import build_report, evaluation_day, evaluation_time, load_input, load_rules, render

        at = evaluation_time(timestamp)  # the report's stamp, and the evaluation date a profile without one gets
        fmt = output_format(format, output)
        summary_only = fmt is None and output is None and sys.stdout.isatty()
        fmt = fmt or "markdown"
        if fmt == "pdf" and output is None and sys.stdout.isatty():
            raise InputError("--format pdf: give --output FILE.pdf (a PDF is not for the terminal)")
        if fmt == "pdf":
            from cds.api import chromium_path

            chromium_path()  # a missing PDF engine fails before the evaluation
        out = OutputFile(output, binary=fmt == "pdf")  # checked first: a bad --output fails before the evaluation
        _not_over_inputs([out], (path, site), rules)
        _check_folder(rules, "--rules")
        evaluator = load_rules(rules)
        site_settings = None
        if site is not None:
            from cds.api import load_site

            site_settings = load_site(site, evaluator.ruleset)
        loaded = load_input(path, evaluator.vocabulary, default_date=evaluation_day(at))
        report = build_report(evaluator.evaluate(loaded.profile, at), at, site_settings)
        if summary_only:
            from cds.api import summarize
            from cds.apps.terminal import print_summary

            print_summary(summarize(report), str(path))
        elif fmt == "pdf":
            from cds.api import html_to_pdf

            out.write_all(html_to_pdf(render(report, "html"), report.evaluated_at))
        else:
            out.write_all(render(report, fmt))
        if loaded.imported is not None:
            r = loaded.imported
            typer.echo(
                f"note: imported from FHIR Bundle {r.bundle.get('id') or ''} ({r.bundle['entries']} entries, "
                f"{len(r.lines)} line(s), {len(r.not_used)} resource(s) not used); `cds import-fhir {path}` shows where each fact came from",
                err=True,
            )

    _run(go, single=True)


@app.command()
def validate(
    paths: Annotated[list[Path], typer.Argument(help="Patient profiles (JSON) or FHIR R4 Bundles.", show_default=False, **_PATH)],
    rules: Annotated[Path | None, _rules_option()] = None,
) -> None:
    """Check profiles without evaluating them: every problem of every file, each naming its field.

    Exit code 0 if every file is a valid profile, 1 if some are not, 2 on a usage error."""

    def go() -> None:
        from cds.api import evaluation_day, evaluation_time, load_input, load_vocabulary, rules_dir

        _check_folder(rules, "--rules")
        vocabulary = load_vocabulary((rules or rules_dir()) / "catalog" / "drugs.yaml")
        today = evaluation_day(evaluation_time(None))  # what `cds evaluate` would default evaluation_date to now
        invalid = 0
        for path in paths:
            try:
                load_input(path, vocabulary, default_date=today)
            except ProfileError as exc:
                invalid += 1
                n = len(exc.problems)
                _say(f"{printable(path, 200)}: {n} problem{'s' if n > 1 else ''}")
                for field, problem in exc.problems:
                    _say(f"  {field}: {problem}")
            except InputError as exc:  # e.g. a FHIR Bundle that cannot be imported
                invalid += 1
                _say(f"{printable(path, 200)}: {exc}")
            else:
                _say(f"{printable(path, 200)}: ok")
        if len(paths) > 1:
            _say(f"{len(paths)} files: {len(paths) - invalid} valid, {invalid} invalid")
        if invalid:
            raise typer.Exit(EXIT_FINDINGS)

    _run(go)


@app.command("new-profile")
def new_profile(
    output: Annotated[str | None, typer.Argument(metavar="[FILE]", help="Write the template to FILE (default: stdout).")] = None,
    force: Annotated[bool, typer.Option("--force", help="Overwrite FILE if it exists.")] = False,
    rules: Annotated[Path | None, _rules_option()] = None,
) -> None:
    """Write a commented profile template: every field with what it means; fill it in, then `cds validate` it."""

    def go() -> None:
        from cds.api import load_vocabulary, profile_template, rules_dir

        if output is not None and not force and os.path.lexists(os.path.expanduser(output)):
            raise InputError(f"{output}: exists; use --force to overwrite it")
        out = OutputFile(output, "FILE")
        _check_folder(rules, "--rules")
        vocabulary = load_vocabulary((rules or rules_dir()) / "catalog" / "drugs.yaml")
        out.write_all(profile_template(vocabulary))
        if output is not None:
            typer.echo(f"wrote {output}: fill it in, then run `cds validate {output}`", err=True)

    _run(go)


@app.command("import-fhir")
def import_fhir(
    path: Annotated[
        Path,
        typer.Argument(
            help="FHIR R4 Bundle (collection, searchset, document or transaction), JSON.", show_default=False, **_PATH
        ),
    ],
    output: Annotated[str | None, _output_option("Write the profile (JSON) to FILE instead of stdout.")] = None,
    report: Annotated[
        str | None, _output_option("Also write the import report (JSON: every fact's source resources) to FILE.", "--report")
    ] = None,
    evaluation_date: Annotated[
        str | None,
        typer.Option(
            "--evaluation-date",
            metavar="YYYY-MM-DD",
            help="Age and 'latest result' as of this date (default: Bundle.timestamp, else today).",
        ),
    ] = None,
    overrides: Annotated[
        Path | None,
        typer.Option(
            "--with",
            help="A partial profile (JSON) merged over the imported one, for facts EHRs rarely hold.",
            show_default=False,
            **_PATH,
        ),
    ] = None,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="Do not print the import report on stderr.")] = False,
) -> None:
    """Import a patient from a FHIR R4 / mCODE Bundle: a profile, and where each fact came from (stderr)."""

    def go() -> None:
        import json

        from cds.api import apply_overrides, decode_json, import_bundle, load_rules, read_input_file, validate_imported

        out = OutputFile(output)
        report_out = OutputFile(report, "--report") if report is not None else None
        if report_out is not None and report_out.same_file(out):
            raise InputError(f"--report {printable(report, 200)}: the same file as --output")
        _not_over_inputs([out, report_out], (path, overrides))
        vocabulary = load_rules().vocabulary
        result = import_bundle(decode_json(read_input_file(path)), vocabulary, evaluation_date)
        if overrides is not None:
            apply_overrides(result, decode_json(read_input_file(overrides)), str(overrides))
        validate_imported(result, vocabulary)  # the profile written is one `cds evaluate` accepts
        out.write_all(json.dumps(result.profile, indent=2, ensure_ascii=False) + "\n")
        if report_out is not None:
            report_out.write_all(json.dumps(result.as_dict(), indent=2, ensure_ascii=False) + "\n")
        if not quiet:
            sys.stderr.write(result.text())

    _run(go)


rules_app = typer.Typer(no_args_is_help=True, help="List, show and check the rules (rules/*.yaml).")
app.add_typer(rules_app, name="rules")


def _load_rules(rules: Path | None, fixtures: bool = False) -> "RuleSet":
    from cds.api import load_ruleset, rules_dir

    _check_folder(rules, "--rules")
    return load_ruleset(rules or rules_dir(), fixtures=fixtures)


@rules_app.command("list")
def rules_list(rules: Annotated[Path | None, _rules_option()] = None) -> None:
    """Every rule: ID, family, kind, option(s), title."""

    def go() -> None:
        from cds.api import rules_table

        write_stdout(rules_table(_load_rules(rules)))

    _run(go)


@rules_app.command("show")
def rules_show(
    rule_id: Annotated[str, typer.Argument(metavar="ID", help="Rule ID, e.g. ELIG-CART-002.", show_default=False)],
    rules: Annotated[Path | None, _rules_option()] = None,
) -> None:
    """One rule in plain language: condition, effect, rationale, evidence with quotes, fixtures (rules/tests/)."""

    def go() -> None:
        from cds.api import show_rule

        write_stdout(show_rule(_load_rules(rules, fixtures=True), rule_id.strip()))

    _run(go)


@rules_app.command("check")
def rules_check(
    rules: Annotated[Path | None, _rules_option()] = None,
    profiles: Annotated[
        Path | None,
        typer.Option(
            "--profiles",
            help="Tumor-board case folder: a fixture naming one of its cases is refused (default: patient_profiles/ beside the rules, or here).",
            show_default=False,
            **_PATH,
        ),
    ] = None,
) -> None:
    """Prove the rules consistent: one line per problem (exit 2); uncited evidence is a warning (exit 0)."""

    def go() -> None:
        import cds

        report = cds.check_rules(rules, profiles)
        for line in report.problems:
            _say(line)
        for line in report.warnings:
            _say(f"warning: {line}")
        if report.capacity:
            typer.echo(report.capacity, err=True)
        summary = (
            f"{report.rules_checked} rules, {report.fixtures_run} fixtures: "
            f"{len(report.problems)} problem(s), {len(report.warnings)} warning(s)"
        )
        typer.echo(summary, err=True)
        if report.problems:
            raise typer.Exit(RuleSetError.exit_code)  # an invalid rule set: the same code as from every command

    _run(go)


@rules_app.command("lock")
def rules_lock(rules: Annotated[Path | None, _rules_option()] = None) -> None:
    """Refresh rules/review.lock after reviewing changed rules (refused while a changed rule keeps its old last_reviewed)."""

    def go() -> None:
        from cds.api import refresh_review_lock, rules_dir

        _check_folder(rules, "--rules")
        lock, count, refusals = refresh_review_lock(rules or rules_dir())
        for line in refusals:
            _say(line)
        if refusals:
            typer.echo(f"{lock.name} not written: {len(refusals)} rule(s) changed without a newer last_reviewed", err=True)
            raise typer.Exit(EXIT_FINDINGS)
        typer.echo(f"wrote {lock}: {count} rules", err=True)

    _run(go)


@app.command()
def examples(
    output_dir: Annotated[Path, typer.Option("--output-dir", help="Folder for the example reports.", **_PATH)] = Path(
        "reports/examples"
    ),
    profiles: Annotated[Path, typer.Option("--profiles", help="Folder of the example cases.", **_PATH)] = Path(
        "patient_profiles"
    ),
    check: Annotated[bool, typer.Option("--check", help="Write nothing; exit 1 if the examples are out of date.")] = False,
    rules: Annotated[Path | None, _rules_option()] = None,
) -> None:
    """Regenerate the example reports (HTML, Markdown, JSON) in reports/examples at a fixed time."""

    def go() -> None:
        from cds.api import examples_out_of_date, render_examples, write_examples

        if not profiles.is_dir():
            raise InputError(f"--profiles {profiles}: no such folder (run from the checkout root or pass --profiles)")
        if output_dir.exists() and not output_dir.is_dir():
            raise InputError(f"--output-dir {output_dir}: not a folder")
        _check_folder(rules, "--rules")
        expected = render_examples(profiles, rules)
        if check:
            problems = examples_out_of_date(output_dir, expected)
            for p in problems:  # each stale file, then how to regenerate them
                typer.echo(p, err=True)
            if problems:
                raise typer.Exit(EXIT_FINDINGS)
            typer.echo(f"{len(expected)} example files up to date in {output_dir}", err=True)
            return
        try:
            changed = write_examples(output_dir, expected)
        except OSError as exc:
            raise InputError(f"--output-dir {output_dir}: cannot write ({exc.strerror or exc})") from None
        typer.echo(f"{len(expected)} example files in {output_dir}; {len(changed)} written or removed", err=True)

    _run(go)


@app.command()
def schemas(
    output_dir: Annotated[Path, typer.Option("--output-dir", help="Folder for the JSON Schemas.", **_PATH)] = Path("schemas"),
    check: Annotated[bool, typer.Option("--check", help="Write nothing; exit 1 if a committed schema is out of date.")] = False,
) -> None:
    """Regenerate the JSON Schemas in schemas/ (profile, rule file, site file, JSON report, batch result line)."""

    def go() -> None:
        from cds.apps import schemas as s

        if output_dir.exists() and not output_dir.is_dir():
            raise InputError(f"--output-dir {output_dir}: not a folder")
        expected = s.generate()
        if check:
            problems = s.stale(output_dir, expected)
            for p in problems:
                typer.echo(p, err=True)
            if problems:
                typer.echo(f"schemas are out of date; regenerate with: {s.REGENERATE_COMMAND}", err=True)
                raise typer.Exit(EXIT_FINDINGS)
            typer.echo(f"{len(expected)} schemas up to date in {output_dir}", err=True)
            return
        try:
            changed = s.write(output_dir, expected)
        except OSError as exc:
            raise InputError(f"--output-dir {output_dir}: cannot write ({exc.strerror or exc})") from None
        typer.echo(f"{len(expected)} schemas in {output_dir}; {len(changed)} written", err=True)

    _run(go)


def _progress(total_of: Callable[[], int | None], quiet: bool) -> "tuple[Progress, int | None] | None":
    """A rich progress bar on stderr when it is a terminal; None (no output) otherwise."""
    if quiet or not sys.stderr.isatty():
        return None
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    bar = Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.fields[rate]}"),
        TimeRemainingColumn(),
        console=Console(stderr=True),
        transient=True,
        # No refresh thread (worker processes are forked while the bar is shown; we refresh on
        # progress), and results written to a piped stdout never go through rich.
        auto_refresh=False,
        redirect_stdout=sys.stdout.isatty(),
        redirect_stderr=False,
    )
    return bar, total_of()


#: the most worker processes `--jobs` takes: each is a forked process with two pipes (`cds.cohort.pool`)
MAX_JOBS = 256


def default_jobs() -> int:
    """The CPU cores this process may run on (its affinity mask; e.g. a container's CPU set), at most MAX_JOBS."""
    try:
        cores = len(os.sched_getaffinity(0)) or 1
    except (AttributeError, OSError):  # not on Linux
        cores = os.cpu_count() or 1
    return min(cores, MAX_JOBS)


def _jobs_option() -> Any:
    return typer.Option(
        "--jobs",
        "-j",
        min=1,
        max=MAX_JOBS,
        help=f"Worker processes, 1 to {MAX_JOBS} (default: one per CPU core this process may use).",
        show_default=False,
    )


def _with_progress(label: str, source: Path, quiet: bool, work: Callable[[Callable[[int], None] | None], _T]) -> _T:
    """Run work(advance) under a progress bar (terminal only)."""
    import time

    from cds.api import count_records

    shown = _progress(lambda: count_records(source), quiet)
    if shown is None:
        return work(None)
    bar, total = shown
    start = last = time.perf_counter()
    with bar:
        task = bar.add_task(label, total=total, rate="")
        bar.refresh()

        def advance(n: int) -> None:
            nonlocal last
            now = time.perf_counter()
            done = bar.tasks[0].completed + n
            bar.update(task, advance=n, rate=f"{done / max(now - start, 1e-9):,.0f}/s")
            if now - last > 0.1:
                bar.refresh()
                last = now

        result = work(advance)
        bar.refresh()
        return result


def _reports_option(what: str) -> Any:
    return typer.Option(
        "--reports",
        metavar="DIR",
        help=f"Also write each patient's report into DIR (new or empty), {what}.",
        show_default=False,
    )


def _record_options(
    reports: str | None, report_format: Format | None, site: Path | None, evaluator: "Evaluator"
) -> "RecordOptions | None":
    """--reports/--format/--site of `cds batch` (and `cds board`), checked before anything is written."""
    from cds.api import record_options

    if report_format is not None and reports is None:
        raise InputError("--format: applies to the --reports files; give --reports DIR")
    if site is not None:
        from cds.api import load_site

        load_site(site, evaluator.ruleset)  # a bad site file fails here, once
    return record_options(str(site) if site else None, reports, report_format.value if report_format is not None else "html")


@app.command()
def batch(
    input: Annotated[
        Path,
        typer.Argument(help="JSONL file (one profile per line) or folder of profile JSON files.", show_default=False, **_PATH),
    ],
    output: Annotated[str | None, _output_option("Write the results (JSONL) to FILE instead of stdout.")] = None,
    summary: Annotated[str | None, _output_option("Also write the summary (JSON) to FILE.", "--summary")] = None,
    timestamp: Annotated[
        str | None,
        typer.Option(
            "--timestamp", help="Fix the evaluation time (ISO 8601) for reproducible output; SOURCE_DATE_EPOCH works too."
        ),
    ] = None,
    rules: Annotated[Path | None, _rules_option()] = None,
    jobs: Annotated[int, _jobs_option()] = default_jobs(),
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No progress bar and no summary on stderr.")] = False,
    reports: Annotated[str | None, _reports_option("named from the patient ID and the record")] = None,
    report_format: Annotated[
        Format | None,
        typer.Option(
            "--format", "-f", help="Format of the --reports files: html (default), markdown or pdf.", show_default=False
        ),
    ] = None,
    site: Annotated[
        Path | None,
        typer.Option(
            "--site",
            help="Site settings (YAML): each result line gets the top option's availability there; the reports use it.",
            show_default=False,
            **_PATH,
        ),
    ] = None,
) -> None:
    """Evaluate a cohort: one result line per record, in input order; exit 1 if some records are invalid.

    In a folder every *.json entry is a record; one that is not a readable regular file
    (a broken link, a FIFO, a folder) is an invalid record. An empty input (an empty file,
    no *.json in the folder) is not an error: a warning on stderr, an empty output, exit 0.
    A JSONL record's JSON or UTF-8 problem names the field "(line)" (cds evaluate: "(file)").
    If a worker process dies (e.g. killed when out of memory) the run stops: exit 3, no output.
    """

    def go() -> None:
        from cds.api import check_cohort_input, evaluation_time, load_rules, run_batch

        check_cohort_input(input)
        # every output path is checked before any file is created
        out = OutputFile(output, "--output")
        summary_out = OutputFile(summary, "--summary") if summary is not None else None
        if summary_out is not None and summary_out.same_file(out):
            raise InputError(f"--summary {printable(summary, 200)}: the same file as --output")
        folder = input.is_dir()
        _not_over_inputs([out, summary_out], () if folder else (input,), rules, input if folder else None)
        _check_folder(rules, "--rules")
        at = evaluation_time(timestamp)
        evaluator = load_rules(rules)  # a bad rule folder fails here, once
        options = _record_options(reports, report_format, site, evaluator)
        try:
            out.open()
            if summary_out is not None:
                summary_out.open()
            result = _with_progress(
                "evaluating",
                input,
                quiet,
                lambda advance: run_batch(input, out, str(rules) if rules else None, at, jobs, advance, options),
            )
            out.commit()
            if summary_out is not None:
                import json

                summary_out.write(json.dumps(result.as_dict(), indent=2, ensure_ascii=False) + "\n")
                summary_out.commit()
        except BaseException:
            out.abort()
            if summary_out is not None:
                summary_out.abort()
            raise
        if result.records == 0:
            typer.echo(
                f"warning: {printable(input, 200)}: no records (an empty file, or no *.json in the folder); the output is empty",
                err=True,
            )
        if not quiet:
            sys.stderr.write(result.text())
        if result.exit_code:
            raise typer.Exit(result.exit_code)

    # on success nothing is open once go() returns (the output committed, the workers reaped): the process
    # ends without the interpreter's teardown, about 65M instructions (20 ms) after the run
    _run(go, leave=True)


@app.command()
def board(
    input: Annotated[
        Path,
        typer.Argument(
            help="JSONL file (one profile per line) or folder of profile JSON files: the week's list.",
            show_default=False,
            **_PATH,
        ),
    ],
    output: Annotated[
        str | None, _output_option("Write the board to FILE (.html, .pdf, .md; default: Markdown on stdout).")
    ] = None,
    format: Annotated[
        Format | None,
        typer.Option("--format", "-f", help="html, pdf or markdown (default: from --output's suffix).", show_default=False),
    ] = None,
    reports: Annotated[str | None, _reports_option("linked from the board")] = None,
    site: Annotated[
        Path | None, typer.Option("--site", help="Site settings (YAML) for availability.", show_default=False, **_PATH)
    ] = None,
    timestamp: Annotated[str | None, typer.Option("--timestamp", help="Fix the evaluation time (ISO 8601).")] = None,
    rules: Annotated[Path | None, _rules_option()] = None,
) -> None:
    """The week's tumor board on one table: one row per patient, in input order (top option, runner-up, facts to obtain)."""

    def go() -> None:
        from cds.api import build_board, check_cohort_input, evaluation_time, load_rules, render_board

        check_cohort_input(input)
        fmt = output_format(format, output) or "markdown"
        if fmt == "json":
            raise InputError("--format json: the board is html, pdf or markdown (cds batch gives JSON lines)")
        if fmt == "pdf" and output is None:
            raise InputError("--format pdf: give --output FILE.pdf")
        out = OutputFile(output, binary=fmt == "pdf")
        _check_folder(rules, "--rules")
        at = evaluation_time(timestamp)
        evaluator = load_rules(rules)
        if fmt == "pdf":
            from cds.api import chromium_path

            chromium_path()
        report_format = Format(fmt) if reports is not None else None
        options = _record_options(reports, report_format, site, evaluator)
        board_data = build_board(
            input, evaluator, at, str(site) if site else None, options.reports if options else None, out.target
        )
        if fmt == "pdf":
            from cds.api import html_to_pdf

            out.write_all(html_to_pdf(render_board(board_data, "html"), at))
        else:
            out.write_all(render_board(board_data, fmt))

    _run(go)


@app.command("diff-rules")
def diff_rules(
    old_rules: Annotated[
        Path, typer.Argument(metavar="OLD_RULES_DIR", help="The current rule folder.", show_default=False, **_PATH)
    ],
    new_rules: Annotated[
        Path, typer.Argument(metavar="NEW_RULES_DIR", help="The changed rule folder.", show_default=False, **_PATH)
    ],
    input: Annotated[Path, typer.Argument(help="JSONL file or folder of profile JSON files.", show_default=False, **_PATH)],
    output: Annotated[str | None, _output_option("Also write every change and the totals (JSON) to FILE.")] = None,
    jobs: Annotated[int, _jobs_option()] = default_jobs(),
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No progress bar.")] = False,
) -> None:
    """Which patients' top option (or ranking) changes between two rule sets (an empty input: a warning, exit 0)."""

    def go() -> None:
        import json

        from cds.api import check_cohort_input, diff_row_json, diff_row_text, load_rules_for_diff, run_diff

        check_cohort_input(input)
        for d in (old_rules, new_rules):
            if not d.is_dir():
                raise InputError(f"rule folder {printable(d, 200)}: no such folder")
        out = OutputFile(output) if output is not None else None
        folder = input.is_dir()
        for d in (old_rules, new_rules):
            _not_over_inputs([out], () if folder else (input,), d, input if folder else None)
        old_dir, new_dir = str(old_rules), str(new_rules)
        from cds.api import evaluation_time

        at = evaluation_time(None)  # both rule sets at one instant (SOURCE_DATE_EPOCH or now): only the rules differ
        # compiled once here (a bad rule folder fails before anything starts); workers inherit them
        old_ev, new_ev = load_rules_for_diff(old_dir), load_rules_for_diff(new_dir)
        widths = (12, 20, 24, 24, 10)
        header = ("RECORD", "PATIENT", "OLD TOP", "NEW TOP", "CHANGE")
        write_stdout("  ".join(h.ljust(w) for h, w in zip(header, widths)).rstrip() + "\n")
        first = [True]

        def header_json() -> str:
            return (
                "{"
                + f'"format": "cds-diff-rules/1", "old_rules": {json.dumps(old_dir)}, "new_rules": {json.dumps(new_dir)}, '
                + f'"old_ruleset_hash": "{old_ev.ruleset.digest}", "new_ruleset_hash": "{new_ev.ruleset.digest}", '
                + f'"input": {json.dumps(str(input))},\n"changes": ['
            )

        def on_change(row: dict[str, Any]) -> None:
            cells = diff_row_text(row)
            write_stdout("  ".join(c.ljust(w) for c, w in zip(cells, widths)).rstrip() + "\n")
            if out is not None:
                out.write(("\n" if first[0] else ",\n") + diff_row_json(row))
                first[0] = False

        with out.writing() if out is not None else contextlib.nullcontext():
            if out is not None:
                out.write(header_json())
            totals = _with_progress(
                "comparing", input, quiet, lambda advance: run_diff(old_dir, new_dir, input, jobs, on_change, advance, at)
            )
            if out is not None:
                out.write("\n],\n" + f'"totals": {json.dumps(totals)}' + "}\n")
        if totals["records"] == 0:
            typer.echo(f"warning: {printable(input, 200)}: no records (an empty file, or no *.json in the folder)", err=True)
        write_stdout(
            f"{totals['records']} record(s): top option changed for {totals['top_changed']}, "
            f"ranking changed for {totals['ranking_changed']}, {totals['invalid']} invalid "
            f"({totals['changed']} listed)\n"
        )
        if old_ev.ruleset.digest == new_ev.ruleset.digest:
            write_stdout("note: the two rule folders are identical (same rule-set hash)\n")

    _run(go)


def _db_option() -> Any:
    return typer.Option(
        "--db",
        help="Case store: an SQLite file or a database URL (postgresql://...). Default: cases.db in the user's data directory.",
        show_default=False,
    )


@app.command()
def serve(
    host: Annotated[
        str, typer.Option("--host", help="Address to listen on; anything but loopback needs authentication.")
    ] = "127.0.0.1",
    port: Annotated[int, typer.Option("--port", help="Port (0: any free port; the ready line names it).")] = 8040,
    workers: Annotated[
        int, typer.Option("--workers", help="Evaluation worker processes (default: one per CPU core).", show_default=False)
    ] = 0,
    rules: Annotated[Path | None, _rules_option()] = None,
    site: Annotated[
        list[str],
        typer.Option(
            "--site",
            metavar="[NAME=]FILE",
            help="A site file callers select with ?site=NAME (default NAME: the file name without .yaml); repeatable.",
        ),
    ] = [],
    db: Annotated[str | None, _db_option()] = None,
    public_url: Annotated[
        str | None,
        typer.Option(
            "--public-url",
            help="The URL the EHR calls (token audience, report links). Default: http://HOST:PORT.",
            show_default=False,
        ),
    ] = None,
    jwks: Annotated[
        Path | None,
        typer.Option("--jwks", help="JWK Set file with the EHRs' public keys (ES384/RS384).", show_default=False, **_PATH),
    ] = None,
    trusted_issuer: Annotated[
        list[str], typer.Option("--trusted-issuer", metavar="ISS", help="Accept tokens only from this issuer (repeatable).")
    ] = [],
    trusted_jku: Annotated[
        list[str], typer.Option("--trusted-jku", metavar="URL", help="JWK Set URL a token's jku may name (repeatable).")
    ] = [],
    no_auth: Annotated[bool, typer.Option("--no-auth", help="No authentication (loopback only; prints a warning).")] = False,
    cors_origin: Annotated[
        list[str], typer.Option("--cors-origin", metavar="ORIGIN", help="Allow browser calls from this origin (repeatable).")
    ] = [],
    max_body: Annotated[int, typer.Option("--max-body-bytes", help="Larger request bodies get 413.")] = 5 * 1024 * 1024,
    report_hours: Annotated[
        float, typer.Option("--report-hours", help="How long GET /reports/{id} serves a report (then 404).")
    ] = 24.0,
) -> None:
    """Serve the HTTP API and the CDS Hooks service (until SIGTERM or Ctrl-C)."""

    def go() -> None:
        import datetime as dt

        from cds.apps.http import Settings
        from cds.apps.http import serve as run
        from cds.apps.http.settings import default_workers

        _check_folder(rules, "--rules")
        if jwks is not None and not os.path.isfile(jwks):
            raise InputError(f"--jwks {printable(jwks, 200)}: no such file")
        sites: dict[str, str] = {}
        for item in site:
            name, sep, path = item.partition("=")
            name, path = (name, path) if sep else (Path(item).stem, item)
            if not os.path.isfile(path):
                raise InputError(f"--site {printable(item, 200)}: no such file")
            if name in sites:
                raise InputError(f"--site {printable(item, 200)}: the site name {quoted(name)} is given twice")
            sites[name] = path
        if report_hours <= 0:
            raise InputError("--report-hours: must be more than 0")
        run(
            Settings(
                host=host,
                port=port,
                workers=workers or default_workers(),
                rules=str(rules) if rules else None,
                sites=sites,
                db=db,
                public_url=public_url,
                jwks=jwks,
                trusted_issuers=tuple(trusted_issuer),
                trusted_jkus=tuple(trusted_jku),
                no_auth=no_auth,
                cors_origins=tuple(cors_origin),
                max_body_bytes=max_body,
                report_ttl=dt.timedelta(hours=report_hours),
            )
        )

    _run(go, signals=False)


def _since_option(help: str) -> Any:
    return typer.Option("--since", metavar="DATE", help=help, show_default=False)


def _since(since: str | None) -> "dt.datetime | None":
    import datetime as dt

    if since is None:
        return None
    try:
        when = dt.datetime.fromisoformat(since.strip().replace("Z", "+00:00"))
    except ValueError:
        raise InputError(f"--since: {quoted(since)} is not an ISO-8601 date (e.g. 2026-01-01)") from None
    return when if when.tzinfo is not None else when.replace(tzinfo=dt.UTC)


feedback_app = typer.Typer(
    no_args_is_help=True, help="Clinicians' feedback on CDS Hooks cards (where they disagree with the ranking)."
)
app.add_typer(feedback_app, name="feedback")


@feedback_app.command("export")
def feedback_export(
    db: Annotated[str | None, _db_option()] = None,
    since: Annotated[str | None, _since_option("Only feedback received from this date (ISO 8601) on.")] = None,
    output: Annotated[str | None, _output_option("Write the feedback (JSONL) to FILE instead of stdout.")] = None,
) -> None:
    """Every feedback item as one JSON line, with the evaluation it refers to (top option, rule-set hash)."""

    def go() -> None:
        import json

        from cds.store import open_store

        when = _since(since)
        out = OutputFile(output)
        store = open_store(db)  # StoreError is an InputError: one line, exit 2
        try:
            out.write_all(
                "".join(json.dumps(row, ensure_ascii=False, sort_keys=True) + "\n" for row in store.iter_feedback(when))
            )
        finally:
            store.close()

    _run(go)


cases_app = typer.Typer(no_args_is_help=True, help="The case store: every evaluation, as JSON Lines out and back in.")
app.add_typer(cases_app, name="cases")


@cases_app.command("export")
def cases_export(
    db: Annotated[str | None, _db_option()] = None,
    since: Annotated[str | None, _since_option("Only evaluations stored from this date (ISO 8601, UTC) on.")] = None,
    output: Annotated[str | None, _output_option("Write the cases (JSONL) to FILE instead of stdout.")] = None,
) -> None:
    """Every stored evaluation as one JSON line with its case (input, profile, report, versions), oldest first."""

    def go() -> None:
        from cds.store import open_store

        when = _since(since)
        out = OutputFile(output)
        store = open_store(db, create=False)
        try:
            with out.writing():
                for line in store.export_lines(when):
                    out.write(line)
        finally:
            store.close()

    _run(go)


@cases_app.command("import")
def cases_import(
    source: Annotated[Path, typer.Argument(metavar="FILE", help="A `cds cases export` file (JSONL).", **_PATH)],
    db: Annotated[str | None, _db_option()] = None,
) -> None:
    """Restore an export: adds the evaluations the store lacks (one transaction; existing ones are never changed)."""

    def go() -> None:
        from cds.store import open_store, read_lines

        try:
            with source.open("rb") as fh:
                records = read_lines(fh, str(source))
        except OSError as exc:
            raise InputError(f"{source}: cannot read ({exc.strerror or exc})") from None
        store = open_store(db)
        try:
            result = store.import_lines(records)
        finally:
            store.close()
        _say(f"imported {result.added} evaluation(s) into {store.url}; {result.already_present} already there")

    _run(go)


def _leave(code: object) -> None:
    """After a `single` command succeeded: run the exit handlers, flush, and end the process at once.

    The interpreter's teardown (freeing every module and object one by one) is about a tenth of
    a cold `cds evaluate`, and nothing is left for it to do: the output is written and closed.
    Anything unusual (another thread, an exit code that is not EXIT_OK, a stream that cannot be
    flushed) returns, and the normal exit follows.
    """
    if code not in (None, EXIT_OK) or not _Start.exit_at_once or threading.active_count() > 1:
        return
    try:
        sys.stdout.flush()
        sys.stderr.flush()
    except (OSError, ValueError):
        return
    atexit._run_exitfuncs()
    with contextlib.suppress(OSError, ValueError):
        sys.stdout.flush()
        sys.stderr.flush()
    os._exit(EXIT_OK)


@contextmanager
def _only_the_named_command(args: Sequence[str]) -> Iterator[None]:
    """Within: when `args` start with the name of one of `app`'s commands or command groups, `app` builds only that one.

    typer turns every registered command into a click command (its parameters, their types and help) each time
    the application runs: about 30M instructions for seventeen commands, a thirtieth of a cold `cds evaluate`,
    of which the one invoked needs its own. Its help, usage and errors come out the same (they never name
    the other commands). Everything else (`cds`, `cds --help`, an unknown name, an option first, shell
    completion) builds them all.
    """
    from typer.main import get_command_name

    commands, groups = app.registered_commands, app.registered_groups
    name = args[0] if args else None
    completing = any(k.startswith("_") and k.endswith("_COMPLETE") for k in os.environ)  # click's completion switch
    only_c = [c for c in commands if (c.name or get_command_name(c.callback.__name__ if c.callback else "")) == name]
    only_g = [g for g in groups if g.name == name]
    if name is None or completing or len(only_c) + len(only_g) != 1:
        yield
        return
    app.registered_commands, app.registered_groups = only_c, only_g
    try:
        yield
    finally:
        app.registered_commands, app.registered_groups = commands, groups


def main() -> None:  # console-script entry point
    from cds.api import engine_problem
    from cds.apps import classcode

    gc.disable()  # start-up builds many objects and frees few: collecting meanwhile only costs time (see _run)
    _Start.gc_paused = True
    why = engine_problem()  # the engine drives durable-rules' C core as the pinned release has it
    if why is not None:
        typer.echo(f"error: {why}", err=True)
        sys.exit(EXIT_INTERNAL)
    try:
        with classcode.kept(), _no_pydantic_plugins(), _only_the_named_command(sys.argv[1:]):
            app()
    except SystemExit as exc:
        _leave(exc.code)
        raise


if __name__ == "__main__":  # pragma: no cover
    main()
