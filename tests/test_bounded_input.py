"""Hostile input is bounded: sizes, depths and YAML anchors (issue 10, defects 7 and 8).

Anything that crashed the interpreter before the fix (PyYAML's C composer on deep nesting)
runs in a subprocess, so that a regression fails this test instead of killing pytest. The
timeouts only bound a hang; the commands finish in about a second.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys

import pytest
from conftest import PROFILES, ROOT, RULES

from cds import datafile
from cds.errors import ProfileError, ReadError

CASE = PROFILES / "frail_ecog3.json"
SITE_HEADER = "name: x\ndescription: y\ncar_t_delivered_on_site: true\ncar_t_referral_possible: true\n"


def cds(*args: str, timeout: float = 120) -> subprocess.CompletedProcess:
    """`python -m cds ARGS` in its own process group; a hang past `timeout` kills the group and fails."""
    env = {**os.environ, "PYTHONDONTWRITEBYTECODE": "1"}
    env.pop("CDS_DEBUG", None)
    proc = subprocess.Popen(
        [sys.executable, "-m", "cds", *args],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    try:
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.communicate()
        raise AssertionError(f"cds {' '.join(args)} did not finish in {timeout} s") from None
    return subprocess.CompletedProcess(proc.args, proc.returncode, out, err)


def one_error_line(result: subprocess.CompletedProcess, code: int = 2) -> str:
    assert result.returncode == code, (result.returncode, result.stderr[-2000:])
    lines = result.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr[-2000:]
    return lines[0]


def evaluate_with_site(site) -> subprocess.CompletedProcess:
    return cds("evaluate", str(CASE), "--rules", str(RULES), "--format", "json", "--site", str(site))


# --------------------------------------------------------------------------- YAML: depth, anchors, aliases


def test_deeply_nested_site_file_is_exit_2_not_a_segfault(tmp_path):
    site = tmp_path / "site.yaml"
    site.write_text(SITE_HEADER + "availability: " + "[" * 40_000 + "]" * 40_000 + "\n", encoding="utf-8")
    line = one_error_line(evaluate_with_site(site))
    assert f"invalid site file {site}: " in line
    assert f"nested more than {datafile.YAML_DEPTH_LIMIT} levels deep (line 5, column " in line


def rules_copy(tmp_path):
    folder = tmp_path / "rules"
    shutil.copytree(RULES, folder)
    return folder


def test_deeply_nested_rule_file_is_exit_2_from_evaluate_and_rules_check(tmp_path):
    folder = rules_copy(tmp_path)
    (folder / "cautions.yaml").write_text("- " * 100_000 + "x\n", encoding="utf-8")  # block style this time
    line = one_error_line(cds("evaluate", str(CASE), "--rules", str(folder)))
    assert line.startswith("error: the rule set is invalid: cautions.yaml: nested more than 64 levels deep")
    check = cds("rules", "check", "--rules", str(folder), "--profiles", str(PROFILES))
    assert check.returncode == 2, check.stderr
    assert any(p.startswith("cautions.yaml: nested more than 64 levels") for p in check.stdout.splitlines())


def test_an_alias_bomb_in_a_rule_is_refused_at_once(tmp_path):
    folder = rules_copy(tmp_path)
    path = folder / "cautions.yaml"
    text = path.read_text(encoding="utf-8")
    # nine levels of nine aliases each: 387 million leaves if expanded
    bomb = "".join(f"x{i}: &a{i} [" + ", ".join([f"*a{i - 1}"] * 9) + "]\n" for i in range(1, 10))
    path.write_text("a0: &a0 [ecog >= 3]\n" + bomb + text, encoding="utf-8")
    line = one_error_line(cds("evaluate", str(CASE), "--rules", str(folder)), 2)
    assert "cautions.yaml: anchors (&a0) are not allowed (line 1, column 5)" in line


@pytest.mark.parametrize(
    "text, problem",
    [
        ("a: &x 1\nb: *x\n", "anchors (&x) are not allowed (line 1, column 4)"),
        ("a: *x\n", "aliases (*x) are not allowed (line 1, column 4)"),
        ("a: [" * 65 + "]" * 65 + "\n", "nested more than 64 levels deep"),
        ("a: 1\na: 2\n", "found duplicate key 'a' (line 2, column 1)"),
        (b"a: \xff\n", "not UTF-8 text (byte 3)"),
        ("a: [1, 2\n", "not valid YAML: while parsing a flow sequence, did not find expected ',' or ']' (line 2, column 1)"),
    ],
)
def test_the_yaml_reader_refuses_what_no_cds_file_needs(text, problem):
    with pytest.raises(ReadError) as info:
        datafile.parse_yaml(text)
    assert problem in info.value.problem
    assert "\n" not in info.value.problem


def test_the_yaml_reader_reads_plain_data():
    assert datafile.parse_yaml("a: [1, 2.5, true, null, x]\nb: {c: d}\n") == {"a": [1, 2.5, True, None, "x"], "b": {"c": "d"}}
    deepest = datafile.parse_yaml("[" * 64 + "]" * 64)  # exactly at the limit
    for _ in range(63):
        (deepest,) = deepest
    assert deepest == []


# --------------------------------------------------------------------------- sizes


def test_site_from_dev_zero_fails_fast_naming_the_limit():
    line = one_error_line(evaluate_with_site("/dev/zero"), 2)
    assert line == "error: site file /dev/zero: larger than 1 MiB, the limit for a site file"


def test_oversized_rule_file_names_the_limit(tmp_path):
    folder = rules_copy(tmp_path)
    with (folder / "cautions.yaml").open("a", encoding="utf-8") as fh:
        fh.write("#" * (datafile.RULE_FILE_LIMIT + 1) + "\n")
    line = one_error_line(cds("rules", "list", "--rules", str(folder)))
    assert line == "error: the rule set is invalid: cautions.yaml: larger than 4 MiB, the limit for a rule-folder file"


def test_read_capped_reads_a_pipe_only_up_to_the_limit():
    with pytest.raises(ReadError) as info:
        datafile.read_capped("/dev/zero", 1024, "a test file")
    assert info.value.problem == "larger than 1 KiB, the limit for a test file"
    assert datafile.read_capped(CASE, datafile.PROFILE_LIMIT, "a patient profile") == CASE.read_bytes()


# --------------------------------------------------------------------------- profiles


def test_a_profile_from_dev_zero_fails_fast_naming_the_limit():
    line = one_error_line(cds("evaluate", "/dev/zero", "--rules", str(RULES)))
    assert line == "error: invalid patient profile: (file): /dev/zero: larger than 1 MiB, the limit for a patient profile"


def test_an_oversized_profile_file_names_the_limit(tmp_path):
    path = tmp_path / "big.json"
    data = json.loads(CASE.read_text(encoding="utf-8"))
    data["notes"] = "x" * datafile.PROFILE_LIMIT
    path.write_text(json.dumps(data), encoding="utf-8")
    line = one_error_line(cds("evaluate", str(path), "--rules", str(RULES)))
    assert line.endswith("larger than 1 MiB, the limit for a patient profile")


@pytest.mark.parametrize(
    "field, value",
    [
        ("cytogenetics", ["del(17p)"] * 20_000),  # under the size limit, but no profile lists 20,000 results
        ("cytogenetics", ["xx"] * 20_000),  # each would need a suggestion: refused before any
        ("labs", {f"lab_{i}": 1 for i in range(5_000)}),
        ("prior_lines", [{"agents": ["lenalidomide"]}] * 2_000),
    ],
    ids=["valid-items", "bad-items", "many-keys", "many-lines"],
)
def test_a_list_or_object_with_absurdly_many_items_is_one_problem(evaluator, field, value):
    from cds.model.profile import MAX_ITEMS, parse_profile

    data = json.loads(CASE.read_text(encoding="utf-8"))
    data[field] = value
    with pytest.raises(ProfileError) as info:
        parse_profile(data, evaluator.vocabulary)
    assert info.value.problems == ((field, f"has {len(value):,} items; a profile has at most {MAX_ITEMS} in any list or object"),)


def test_at_most_a_few_problems_are_spelled_out(evaluator):
    from cds.model.profile import parse_profile

    data = json.loads(CASE.read_text(encoding="utf-8"))
    data["cytogenetics"] = [f"bad{i}" for i in range(90)]
    with pytest.raises(ProfileError) as info:
        parse_profile(data, evaluator.vocabulary)
    lines = str(info.value).splitlines()
    assert len(info.value.problems) > 50 and len(lines) <= 22
    assert lines[-1].strip().startswith("... and ") and lines[-1].strip().endswith(" more problems")


def test_negative_zero_is_zero(evaluator):
    data = json.loads(CASE.read_text(encoding="utf-8"))
    zero, negative = dict(data, creatinine_clearance_ml_min=0.0), dict(data, creatinine_clearance_ml_min=-0.0)
    negative["labs"] = {**(data.get("labs") or {}), "crp_mg_l": -0.0}
    zero["labs"] = {**(data.get("labs") or {}), "crp_mg_l": 0}
    a, b = evaluator.parse(zero), evaluator.parse(negative)
    assert str(b.creatinine_clearance_ml_min) == "0.0" and str(b.labs.crp_mg_l) == "0.0"
    from cds.decide.pipeline import input_hash

    assert input_hash(a) == input_hash(b)


def test_json_problems_read_well(tmp_path):
    bad = tmp_path / "p.json"
    bad.write_text('{"patient_id": "a\x01b"}', encoding="utf-8")
    line = one_error_line(cds("evaluate", str(bad), "--rules", str(RULES)))
    assert line == "error: invalid patient profile: (file): not valid JSON: Invalid control character at line 1, column 18"
    bad.write_text('{"patient_id": "x", "age": ' + "9" * 5000 + "}", encoding="utf-8")
    line = one_error_line(cds("evaluate", str(bad), "--rules", str(RULES)))
    assert "set_int_max_str_digits" not in line and "an integer with more than 4300 digits" in line


def test_a_timestamp_out_of_range_is_bad_input():
    line = one_error_line(cds("evaluate", str(CASE), "--rules", str(RULES), "--timestamp", "9999-12-31T23:59:59-01:00"))
    assert line.startswith("error: --timestamp: '9999-12-31T23:59:59-01:00' is out of range")
