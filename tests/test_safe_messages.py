"""Every message that quotes user data is safe to print (issue 10, defect 9).

A key, a name or a value from a profile, a site file, a file name or an option can hold a line
break, terminal control sequences (ESC ... to clear the screen, OSC to set the window title), bidi
overrides (U+202E) or U+2028, and can be megabytes long. Quoted in a message, it is escaped
(``\\n``, ``\\x1b``, ``\\u202e``) and cut to 80 characters with an ellipsis, by one function,
`cds.errors.printable`; no line of a message can be forged, no screen cleared, no text reordered.
"""

from __future__ import annotations

import copy
import json
import re
import shutil

import pytest
from conftest import PROFILES, RULES, case_names, load_case
from typer.testing import CliRunner

from cds.apps.cli import app

runner = CliRunner()
CASE = str(PROFILES / "frail_ecog3.json")
# a line break, clear-screen, a window-title OSC, BEL, a bidi override, a line separator, NEL; then 10,000 more
HOSTILE = "A\n\x1b[2J\x1b]0;owned\x07\u202e\u2028\x85" + "x" * 10_000
ESCAPED = "A\\n\\x1b[2J\\x1b]0;owned\\x07\\u202e\\u2028\\x85"
# the same, as a JSON string escapes it (the messages that quote a value as the profile wrote it)
JSON_ESCAPED = "A\\n\\u001b[2J\\u001b]0;owned\\u0007\\u202e\\u2028\\x85"
RAW = ("\x1b", "\x07", "\u202e", "\u2028", "\x85")
FIELD_LINE = re.compile(r"^  (\.\.\. and \d+ more problems|[\w\[\]().]+: )")


def assert_safe(text: str, max_lines: int = 1) -> list[str]:
    """No raw character a terminal acts on; the user's value escaped and cut; every line a line of the message."""
    assert not [c for c in RAW if c in text], repr(text[:300])
    lines = text.splitlines()
    assert 1 <= len(lines) <= max_lines, text[:2000]
    assert lines[0].startswith("error: "), lines[0][:300]
    for line in lines[1:]:
        assert FIELD_LINE.match(line), line[:300]  # a problem of the message, not a line the value forged
    assert all(len(line) < 600 for line in lines), max(len(line) for line in lines)
    assert (ESCAPED in text or JSON_ESCAPED in text) and "x" * 200 not in text and "\u2026" in text, text[:600]
    return lines


def profile_with(change) -> dict:
    p = load_case("frail_ecog3")
    change(p)
    return p


def line0(p):
    return p["prior_lines"][0]


PROFILE_CASES = {
    "a key": lambda p: p.__setitem__(HOSTILE, 1),
    "a key of a line": lambda p: line0(p).__setitem__(HOSTILE, 1),
    "a key of labs": lambda p: p.__setitem__("labs", {HOSTILE: 1}),
    "an enum value": lambda p: p.__setitem__("sex", HOSTILE),
    "an agent": lambda p: line0(p).__setitem__("agents", [HOSTILE[:150]]),
    "a regimen label": lambda p: (line0(p).pop("agents", None), line0(p).__setitem__("regimen", HOSTILE[:150])),
    "refractory_to": lambda p: line0(p).__setitem__("refractory_to", [HOSTILE[:150]]),
    "an investigational class": lambda p: line0(p).__setitem__(
        "agents", [*line0(p).get("agents", []), {"investigational": "XYZ-1", "class": HOSTILE[:35]}]
    ),
    "a date": lambda p: p.__setitem__("evaluation_date", HOSTILE),
    "a cytogenetic abnormality": lambda p: p.__setitem__("cytogenetics", [HOSTILE[:150]]),
    "an integer field": lambda p: p.__setitem__("age", HOSTILE),
}


@pytest.mark.parametrize("where", list(PROFILE_CASES))
def test_a_hostile_value_in_a_profile_is_escaped_and_cut(tmp_path, where):
    path = tmp_path / "p.json"
    path.write_text(json.dumps(profile_with(PROFILE_CASES[where])), encoding="utf-8")
    result = runner.invoke(app, ["evaluate", str(path), "--rules", str(RULES), "--format", "json"])
    assert result.exit_code == 2, result.output
    if where in ("an investigational class",):  # a class is at most 40 characters: cut by that limit first
        assert not [c for c in RAW if c in result.stderr] and "\\x1b[2J" in result.stderr
        return
    assert_safe(result.stderr, max_lines=4)


SITE = "name: {name}\ndescription: {description}\ncar_t_delivered_on_site: false\ncar_t_referral_possible: true\n"
SITE_CASES = {  # YAML keys are at most 1024 characters: a shorter hostile value there (still far over 80)
    "the name": SITE.format(name="{h}", description="d"),
    "the description": SITE.format(name="n", description="{h}"),
    "an option ID": SITE.format(name="n", description="d") + "availability:\n  {k}: {{available: true}}\n",
    "a product": SITE.format(name="n", description="d")
    + "availability:\n  bcma_bispecific:\n    available: true\n    products:\n      {k}: {{available: true}}\n",
    "an evidence ID": SITE.format(name="n", description="d")
    + "availability:\n  bcma_bispecific:\n    available: true\n    cites: [{h}]\n",
    "a key": SITE.format(name="n", description="d") + "{k}: 1\n",
}


