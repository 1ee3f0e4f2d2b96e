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
    site: Optional[Path] = typer.Option(
        None,
        "--site",
        help="Site settings (YAML): availability, reimbursement and CAR-T delivery at this centre. "
        "Default: the sources' setting shipped with the rules (catalog/site_default.yaml).",
        show_default=False,
    ),
) -> None:
    """Rank the treatment options for one patient, with rules, evidence, cautions and exclusions."""

    def go() -> None:
        from .evaluate import default_evaluator
        from .report import build_report, render

        evaluator = default_evaluator(str(rules) if rules else None)
        site_settings = None
        if site is not None:
            from .site import load_site

            site_settings = load_site(site, evaluator.ruleset)
        profile = evaluator.load(path)
        text = render(build_report(evaluator.evaluate(profile), timestamp, site_settings), format.value)
        if output is not None:
            write_atomically(output, text)
        else:
            sys.stdout.write(text)

    _run(go)


rules_app = typer.Typer(no_args_is_help=True, help="List, show and check the rules (rules/*.yaml).")
app.add_typer(rules_app, name="rules")


def _load_rules(rules: Optional[Path]):
    from .resources import rules_dir
    from .ruleset import load_ruleset

    return load_ruleset(rules or rules_dir())


@rules_app.command("list")
def rules_list(rules: Optional[Path] = _rules_option()) -> None:
    """Every rule: ID, family, kind, option(s), title."""

    def go() -> None:
        from .rulecheck import format_table, list_rows

        sys.stdout.write(format_table(("ID", "FAMILY", "KIND", "OPTION", "TITLE"), list_rows(_load_rules(rules))))

    _run(go)


@rules_app.command("show")
def rules_show(
    rule_id: str = typer.Argument(..., metavar="ID", help="Rule ID, e.g. ELIG-CART-002.", show_default=False),
    rules: Optional[Path] = _rules_option(),
) -> None:
    """One rule in plain language: condition, effect, rationale, evidence with quotes, fixtures."""

    def go() -> None:
        from .rulecheck import show_rule

        sys.stdout.write(show_rule(_load_rules(rules), rule_id.strip()))

    _run(go)


@rules_app.command("check")
def rules_check(
    rules: Optional[Path] = _rules_option(),
    profiles: Optional[Path] = typer.Option(
        None, "--profiles", help="Case folder the fixtures name (default: patient_profiles/ beside the rules, or here).", show_default=False
    ),
) -> None:
    """Prove the rules consistent: one line per problem (exit 1); uncited evidence is a warning (exit 0)."""

    def go() -> None:
        from .resources import rules_dir
        from .rulecheck import check_rules, default_profiles_dir

        directory = rules or rules_dir()
        report = check_rules(directory, profiles or default_profiles_dir(directory))
        for line in report.problems:
            typer.echo(line)
        for line in report.warnings:
            typer.echo(f"warning: {line}")
        summary = (
            f"{report.rules_checked} rules, {report.fixtures_run} fixtures: "
            f"{len(report.problems)} problem(s), {len(report.warnings)} warning(s)"
        )
        typer.echo(summary, err=True)
        if report.problems:
            raise typer.Exit(1)

    _run(go)


@app.command()
def examples(
    output_dir: Path = typer.Option(Path("reports/examples"), "--output-dir", help="Folder for the example reports."),
    profiles: Path = typer.Option(Path("patient_profiles"), "--profiles", help="Folder of the example cases."),
    check: bool = typer.Option(False, "--check", help="Write nothing; exit 1 if the examples are out of date."),
    rules: Optional[Path] = _rules_option(),
) -> None:
    """Regenerate the example reports (HTML, Markdown, JSON) in reports/examples at a fixed time."""

    def go() -> None:
        from .examples import REGENERATE_COMMAND, render_examples, stale, write_examples

        expected = render_examples(profiles, rules)
        if check:
            problems = stale(output_dir, expected)
            for p in problems:
                typer.echo(p, err=True)
            if problems:
                typer.echo(f"examples are out of date; regenerate with: {REGENERATE_COMMAND}", err=True)
                raise typer.Exit(1)
            typer.echo(f"{len(expected)} example files up to date in {output_dir}", err=True)
            return
        changed = write_examples(output_dir, expected)
        typer.echo(f"{len(expected)} example files in {output_dir}; {len(changed)} written or removed", err=True)

    _run(go)


class _StreamedOutput:
    """An output file written as it goes, renamed into place only when complete (never a partial file)."""

    def __init__(self, path: Optional[Path], option: str = "--output"):
        from .batch import UsageError

        self.path = path
        self.tmp: Optional[str] = None
        if path is None:
            self.fh = sys.stdout
            return
        path = path.expanduser()
        directory = path.parent if str(path.parent) else Path(".")
        if path.is_dir():
            raise UsageError(f"{option} {path}: is a folder, not a file")
        if not directory.is_dir():
            raise UsageError(f"{option} {path}: folder {directory} does not exist")
        try:
            fd, self.tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=directory)
        except OSError as exc:
            raise UsageError(f"{option} {path}: cannot write there ({exc.strerror})") from None
        self.path = path
        self.fh = os.fdopen(fd, "w", encoding="utf-8")

    def commit(self) -> None:
        if self.tmp is None:
            self.fh.flush()
            return
        self.fh.close()
        os.replace(self.tmp, self.path)  # type: ignore[arg-type]
        self.tmp = None

    def abort(self) -> None:
        if self.tmp is not None:
            self.fh.close()
            try:
                os.unlink(self.tmp)
            except OSError:
                pass
            self.tmp = None


