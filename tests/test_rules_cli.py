"""`cds rules list | show | check`: every kind of rule problem is caught, all at once, one line each.

The check is proved on small synthetic rule folders (the real catalogues and
evidence, with a tiny rule file written here), so these tests do not depend on
the state of the shipped rules.
"""

from __future__ import annotations

import datetime
import shutil

import pytest
import yaml
from conftest import PROFILES, RULES
from typer.testing import CliRunner

from cds import check_rules
from cds.apps.cli import app
from cds.knowledge.check import impossibility
from cds.knowledge.evidence import load_registry
from cds.knowledge.ruleset import parse_condition

runner = CliRunner()


@pytest.fixture(scope="module")
def evidence_ids() -> list[str]:
    return list(load_registry(RULES / "evidence").entries)


def tiny_rules(evidence_ids: list[str]) -> list[dict]:
    return [
        {
            "id": "TINY-CART-001",
            "title": "ECOG 3-4: not fit enough for CAR-T",
            "kind": "exclude",
            "options": ["bcma_car_t"],
            "when": "ecog >= 3",
            "rationale": "A test rule with a boundary pair of fixtures.",
            "cites": [evidence_ids[0]],
            "fixtures": {
                "fires": [{"profile": "tcr_fit_3_lines", "set": {"ecog": 3}}],
                "silent": [{"profile": "tcr_fit_3_lines", "set": {"ecog": 2}}],
            },
        },
        {
            "id": "TINY-TRIAL-001",
            "title": "Clinical trials are always worth considering",
            "kind": "prefer",
            "weight": 10,
            "options": ["clinical_trial"],
            "rationale": "An unconditional test rule: it needs only fires fixtures.",
            "cites": [evidence_ids[1]],
            "fixtures": {"fires": [{"profile": "tcr_3_lines_ecog3_frail_81y"}]},
        },
    ]


@pytest.fixture
def folder(tmp_path, evidence_ids):
    """A valid rule folder: real catalogues and evidence, one small rule file."""
    dst = tmp_path / "rules"
    shutil.copytree(RULES / "catalog", dst / "catalog")
    shutil.copytree(RULES / "evidence", dst / "evidence")
    shutil.copytree(RULES / "tests" / "profiles", dst / "tests" / "profiles")
    write(dst / "tiny.yaml", tiny_rules(evidence_ids))
    return dst


class _NoAliases(yaml.SafeDumper):
    """Rule files have no anchors or aliases (the reader refuses them): write shared objects out in full."""

    def ignore_aliases(self, data):
        return True


def dump(data) -> str:
    return yaml.dump(data, Dumper=_NoAliases, sort_keys=False)


def write(path, rules, family="tiny", code="TINY"):
    """The rule file, and its rules' `fixtures` (written here inline, for short mutations) in tests/<file>."""
    fixtures = {r["id"]: r["fixtures"] for r in rules if "fixtures" in r and isinstance(r.get("id"), str)}
    rules = [{k: v for k, v in r.items() if k != "fixtures"} for r in rules]
    path.write_text(
        dump({"family": family, "code": code, "description": "test rules", "last_reviewed": "2026-01-01", "rules": rules}),
        encoding="utf-8",
    )
    (path.parent / "tests").mkdir(exist_ok=True)
    (path.parent / "tests" / path.name).write_text(dump({"rules": path.name, "fixtures": fixtures}), encoding="utf-8")


def edit(folder, fn):
    path = folder / "tiny.yaml"
    data = yaml.safe_load(path.read_text())
    fixtures = yaml.safe_load((folder / "tests" / path.name).read_text())["fixtures"]
    for rule in data["rules"]:
        if rule["id"] in fixtures:
            rule["fixtures"] = fixtures[rule["id"]]
    fn(data["rules"], "TINY")
    write(path, data["rules"])


def check(folder, fixtures=False):
    return check_rules(folder, PROFILES, run_fixtures=fixtures)


def test_the_synthetic_folder_is_clean(folder):
    report = check(folder, fixtures=True)
    assert report.problems == []
    assert report.fixtures_run == 3
    assert report.warnings and all("cited by no rule" in w for w in report.warnings)