@pytest.mark.parametrize("where", list(SITE_CASES))
def test_a_hostile_value_in_a_site_file_is_escaped_and_cut(tmp_path, where):
    site = tmp_path / "site.yaml"
    site.write_text(SITE_CASES[where].format(h=json.dumps(HOSTILE), k=json.dumps(HOSTILE[:300])), encoding="utf-8")
    result = runner.invoke(app, ["evaluate", CASE, "--rules", str(RULES), "--site", str(site), "--format", "json"])
    assert result.exit_code == 2, result.output
    assert_safe(result.stderr)


@pytest.mark.parametrize(
    "args",
    [
        ["rules", "show", HOSTILE, "--rules", str(RULES)],
        ["feedback", "export", "--since", HOSTILE, "--db", "{tmp}/cases.db"],
        ["evaluate", CASE, "--rules", str(RULES), "--timestamp", HOSTILE],
        ["evaluate", CASE, "--rules", str(RULES), "--format", HOSTILE],
        ["serve", "--no-auth", "--site", f"a={HOSTILE}"],
    ],
    ids=["rules show ID", "--since", "--timestamp", "--format", "serve --site"],
)
def test_a_hostile_option_value_is_escaped_and_cut(tmp_path, args):
    result = runner.invoke(app, [a.replace("{tmp}", str(tmp_path)) for a in args])
    assert result.exit_code == 2, result.output
    assert_safe(result.stderr)


def test_a_path_the_system_refuses_is_one_line_exit_2(tmp_path):
    """A path too long for the system (ENAMETOOLONG) was an internal error (exit 3) from --rules, batch, board."""
    long = str(tmp_path / ("x" * 5000))
    for args in (
        ["evaluate", CASE, "--rules", long],
        ["batch", long, "-q"],
        ["board", long],
        ["diff-rules", long, long, CASE, "-q"],
        ["serve", "--no-auth", "--jwks", long],
    ):
        result = runner.invoke(app, args)
        assert result.exit_code == 2, (args[0], result.output[:300])
        (line,) = result.stderr.splitlines()
        assert line.startswith("error: ") and len(line) < 400 and "internal error" not in line, line[:300]


def test_batch_summary_quotes_a_hostile_file_name_escaped(tmp_path):
    folder = tmp_path / "cases"
    folder.mkdir()
    (folder / (HOSTILE[:200].replace("/", "_") + ".json")).write_text("{", encoding="utf-8")
    result = runner.invoke(app, ["batch", str(folder), "--rules", str(RULES), "-j", "1"])
    assert result.exit_code == 1, result.output
    assert not [c for c in RAW if c in result.stderr], result.stderr[:300]
    assert len(result.stderr.splitlines()) == 2 and ESCAPED in result.stderr  # the counts, then the one invalid record


def test_a_result_line_holds_one_record_whatever_the_patient_id(tmp_path):
    """U+2028, U+2029 and U+0085 are line breaks to str.splitlines() and JavaScript: JSON-escaped in a result line."""
    src = tmp_path / "c.jsonl"
    src.write_text(
        "".join(json.dumps(profile_with(lambda p, s=s: p.__setitem__("patient_id", f"a{s}b"))) + "\n" for s in RAW[3:])
        + json.dumps(profile_with(lambda p: p.__setitem__("patient_id", "c\u2029d")))
        + "\n",
        encoding="utf-8",
    )
    out = tmp_path / "r.jsonl"
    result = runner.invoke(app, ["batch", str(src), "--rules", str(RULES), "-j", "1", "-q", "-o", str(out)])
    assert result.exit_code == 0, result.output
    text = out.read_text(encoding="utf-8")
    rows = [json.loads(line) for line in text.splitlines()]
    assert [r["patient_id"] for r in rows] == ["a\u2028b", "a\x85b", "c\u2029d"]


def _weight_changed_rules(tmp_path, evaluator):
    """(a rule folder in which the runner-up of some case overtakes its top option, that case)."""
    for name in case_names():
        ev = evaluator.evaluate(evaluator.parse(load_case(name)))
        if len(ev.ranking.options) < 2:
            continue
        first, second = ev.ranking.options[0], ev.ranking.options[1]
        rule = next((r for r in second.rationale if r.kind == "prefer"), None)
        if rule is None:
            continue
        new = tmp_path / "new_rules"
        shutil.copytree(RULES, new)
        for path in new.glob("*.yaml"):
            text = path.read_text(encoding="utf-8")
            m = re.search(rf"- id: {re.escape(rule.rule_id)}\n(?:(?!\n  - id:).)*?\n(\s+)weight: (\d+)", text, re.S)
            if m:
                weight = rule.weight + (first.score - second.score) + 50
                path.write_text(text[: m.start(2)] + str(weight) + text[m.end(2) :], encoding="utf-8")
                return new, name
    raise AssertionError("no case with a runner-up that has a prefer rule")