def _progress(total_of, quiet: bool):
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


def _jobs_option():
    return typer.Option(0, "--jobs", "-j", help="Worker processes (default: one per CPU core).", show_default=False)


def _with_progress(label: str, source: Path, quiet: bool, work):
    """Run work(advance) under a progress bar (terminal only)."""
    import time

    from .batch import count_records

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


@app.command()
def batch(
    input: Path = typer.Argument(..., help="JSONL file (one profile per line) or folder of profile JSON files.", show_default=False),
    output: Optional[Path] = typer.Option(None, "--output", "-o", help="Write the results (JSONL) to FILE instead of stdout."),
    summary: Optional[Path] = typer.Option(None, "--summary", help="Also write the summary (JSON) to FILE.", show_default=False),
    timestamp: Optional[str] = typer.Option(
        None, "--timestamp", help="Fix the evaluation time (ISO 8601) for reproducible output; SOURCE_DATE_EPOCH works too."
    ),
    rules: Optional[Path] = _rules_option(),
    jobs: int = _jobs_option(),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="No progress bar and no summary on stderr."),
) -> None:
    """Evaluate a cohort: one result line per record, in input order; exit 1 if some records are invalid."""

    def go() -> None:
        from .batch import check_input, run_batch
        from .evaluate import default_evaluator
        from .report import evaluation_time

        check_input(input)
        default_evaluator(str(rules) if rules else None)  # a bad rule folder fails here, once
        out = _StreamedOutput(output)
        summary_out = _StreamedOutput(summary, "--summary") if summary is not None else None
        try:
            result = _with_progress(
                "evaluating",
                input,
                quiet,
                lambda advance: run_batch(
                    input, out.fh, str(rules) if rules else None, evaluation_time(timestamp), jobs or os.cpu_count() or 1, advance
                ),
            )
            out.commit()
            if summary_out is not None:
                import json

                summary_out.fh.write(json.dumps(result.as_dict(), indent=2, ensure_ascii=False) + "\n")
                summary_out.commit()
        except BaseException:
            out.abort()
            if summary_out is not None:
                summary_out.abort()
            raise
        if not quiet:
            sys.stderr.write(result.text())
        if result.exit_code:
            raise typer.Exit(result.exit_code)

    _run(go)


@app.command("diff-rules")
def diff_rules(
    old_rules: Path = typer.Argument(..., metavar="OLD_RULES_DIR", help="The current rule folder.", show_default=False),
    new_rules: Path = typer.Argument(..., metavar="NEW_RULES_DIR", help="The changed rule folder.", show_default=False),
    input: Path = typer.Argument(..., help="JSONL file or folder of profile JSON files.", show_default=False),
    output: Optional[Path] = typer.Option(None, "--output", "-o", help="Also write every change and the totals (JSON) to FILE."),
    jobs: int = _jobs_option(),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="No progress bar."),
) -> None:
    """Which patients' top option (or ranking) changes between two rule sets."""

    def go() -> None:
        import json

        from .batch import UsageError, check_input, diff_row_text, evaluator_for, run_diff

        check_input(input)
        for d in (old_rules, new_rules):
            if not d.is_dir():
                raise UsageError(f"rule folder {d}: no such folder")
        old_dir, new_dir = str(old_rules), str(new_rules)
        # compiled once here (a bad rule folder fails before anything starts); workers inherit them
        old_ev, new_ev = evaluator_for(old_dir, False), evaluator_for(new_dir, False)
        out = _StreamedOutput(output) if output is not None else None
        widths = (12, 20, 24, 24, 10)
        header = ("RECORD", "PATIENT", "OLD TOP", "NEW TOP", "CHANGE")
        sys.stdout.write("  ".join(h.ljust(w) for h, w in zip(header, widths)).rstrip() + "\n")
        first = [True]
        if out is not None:
            out.fh.write(
                "{"
                + f'"format": "cds-diff-rules/1", "old_rules": {json.dumps(old_dir)}, "new_rules": {json.dumps(new_dir)}, '
                + f'"old_ruleset_hash": "{old_ev.ruleset.digest}", "new_ruleset_hash": "{new_ev.ruleset.digest}", '
                + f'"input": {json.dumps(str(input))},\n"changes": ['
            )

        def on_change(row) -> None:
            cells = diff_row_text(row)
            sys.stdout.write("  ".join(c.ljust(w) for c, w in zip(cells, widths)).rstrip() + "\n")
            if out is not None:
                out.fh.write(("\n" if first[0] else ",\n") + json.dumps(row, ensure_ascii=False))
                first[0] = False

        try:
            totals = _with_progress(
                "comparing", input, quiet, lambda advance: run_diff(old_dir, new_dir, input, jobs or os.cpu_count() or 1, on_change, advance)
            )
            if out is not None:
                out.fh.write("\n],\n" + f'"totals": {json.dumps(totals)}' + "}\n")
                out.commit()
        except BaseException:
            if out is not None:
                out.abort()
            raise
        sys.stdout.write(
            f"{totals['records']} record(s): top option changed for {totals['top_changed']}, "
            f"ranking changed for {totals['ranking_changed']}, {totals['invalid']} invalid "
            f"({totals['changed']} listed)\n"
        )
        if old_ev.ruleset.digest == new_ev.ruleset.digest:
            sys.stdout.write("note: the two rule folders are identical (same rule-set hash)\n")

    _run(go)


def main() -> None:  # console-script entry point
    app()


if __name__ == "__main__":  # pragma: no cover
    main()
