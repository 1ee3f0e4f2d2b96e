"""Bad input ends with exit code 2, one clear message naming the field, no traceback, no report."""

from __future__ import annotations

import json

import pytest
from conftest import RULES, load_case
from typer.testing import CliRunner

from cds.apps.cli import app

runner = CliRunner()


def run(tmp_path, content: str | bytes, *extra):
    path = tmp_path / "profile.json"
    if isinstance(content, bytes):
        path.write_bytes(content)
    else:
        path.write_text(content, encoding="utf-8")
    out = tmp_path / "report.md"
    result = runner.invoke(app, ["evaluate", str(path), "--rules", str(RULES), "--output", str(out), *extra])
    return result, out


def base() -> dict:
    return load_case("fit_tcr_bcma_naive")


def mutate(fn) -> str:
    data = base()
    fn(data)
    return json.dumps(data)


CASES = {
    "malformed json": ("{not json", "(file)", "not valid JSON"),
    "empty file": ("", "(file)", "empty"),
    "top-level list": ("[1, 2]", "(profile)", "must be a JSON object"),
    "top-level string": ('"hello"', "(profile)", "must be a JSON object"),
    "missing patient_id": (mutate(lambda d: d.pop("patient_id")), "patient_id", "required field is missing"),
    "missing prior_lines": (mutate(lambda d: d.pop("prior_lines")), "prior_lines", "required field is missing"),
    "age as string": (mutate(lambda d: d.update(age="40")), "age", "expected an integer"),
    "dialysis as string": (mutate(lambda d: d.update(dialysis="true")), "dialysis", "expected true or false"),
    "dialysis as 1": (mutate(lambda d: d.update(dialysis=1)), "dialysis", "expected true or false"),
    "ecog out of range": (mutate(lambda d: d.update(ecog=5)), "ecog", "out of range"),
    "negative creatinine clearance": (
        mutate(lambda d: d.update(creatinine_clearance_ml_min=-3)),
        "creatinine_clearance_ml_min",
        "out of range",
    ),
    "unknown frailty": (mutate(lambda d: d.update(frailty="robust")), "frailty", "is not one of"),
    "unknown cytogenetics": (mutate(lambda d: d.update(cytogenetics=["t(8;14)"])), "cytogenetics[0]", "is not one of"),
    "extra key": (mutate(lambda d: d.update(favourite_colour="blue")), "favourite_colour", "unknown field"),
    "unknown lab": (mutate(lambda d: d["labs"].update(ldh=300)), "labs.ldh", "unknown field"),
    "unknown drug": (
        mutate(lambda d: d["prior_lines"][0]["agents"].__setitem__(1, "lenalidomid")),
        "prior_lines[0].agents[1]",
        "did you mean lenalidomide",
    ),
    "regimen label as agent": (
        mutate(lambda d: d["prior_lines"][1].update(agents=["KRd"], refractory_to=[])),
        "prior_lines[1].agents[0]",
        "regimen label, not an agent",
    ),
    "refractory_to not in line": (
        mutate(lambda d: d["prior_lines"][1]["refractory_to"].append("pomalidomide")),
        "prior_lines[1].refractory_to[2]",
        "not one of this line's agents",
    ),
    "blank agent": (
        mutate(lambda d: d["prior_lines"][0]["agents"].__setitem__(1, "  ")),
        "prior_lines[0].agents[1]",
        "is blank: write the drug's name",
    ),
    "blank investigational agent": (
        mutate(lambda d: d["prior_lines"][0]["agents"].append({"investigational": "\u3000", "class": "imid"})),
        "prior_lines[0].agents[4].investigational",
        "is blank: write the trial agent's name or code",
    ),
    "empty prior_lines": (mutate(lambda d: d.update(prior_lines=[])), "prior_lines", "out of scope"),
    "NaN lab": (
        '{"patient_id": "x", "age": 60, "ecog": 1, "labs": {"crp_mg_l": NaN}, "prior_lines": []}',
        "labs.crp_mg_l",
        "finite",
    ),
    "not utf-8": (b"\xff\xfe\x00{", "(file)", "UTF-8"),
}


@pytest.mark.parametrize("label", sorted(CASES))
def test_bad_input(tmp_path, label):
    content, field, problem = CASES[label]
    result, out = run(tmp_path, content)
    assert result.exit_code == 2, (result.exit_code, result.stdout, result.stderr)
    assert "Traceback" not in result.stderr and "Traceback" not in result.stdout
    assert result.stdout == ""
    assert not out.exists(), "no partial report may be written"
    message = result.stderr.strip()
    assert message.startswith("error: invalid patient profile: ")
    assert len(message.splitlines()) == 1
    assert field in message, message
    assert problem in message, message


def test_missing_file(tmp_path):
    result = runner.invoke(app, ["evaluate", str(tmp_path / "nope.json"), "--rules", str(RULES)])
    assert result.exit_code == 2
    assert "no such file" in result.stderr


def test_bad_format_is_usage_error(tmp_path):
    result, _ = run(tmp_path, json.dumps(base()), "--format", "pdf")
    assert result.exit_code == 2


def test_output_into_missing_folder(tmp_path):
    path = tmp_path / "p.json"
    path.write_text(json.dumps(base()))
    result = runner.invoke(app, ["evaluate", str(path), "--rules", str(RULES), "-o", str(tmp_path / "no" / "r.md")])
    assert result.exit_code == 2
    assert "does not exist" in result.stderr