def test_diff_rules_table_shows_a_hostile_patient_id_escaped(tmp_path, evaluator):
    """A patient_id with a line break and ESC[2J used to forge a row of the table and clear the screen."""
    new_rules, name = _weight_changed_rules(tmp_path, evaluator)
    p = copy.deepcopy(load_case(name))
    p["patient_id"] = HOSTILE[:190]
    src = tmp_path / "c.jsonl"
    src.write_text(json.dumps(p) + "\n", encoding="utf-8")
    result = runner.invoke(app, ["diff-rules", str(RULES), str(new_rules), str(src), "-q", "-j", "1"])
    assert result.exit_code == 0, result.output
    assert not [c for c in RAW if c in result.stdout], result.stdout[:300]
    header, row, totals = result.stdout.splitlines()
    assert header.startswith("RECORD") and totals.startswith("1 record(s): top option changed for 1")
    assert row.startswith("line 1") and ESCAPED in row and "\u2026" in row and len(row) < 250, row


# --------------------------------------------------------------------------- message wording (defect 11)


@pytest.mark.parametrize(
    "body, says",
    [
        (b'{"patient_id": "a\x01b"}', "not valid JSON: Invalid control character at line 1, column 18"),
        (b'{"age": ' + b"9" * 5000 + b"}", "not valid JSON: an integer with more than 4300 digits"),
    ],
    ids=["control character", "huge integer"],
)
def test_bad_json_reads_the_same_from_the_cli_and_the_api(tmp_path, body, says):
    """Not "... character at at line ...", never Python's hint to call sys.set_int_max_str_digits()."""
    from cds.apps.http.app import ApiError, _json_body

    path = tmp_path / "p.json"
    path.write_bytes(body)
    result = runner.invoke(app, ["evaluate", str(path), "--rules", str(RULES)])
    assert result.exit_code == 2 and result.stderr == f"error: invalid patient profile: (file): {says}\n"
    with pytest.raises(ApiError) as raised:
        _json_body(body)
    assert raised.value.status == 422 and raised.value.message == f"(body): {says}"
    assert "at at" not in raised.value.message and "set_int_max_str_digits" not in raised.value.message


# a JSON key with an escape sequence and a bidi override, as a client or an export file writes it
HOSTILE_KEY = "\x1b[31m\u202e"
HOSTILE_KEY_ESCAPED = "\\x1b[31m\\u202e"


def test_a_hostile_key_in_a_cases_export_is_escaped(tmp_path):
    """In the InputError itself (what a log or a caller of cds.store sees), not only on the CLI's stderr."""
    import io

    from cds.errors import InputError
    from cds.store.exchange import read_lines

    line = json.dumps({"format": "cds-cases/2", HOSTILE_KEY: 1}) + "\n"
    with pytest.raises(InputError) as caught:
        read_lines(io.BytesIO(line.encode()), "export.jsonl")
    assert not [c for c in RAW if c in str(caught.value)], repr(str(caught.value))
    assert f"  line 1: {HOSTILE_KEY_ESCAPED}: not a field of a cases export" in str(caught.value).splitlines()
    export = tmp_path / "export.jsonl"
    export.write_text(line)
    done = runner.invoke(app, ["cases", "import", str(export), "--db", str(tmp_path / "cases.db")])
    assert done.exit_code == 2 and f"line 1: {HOSTILE_KEY_ESCAPED}: not a field" in done.stderr, done.stderr


def test_a_hostile_key_in_a_service_body_error_is_escaped():
    """The HTTP service's {"error", "field"} for a request body. No model the service has today puts a
    client's key into an error's location (its hook models allow extra keys), so the formatter is tried
    on an error that does."""
    from pydantic import TypeAdapter, ValidationError

    from cds.apps.http.hooks import first_problem

    with pytest.raises(ValidationError) as caught:
        TypeAdapter(dict[str, list[int]]).validate_python({HOSTILE_KEY: ["x"]}, strict=True)
    field, message = first_problem(caught.value)
    assert field == f"{HOSTILE_KEY_ESCAPED}[0]"
    assert message == f"{HOSTILE_KEY_ESCAPED}[0]: Input should be a valid integer"


def test_a_hostile_name_in_a_service_query_error_is_escaped():
    """The same for FastAPI's validation of a query parameter (the service's names are fixed today)."""
    from fastapi.exceptions import RequestValidationError

    from cds.apps.http.app import request_problem

    exc = RequestValidationError([{"type": "missing", "loc": ("query", HOSTILE_KEY), "msg": "Field required", "input": None}])
    assert request_problem(exc) == (HOSTILE_KEY_ESCAPED, f"{HOSTILE_KEY_ESCAPED}: Field required")