def test_the_shipped_rules_pass_the_check():
    report = check_rules(RULES, PROFILES)
    assert report.problems == [], "\n".join(report.problems)


def _set(i, **kw):
    return lambda rules, code: rules[i].update(kw)


def _fixtures(**kw):
    return _set(0, fixtures=kw)


# label -> (mutation of the tiny rules, expected start of a problem line; {f} = file, {c} = family code)
MUTATIONS = {
    "duplicate ID": (
        lambda rules, code: rules[1].update(id=f"{code}-CART-001"),
        "{f} [{c}-CART-001]: duplicate rule ID",
    ),
    "unknown option": (_set(0, options=["bcma_cart"]), "{f} [{c}-CART-001] options: unknown option 'bcma_cart'"),
    "unknown field": (_set(0, when="ecgo >= 3"), "{f} [{c}-CART-001] when: unknown fact 'ecgo'"),
    "unknown operator": (_set(0, when="ecog => 3"), "{f} [{c}-CART-001] when: unknown operator '=>'"),
    "unknown operator (>==)": (_set(0, when="ecog >== 3"), "{f} [{c}-CART-001] when: unknown operator '>=='"),
    "unknown word operator": (_set(0, when="ecog equals 3"), "{f} [{c}-CART-001] when: unknown operator 'equals'"),
    "unknown evidence": (
        _set(0, cites=["NO-SUCH.S000.TEXT"]),
        "{f} [{c}-CART-001] cites: unknown evidence ID 'NO-SUCH.S000.TEXT'",
    ),
    "no citations": (_set(0, cites=[]), "{f} [{c}-CART-001] cites:"),
    "citations missing": (lambda rules, code: rules[0].pop("cites"), "{f} [{c}-CART-001] cites: Field required"),
    "contradiction": (
        _set(0, when={"all": ["ecog >= 3", "ecog <= 1"]}),
        "{f} [{c}-CART-001] when: can never hold: 'ecog >= 3' and 'ecog <= 1' contradict",
    ),
    "outside range": (_set(0, when="ecog >= 5"), "{f} [{c}-CART-001] when: can never hold: 'ecog >= 5' is outside"),
    "enum outside values": (
        _set(0, when={"all": ["frailty != fit", "frailty in [fit]"]}),
        "{f} [{c}-CART-001] when: can never hold",
    ),
    "every any branch impossible": (
        _set(0, when={"any": [{"all": ["ecog >= 3", "ecog <= 1"]}, "prior_line_count == 0"]}),
        "{f} [{c}-CART-001] when: can never hold: no branch can hold",
    ),
    "unknown and compared": (
        _set(0, when={"all": ["frailty is unknown", "frailty == frail"]}),
        "{f} [{c}-CART-001] when: can never hold: 'frailty is unknown' and 'frailty == frail' contradict",
    ),
    "no silent fixture": (
        lambda rules, code: rules[0]["fixtures"].pop("silent"),
        "{f} [{c}-CART-001] fixtures: no 'silent' fixture",
    ),
    "no fixtures at all": (lambda rules, code: rules[0].pop("fixtures"), "{f} [{c}-CART-001] fixtures: no 'fires' fixture"),
    "unconditional without fires": (
        lambda rules, code: rules[1].pop("fixtures"),
        "{f} [{c}-TRIAL-001] fixtures: no 'fires' fixture",
    ),
    "schema error": (_set(0, colour="red"), "{f} [{c}-CART-001] colour: Extra inputs are not permitted"),
    "review date in the future": (
        _set(0, last_reviewed="2999-01-01"),
        "{f} [{c}-CART-001] last_reviewed: 2999-01-01 is in the future",
    ),
    "review date not a date": (_set(0, last_reviewed="2026-13-01"), "{f} [{c}-CART-001] last_reviewed:"),
    "review date unquoted": (_set(0, last_reviewed=datetime.date(2026, 1, 1)), "{f} [{c}-CART-001] last_reviewed:"),
    "wrong family code": (_set(1, id="SEQ-TRIAL-001"), "{f} [SEQ-TRIAL-001]: rule ID must start with the family code {c}-"),
    "fires fixture does not fire": (
        _fixtures(fires=[{"profile": "tcr_fit_3_lines", "set": {"ecog": 2}}], silent=[{"profile": "tcr_fit_3_lines"}]),
        '{f} [{c}-CART-001] fixtures: fires[0] (tcr_fit_3_lines {{"ecog": 2}}): did not fire',
    ),
    "silent fixture fires": (
        _fixtures(
            fires=[{"profile": "tcr_3_lines_ecog3_frail_81y"}], silent=[{"profile": "tcr_fit_3_lines", "set": {"ecog": 4}}]
        ),
        '{f} [{c}-CART-001] fixtures: silent[0] (tcr_fit_3_lines {{"ecog": 4}}): fired',
    ),
    "fixture case missing": (
        _fixtures(fires=[{"profile": "no_such_case"}], silent=[{"profile": "tcr_fit_3_lines"}]),
        "{f} [{c}-CART-001] fixtures: fires[0] (no_such_case): no base profile tests/profiles/no_such_case.json",
    ),
    "fixture profile invalid": (
        _fixtures(
            fires=[{"profile": "tcr_3_lines_ecog3_frail_81y", "set": {"ecog": 9}}], silent=[{"profile": "tcr_fit_3_lines"}]
        ),
        '{f} [{c}-CART-001] fixtures: fires[0] (tcr_3_lines_ecog3_frail_81y {{"ecog": 9}}): not a valid profile',
    ),
}
POSSIBLE_ANY = _set(0, when={"any": [{"all": ["ecog >= 3", "ecog <= 1"]}, "ecog >= 3"]})