def test_huge_integer_is_an_input_error(tmp_path):
    result, out = run(tmp_path, '{"patient_id": "x", "age": ' + "9" * 5000 + ', "ecog": 1, "prior_lines": []}')
    assert result.exit_code == 2 and "Traceback" not in result.stderr and not out.exists()
    assert "not valid JSON" in result.stderr


@pytest.mark.parametrize("field, value", [("creatinine_clearance_ml_min", 1e16), ("labs.crp_mg_l", 2e6)])
def test_implausibly_large_numbers_are_out_of_range(tmp_path, field, value):
    data = base()
    if field.startswith("labs."):
        data["labs"][field[5:]] = value
    else:
        data[field] = value
    result, _out = run(tmp_path, json.dumps(data))
    assert result.exit_code == 2 and field in result.stderr and "out of range" in result.stderr


def test_a_key_given_twice_is_an_error_not_last_one_wins(tmp_path):
    text = json.dumps(base())[:-1] + ', "age": 19}'
    result, out = run(tmp_path, text)
    assert result.exit_code == 2 and not out.exists()
    assert "'age' appears twice" in result.stderr


@pytest.mark.parametrize("depth", [40, 970, 974, 5000])
def test_deeply_nested_values_are_input_errors(tmp_path, depth):
    text = '{"patient_id": "x", "age": ' + "[" * depth + "]" * depth + ', "ecog": 1, "prior_lines": []}'
    result, _out = run(tmp_path, text)
    assert result.exit_code == 2, result.stderr
    assert "nested too deeply" in result.stderr and "Traceback" not in result.stderr


def test_a_nested_value_in_a_typed_field_is_described_briefly(tmp_path):
    data = base()
    data["age"] = [[[1]]]
    result, _ = run(tmp_path, json.dumps(data))
    assert result.exit_code == 2 and "age: expected an integer, got list with 1 item(s)" in result.stderr


@pytest.mark.parametrize(
    ("text", "field"),
    [
        ('{"labs": {"crp_mg_l": NaN}}', "labs.crp_mg_l"),
        ('{"age": 60, "cytogenetics": ["t(4;14)", Infinity]}', "cytogenetics[1]"),
        ('{"prior_lines": [{"agents": []}, {"x": -Infinity}]}', "prior_lines[1].x"),
        ('{"labs": {"igg_g_l": 1e999}}', "labs.igg_g_l"),  # a number too large for a float
        ('{"labs": {"igg_g_l": -1.5E+400}}', "labs.igg_g_l"),
        ("NaN", "(profile)"),
    ],
)
def test_a_number_that_is_not_finite_is_named_by_its_field(text, field):
    """decode_json: the parser refuses NaN, Infinity and numbers too large for a float; the walk over the
    decoded value then names the field, as it did when it ran on every profile."""
    from cds.api import decode_json
    from cds.errors import ProfileError

    with pytest.raises(ProfileError) as info:
        decode_json(text)
    assert (info.value.field, info.value.problem) == (field, "must be a finite number")
    assert decode_json('{"labs": {"igg_g_l": 1.5e300, "crp_mg_l": -0.0}}') == {"labs": {"igg_g_l": 1.5e300, "crp_mg_l": -0.0}}


@pytest.mark.parametrize("depth", [31, 32, 33, 34])
def test_nesting_at_the_depth_limit(depth):
    """The structure walk is skipped for a text with at most MAX_DEPTH brackets: it cannot nest deeper."""
    from cds.api import decode_json
    from cds.errors import ProfileError
    from cds.model.profile import MAX_DEPTH

    assert MAX_DEPTH == 32
    text = "[" * depth + "1" + "]" * depth  # the innermost list is at depth - 1
    if depth - 1 < MAX_DEPTH:
        assert decode_json(text) is not None
    else:
        with pytest.raises(ProfileError, match="nested too deeply"):
            decode_json(text)


def test_every_problem_of_a_first_draft_in_one_pass(tmp_path):
    """A new user's first draft (notes/newuser.md): the regimen label in refractory_to is reported in the same
    pass as the broken agents list, naming the label's agents, and "M" for sex gets a suggestion."""
    draft = {
        "patient_id": "clinic-72M",
        "age": 72,
        "sex": "M",
        "ecog": 1,
        "prior_lines": [
            {"regimen": "VRd", "agents": ["bortezomib", "lenalidamide", "dexamethasone"], "refractory_to": ["len"]},
            {"regimen": "DPd", "agents": ["daratumamab", "pomalidomide", "dex"], "refractory_to": ["DPd", "pomalidomid"]},
        ],
    }
    path = tmp_path / "draft.json"
    path.write_text(json.dumps(draft), encoding="utf-8")
    result = runner.invoke(app, ["validate", str(path), "--rules", str(RULES)])
    assert result.exit_code == 1, result.output
    out = result.output
    assert "prior_lines[1].agents[0]: unknown drug 'daratumamab'" in out
    assert (
        "prior_lines[1].refractory_to[0]: 'DPd' is a regimen label, not an agent: name the agents of it the line was "
        "refractory to (DPd is daratumumab, pomalidomide, dexamethasone)" in out
    )
    assert "prior_lines[1].refractory_to[1]: unknown drug 'pomalidomid'; did you mean pomalidomide" in out
    assert "prior_lines[0].refractory_to" not in out  # 'len' names lenalidamide once that typo is fixed
    assert "sex: \"M\" is not one of 'female', 'male' or 'other'; did you mean 'male'?" in out