def _code(n: int) -> str:
    letters = "ABCDEFGHIJKLMNOPQRSTUVWXYZ"
    return "M" + letters[n // 26] + letters[n % 26]


@pytest.fixture(scope="module")
def mutated(tmp_path_factory, evidence_ids):
    """One folder with every mutation in its own rule file (one check, one engine compilation)."""
    dst = tmp_path_factory.mktemp("mutated") / "rules"
    shutil.copytree(RULES / "catalog", dst / "catalog")
    shutil.copytree(RULES / "evidence", dst / "evidence")
    shutil.copytree(RULES / "tests" / "profiles", dst / "tests" / "profiles")
    where = {}
    for n, label in enumerate([*sorted(MUTATIONS), "possible any"]):
        code = _code(n)
        rules = tiny_rules(evidence_ids)
        for r in rules:
            r["id"] = r["id"].replace("TINY-", f"{code}-")
        (POSSIBLE_ANY if label == "possible any" else MUTATIONS[label][0])(rules, code)
        name = f"{code.lower()}.yaml"
        write(dst / name, rules, family=code.lower(), code=code)
        where[label] = (name, code)
    return where, check(dst, fixtures=True).problems


@pytest.mark.parametrize("label", sorted(MUTATIONS))
def test_each_problem_is_reported_with_file_and_rule(mutated, label):
    where, problems = mutated
    name, code = where[label]
    expected = MUTATIONS[label][1].format(f=name, c=code)
    assert any(p.startswith(expected) for p in problems), [p for p in problems if p.startswith(name)]
    assert len(problems) == len(set(problems)), "a problem is reported twice"


def test_nothing_else_is_reported(mutated):
    """Only the mutated rules have problems: the untouched rule of each file stays clean."""
    where, problems = mutated
    for label, (name, _code) in where.items():
        mine = [p for p in problems if p.startswith(name + " ")]
        if label == "possible any":
            assert mine == [], mine
        else:
            assert mine, label


def test_every_problem_is_reported_at_once(folder, evidence_ids):
    """load_ruleset stops at a file whose schema fails and at a duplicate; the check goes on."""

    def many(rules, code):
        rules[0]["colour"] = "red"  # schema error in rule 1 ...
        rules[1]["options"] = ["nope"]  # ... must not hide rule 2's problems
        rules[1]["cites"] = ["NO-SUCH.S000.TEXT"]
        rules.append({**rules[1], "id": "TINY-TRIAL-001", "options": ["clinical_trial"], "cites": [evidence_ids[0]]})

    edit(folder, many)
    write(folder / "other.yaml", [{**tiny_rules(evidence_ids)[0], "id": "OTHR-CART-001", "when": "ecog >= 7"}], "other", "OTHR")
    (folder / "broken.yaml").write_text("rules: [unclosed\n")
    problems = check(folder, fixtures=True).problems
    for expected in (
        "tiny.yaml [TINY-CART-001] colour",
        "tiny.yaml [TINY-TRIAL-001] options: unknown option 'nope'",
        "tiny.yaml [TINY-TRIAL-001] cites: unknown evidence ID 'NO-SUCH.S000.TEXT'",
        "tiny.yaml [TINY-TRIAL-001]: duplicate rule ID",
        "other.yaml [OTHR-CART-001] when: can never hold",
        "broken.yaml: not valid YAML",
    ):
        assert any(p.startswith(expected) for p in problems), (expected, problems)


def test_the_loader_and_the_check_report_the_same_problems(folder, evidence_ids):
    """One validator: load_ruleset raises with exactly the problems `cds rules check` prints (without the fixtures')."""
    from cds.api import load_ruleset
    from cds.errors import RuleSetError

    edit(folder, lambda rules, code: (rules[0].update(options=["nope"], when="ecog >= 7"), rules[1].update(colour="red")))
    (folder / "broken.yaml").write_text("rules: [unclosed\n")
    with pytest.raises(RuleSetError) as raised:
        load_ruleset(folder)
    assert len(raised.value.problems) >= 4, raised.value.problems
    assert raised.value.problems == check(folder).problems


# literal as written -> what the problem must tell the author to write instead
YAML_1_1_LITERALS = {
    "dialysis == off": ("off", "write false"),
    "dialysis == on": ("on", "write true"),
    "dialysis == yes": ("yes", "write true"),
    "dialysis == no": ("no", "write false"),
    "ecog == 0x1": ("0x1", "write 1"),
    "prior_line_count == 010": ("010", "write 8"),
    "crp_mg_l < 1_000": ("1_000", "write 1000"),
    "crp_mg_l < .inf": (".inf", "write a finite number"),
    "crp_mg_l < 1e3": ("1e3", "write 1000.0"),
    "crp_mg_l < 1.0e2": ("1.0e2", "write 100.0"),
    "frailty in [fit, off]": ("off", "write false"),
}


@pytest.mark.parametrize("when", YAML_1_1_LITERALS)
def test_a_literal_yaml_1_1_reads_otherwise_than_yaml_1_2_is_refused(folder, when):
    """`off`, `0x1`, `010`, ... in a condition: the loader (YAML 1.1) would read false, 1, 8, ... silently."""
    from cds.api import load_ruleset
    from cds.errors import RuleSetError

    literal, fix = YAML_1_1_LITERALS[when]
    edit(folder, _set(0, when=when))
    problems = [p for p in check(folder).problems if "YAML 1.1" in p]
    assert len(problems) == 1, check(folder).problems
    (problem,) = problems
    assert problem.startswith("tiny.yaml [TINY-CART-001] when: "), problem
    assert f"{literal!r} in {when!r}" in problem and fix in problem, problem
    with pytest.raises(RuleSetError) as raised:
        load_ruleset(folder)
    assert problem in raised.value.problems


def test_literals_both_yaml_versions_read_alike_pass(folder):
    edit(folder, _set(0, when={"all": ["ecog >= 3", "dialysis == false", "crp_mg_l < 1.0e+2", "frailty in ['fit', frail]"]}))
    assert check(folder).problems == []


# a plain scalar outside a condition: (file, text replaced, its replacement, expected problem line's start, what to write)
YAML_1_1_SCALARS = {
    "a setting's value, octal": (
        "catalog/settings.yaml",
        "value: 30\n",
        "value: 030\n",
        "catalog/settings.yaml (line 6) settings.severe_renal_impairment_crcl_ml_min.value: 030 is the number 24",
        "write 24, or '030' (quoted) for the word",
    ),
    "a fixture's set, hexadecimal": (
        "tests/tiny.yaml",
        "ecog: 3\n",
        "ecog: 0x3\n",
        "tests/tiny.yaml (line 7) fixtures.TINY-CART-001.fires[0].set.ecog: 0x3 is the number 3",
        "write 3, or '0x3' (quoted) for the word",
    ),
    "a fixture's set, yes": (
        "tests/tiny.yaml",
        "ecog: 3\n",
        "ecog: 3\n        dialysis: no\n",
        "tests/tiny.yaml (line 8) fixtures.TINY-CART-001.fires[0].set.dialysis: no is false",
        "write false, or 'no' (quoted) for the word",
    ),
    "a rule's weight, sexagesimal": (
        "tiny.yaml",
        "weight: 10\n",
        "weight: 1:30\n",
        "tiny.yaml (line ",
        "rules[1].weight: 1:30 is the number 90 to the rule loader (YAML 1.1) but the word '1:30' in YAML 1.2",
    ),
    "a key": (
        "tests/tiny.yaml",
        "ecog: 3\n",
        "ecog: 3\n        on: true\n",
        "tests/tiny.yaml (line 8) fixtures.TINY-CART-001.fires[0].set (a key): on is true",
        "write true, or 'on' (quoted) for the word",
    ),
}


@pytest.mark.parametrize("label", YAML_1_1_SCALARS)
def test_a_plain_scalar_yaml_1_1_reads_otherwise_than_yaml_1_2_is_refused_anywhere(folder, label):
    """A setting read as 24 where the reference interpreter (and every YAML 1.2 tool) reads the word '030'; a
    fixture whose ECOG is 3 to the loader only: the check names file, line, key path and what to write."""
    name, old, new, start, fix = YAML_1_1_SCALARS[label]
    path = folder / name
    text = path.read_text(encoding="utf-8")
    assert old in text
    path.write_text(text.replace(old, new, 1), encoding="utf-8")
    problems = [p for p in check(folder).problems if "YAML 1.1" in p]
    assert len(problems) == 1, check(folder).problems
    assert problems[0].startswith(start) and fix in problems[0], problems[0]


def test_quoted_and_yaml_1_2_spellings_pass_the_scalar_check(folder):
    for name, old, new in [
        ("catalog/settings.yaml", "value: 30\n", "value: 30.0\n"),
        ("tests/tiny.yaml", "ecog: 3\n", "ecog: 3\n        dialysis: false\n        frailty: 'no'\n"),
        ("tiny.yaml", "weight: 10\n", "weight: -10\n"),
    ]:
        path = folder / name
        path.write_text(path.read_text(encoding="utf-8").replace(old, new, 1), encoding="utf-8")
    assert [p for p in check(folder).problems if "YAML" in p] == []


def test_impossibility_reasoning():
    def imp(raw):
        return impossibility(parse_condition(raw, "when"))

    assert imp("ecog >= 3") is None
    assert imp({"all": ["prior_line_count > 2", "prior_line_count < 3"]})  # integers: nothing between 2 and 3
    assert imp({"all": ["creatinine_clearance_ml_min > 2", "creatinine_clearance_ml_min < 3"]}) is None  # a real number
    assert imp({"all": ["crp_mg_l >= 3", "crp_mg_l <= 3", "crp_mg_l != 3"]})
    assert imp({"all": ["dialysis == true", "dialysis == false"]})
    assert imp({"all": ["cyto_t11_14 is unknown", "cyto_del17p == true"]})  # cytogenetics are unknown together
    assert imp({"all": ["age is unknown"]})
    assert imp({"all": ["ecog >= 3", {"any": ["ecog <= 1", "frailty == frail"]}]}) is None


# --------------------------------------------------------------------------- the CLI


def test_cli_check_fails_with_one_line_per_problem(folder):
    edit(folder, lambda r, code: (r[0].update(options=["bcma_cart"]), r[1].update(cites=["NO-SUCH.S000.TEXT"])))
    result = runner.invoke(app, ["rules", "check", "--rules", str(folder), "--profiles", str(PROFILES)])
    assert result.exit_code == 2, result.output  # an invalid rule set: exit 2, as from every command
    assert "Traceback" not in result.stdout + result.stderr
    problems = [line for line in result.stdout.splitlines() if not line.startswith("warning: ")]
    assert problems == [
        "tiny.yaml [TINY-CART-001] options: unknown option 'bcma_cart'",
        "tiny.yaml [TINY-TRIAL-001] cites: unknown evidence ID 'NO-SUCH.S000.TEXT'",
    ]
    assert "2 problem(s)" in result.stderr


def test_cli_check_passes_with_warnings_only(folder):
    result = runner.invoke(app, ["rules", "check", "--rules", str(folder), "--profiles", str(PROFILES)])
    assert result.exit_code == 0, result.output
    assert result.stdout.splitlines() and all(line.startswith("warning: ") for line in result.stdout.splitlines())
    assert "0 problem(s)" in result.stderr


def test_cli_check_on_a_missing_folder(tmp_path):
    result = runner.invoke(app, ["rules", "check", "--rules", str(tmp_path / "nope")])
    assert result.exit_code == 2 and "rule folder not found" in result.stdout


def test_cli_list():
    result = runner.invoke(app, ["rules", "list", "--rules", str(RULES)])
    assert result.exit_code == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[0].split() == ["ID", "FAMILY", "KIND", "OPTION", "TITLE"]
    row = next(line for line in lines if line.startswith("ELIG-CART-002 "))
    assert row.split()[1:4] == ["eligibility", "exclude", "bcma_car_t"]


def test_cli_show(ruleset):
    result = runner.invoke(app, ["rules", "show", "ELIG-CART-002", "--rules", str(RULES)])
    assert result.exit_code == 0, result.stderr
    rule = ruleset.rule("ELIG-CART-002")
    assert rule.condition_text() in result.stdout
    assert rule.rationale.split()[0] in result.stdout
    first = ruleset.registry.get(rule.cites[0])
    assert first.id in result.stdout and " ".join(first.quote.split()[:6]) in " ".join(result.stdout.split())
    assert "Fixtures:" in result.stdout
    for spec in rule.fixtures.fires:
        assert spec.profile in result.stdout


def test_cli_show_unknown_rule():
    result = runner.invoke(app, ["rules", "show", "ELIG-CART-02", "--rules", str(RULES)])
    assert result.exit_code == 2
    assert result.stderr.startswith("error: unknown rule ID 'ELIG-CART-02'") and "ELIG-CART-002" in result.stderr


def test_a_ranking_rule_reading_two_unknowable_fields_is_warned(folder):
    edit(folder, _set(0, when={"any": ["ecog >= 3", "frailty == frail", "organ_function_adequate == false"]}))
    report = check(folder)
    assert report.problems == []
    joint = [w for w in report.warnings if "cannot show their joint effect" in w]
    assert len(joint) == 1 and "frailty, organ_function_adequate" in joint[0]


def test_a_caution_reading_two_unknowable_fields_is_not_warned(folder):
    edit(folder, _set(0, kind="caution", when={"any": ["frailty == frail", "organ_function_adequate == false"]}))
    assert not [w for w in check(folder).warnings if "joint effect" in w]


def test_fixtures_live_beside_the_rules_and_name_real_rules(folder):
    """rules/tests/<file>: a fixture file for no rule file, an entry for no rule, and fixtures left
    inside a rule file are each one problem line."""
    fx = yaml.safe_load((folder / "tests" / "tiny.yaml").read_text())
    fx["fixtures"]["TINY-NOPE-001"] = {"fires": [{"profile": "tcr_3_lines_ecog3_frail_81y"}]}
    (folder / "tests" / "tiny.yaml").write_text(dump(fx), encoding="utf-8")
    (folder / "tests" / "gone.yaml").write_text(dump({"rules": "gone.yaml", "fixtures": {}}), encoding="utf-8")
    data = yaml.safe_load((folder / "tiny.yaml").read_text())
    data["rules"][1]["fixtures"] = {"fires": [{"profile": "tcr_3_lines_ecog3_frail_81y"}]}
    (folder / "tiny.yaml").write_text(dump(data), encoding="utf-8")
    problems = check(folder).problems
    assert "tests/tiny.yaml [TINY-NOPE-001]: no such rule in tiny.yaml" in problems
    assert "tests/gone.yaml: rules: no rule file 'gone.yaml' in the rule folder" in problems
    assert any(p.startswith("tiny.yaml [TINY-TRIAL-001] fixtures: fixtures live in tests/tiny.yaml") for p in problems), problems


def test_fixtures_do_not_change_the_rule_set_hash_and_are_not_read_to_evaluate(folder):
    from cds.api import load_ruleset
    from cds.knowledge.ruleset import ruleset_digest

    before = ruleset_digest(folder)
    (folder / "tests" / "tiny.yaml").write_text("not: [valid\n", encoding="utf-8")
    assert ruleset_digest(folder) == before
    assert load_ruleset(folder).rules  # evaluating never reads the fixtures
    assert any(p.startswith("tests/tiny.yaml: not valid YAML") for p in check(folder).problems)


def test_fixtures_start_from_the_rule_folders_own_base_profiles_only(folder):
    """rules/tests/profiles/<name>.json is a fixture's base; a tumor-board case of patient_profiles/ is
    refused (editing it would move the rule's boundary silently), and so is a base named like a case."""
    import json

    base = folder / "tests" / "profiles"
    data = json.loads((base / "tcr_fit_3_lines.json").read_text(encoding="utf-8"))
    (base / "ecog3_base.json").write_text(json.dumps({**data, "ecog": 3}), encoding="utf-8")
    edit(folder, _fixtures(fires=[{"profile": "ecog3_base"}], silent=[{"profile": "ecog3_base", "set": {"ecog": 2}}]))
    report = check(folder, fixtures=True)
    assert report.problems == [] and report.fixtures_run == 3
    assert (PROFILES / "fit_tcr_bcma_naive.json").is_file()
    edit(folder, _fixtures(fires=[{"profile": "fit_tcr_bcma_naive", "set": {"ecog": 3}}], silent=[{"profile": "ecog3_base"}]))
    problems = check(folder, fixtures=True).problems
    assert len(problems) == 2, problems
    assert problems[0].startswith(
        'tiny.yaml [TINY-CART-001] fixtures: fires[0] (fit_tcr_bcma_naive {"ecog": 3}): fit_tcr_bcma_naive is a '
        "tumor-board case of patient_profiles/, not a base profile: start from one of tests/profiles/"
    ), problems
    assert problems[1] == "tiny.yaml [TINY-CART-001] fixtures: silent[0] (ecog3_base): fired"
    (base / "frail_ecog3.json").write_text(json.dumps(data), encoding="utf-8")
    assert any(p.startswith("tests/profiles/frail_ecog3.json: a case of") for p in check(folder, fixtures=True).problems)


def test_every_shipped_fixture_starts_from_a_base_profile():
    """No fixture of rules/tests/ names a tumor-board case (the check refuses it; this names the offenders)."""
    cases = {p.stem for p in PROFILES.glob("*.json")}
    named = {
        spec["profile"]
        for path in (RULES / "tests").glob("*.yaml")
        for fixtures in (yaml.safe_load(path.read_text(encoding="utf-8"))["fixtures"] or {}).values()
        for specs in fixtures.values()
        for spec in specs
    }
    assert named and not named & cases, sorted(named & cases)
    assert {p.stem for p in (RULES / "tests" / "profiles").glob("*.json")} == named, "every base profile is used"
    readme = (RULES / "tests" / "profiles" / "README.md").read_text(encoding="utf-8")
    assert all(f"`{name}.json`" in readme for name in named), "every base profile is described in the README"


def test_every_rule_carries_its_review_date_and_rules_show_prints_it_with_evidence_levels(ruleset):
    assert all(r.last_reviewed for r in (*ruleset.rules, *ruleset.retired))
    r = runner.invoke(app, ["rules", "show", "EARLY-CD38-001"])
    assert r.exit_code == 0, r.stderr
    rule = ruleset.rule("EARLY-CD38-001")
    assert f"reviewed: {rule.last_reviewed}" in r.stdout
    for cid in rule.cites:
        assert f"level: {ruleset.registry.entries[cid].level_label}" in r.stdout


# ------------------------------------------------------------------ key figures (page 1's figure per option)


def _key_figure_rule(**key):
    """TINY-TRIAL-001 turned into a prefer rule for an option, citing the entry of its key figure."""

    def fn(rules, code):
        evidence = key.get("evidence", "POLLUX.S000.TABLE1")
        option = key.pop("option", "anti_cd38_combination")
        rules[1].update(options=[option], cites=[evidence], key_figures=[{"evidence": evidence, "measure": "orr", **key}])

    return fn


def test_a_key_figure_of_the_options_own_arm_passes(folder):
    edit(folder, _key_figure_rule())
    assert check(folder).problems == []
    edit(folder, _key_figure_rule(evidence="KARMMA-3.S001.TABLE1", arm="ide-cel", option="bcma_car_t", measure="median_pfs"))
    assert check(folder).problems == []


@pytest.mark.parametrize(
    ("key", "expected"),
    [
        # the ide-cel trial's figures shown for the standard-regimen option
        (
            {"evidence": "KARMMA-3.S001.TABLE1", "arm": "ide-cel", "option": "pi_imid_regimen"},
            "KARMMA-3.S001.TABLE1 has agent 'ide-cel', not a drug of option pi_imid_regimen",
        ),
        # two arms: which one must be said
        ({"evidence": "KARMMA-3.S001.TABLE1", "option": "bcma_car_t"}, "KARMMA-3.S001.TABLE1 has 0 orr figures with arm None"),
        # a review's pooled range is not an arm's figure
        ({"evidence": "DARA-IMID.S000.ABSTRACT"}, "DARA-IMID.S000.ABSTRACT is a review statement, not a trial arm's result"),
        ({"measure": "crs_grade3plus"}, "measure 'crs_grade3plus' is not an efficacy measure"),
        ({"evidence": "NO-SUCH.S000.TEXT"}, "unknown evidence ID 'NO-SUCH.S000.TEXT'"),
    ],
)
def test_a_key_figure_that_is_not_the_options_arm_fails(folder, key, expected):
    edit(folder, _key_figure_rule(**key))
    problems = check(folder).problems
    assert any(p.startswith("tiny.yaml [TINY-TRIAL-001] key_figures[0]: ") and expected in p for p in problems), problems


def test_a_key_figure_must_be_cited_and_its_when_checked(folder):
    def fn(rules, code):
        rules[1].update(
            options=["anti_cd38_combination"],
            cites=["POLLUX.S000.TEXT"],
            key_figures=[{"evidence": "POLLUX.S000.TABLE1", "measure": "orr", "when": "refractory_lenalidomde == false"}],
        )

    edit(folder, fn)
    problems = check(folder).problems
    assert any("key_figures[0].when: unknown fact 'refractory_lenalidomde'" in p for p in problems), problems
    edit(folder, lambda rules, code: rules[1]["key_figures"][0].update(when="refractory_lenalidomide == false"))
    problems = check(folder).problems
    assert problems == [
        "tiny.yaml [TINY-TRIAL-001] key_figures[0]: POLLUX.S000.TABLE1 is not cited by the rule (add it to cites)"
    ]


def test_only_ranking_rules_name_key_figures_and_only_requirements_say_unmet(folder):
    edit(folder, _key_figure_rule())
    edit(folder, lambda rules, code: rules[1].update(kind="caution", weight=None))
    assert any("key_figures: only a prefer or require rule" in p for p in check(folder).problems)
    edit(folder, lambda rules, code: rules[0].update(unmet="not fit"))
    assert any("unmet: only a require rule" in p for p in check(folder).problems)


def test_a_requirement_without_a_plain_reason_is_warned(folder):
    edit(folder, lambda rules, code: rules[0].update(kind="require", when="ecog <= 2"))
    report = check(folder)
    assert report.problems == []
    assert [w for w in report.warnings if "unmet: not given" in w] == [
        "tiny.yaml [TINY-CART-001] unmet: not given; page 1 says 'Requirement not met: ECOG 3-4: not fit enough for CAR-T' "
        "when it does not hold"
    ]
    edit(folder, lambda rules, code: rules[0].update(unmet="ECOG 3-4"))
    assert not [w for w in check(folder).warnings if "unmet" in w]
