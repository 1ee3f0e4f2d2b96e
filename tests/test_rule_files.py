"""Rule files are validated before compiling; errors name the file, the rule and the problem."""

from __future__ import annotations

import dataclasses
import shutil

import pytest
import yaml
from conftest import RULES

from cds.api import load_ruleset
from cds.engine.durable import Engine
from cds.errors import RuleSetError
from cds.knowledge.ruleset import parse_condition


@pytest.fixture
def rules_copy(tmp_path):
    dst = tmp_path / "rules"
    shutil.copytree(RULES, dst)
    return dst


def edit(path, fn):
    data = yaml.safe_load(path.read_text())
    fn(data)
    path.write_text(yaml.safe_dump(data, sort_keys=False, allow_unicode=True))


def problems_of(directory) -> list[str]:
    with pytest.raises(RuleSetError) as info:
        load_ruleset(directory)
    return info.value.problems


def test_the_shipped_rules_load(ruleset):
    assert len(ruleset.rules) >= 40
    assert {o.id for o in ruleset.options} >= {
        "bcma_car_t",
        "bcma_bispecific",
        "gprc5d_bispecific",
        "anti_cd38_combination",
        "bcma_adc_combination",
        "bcl2_inhibitor",
        "salvage_chemotherapy",
        "clinical_trial",
    }


@pytest.mark.parametrize(
    "mutation, expected",
    [
        (lambda d: d["rules"][0].update(cites=[]), "eligibility.yaml [ELIG-CART-001] cites"),
        (lambda d: d["rules"][0].update(cites=["NO-SUCH.S000.TEXT"]), "unknown evidence ID 'NO-SUCH.S000.TEXT'"),
        (lambda d: d["rules"][1].update(options=["bcma_cart"]), "[ELIG-CART-002] options: unknown option 'bcma_cart'"),
        (lambda d: d["rules"][1].update(id="ELIG-CART-001"), "[ELIG-CART-001]: duplicate rule ID"),
        (lambda d: d["rules"][1].update(when="ecog >== 3"), "[ELIG-CART-002]"),
        (lambda d: d["rules"][1].update(when="ecgo >= 3"), "unknown fact 'ecgo'"),
        (lambda d: d["rules"][1].update(when="ecog >= 'three'"), "wrong type"),
        (lambda d: d["rules"][1].update(when="ecog == 2026-01-01"), "is a date to the rule loader (YAML 1.1)"),
        (lambda d: d["rules"][1].update(when="ecog == !!binary aGk="), "value b'hi' has the wrong type"),
        (lambda d: d["rules"][1].update(colour="red"), "[ELIG-CART-002] colour: Extra inputs are not permitted"),
        (lambda d: d["rules"][1].update(weight=5), "takes no weight"),
        (lambda d: d["rules"][1].update(id="SEQ-CART-999"), "must start with the family code ELIG-"),
    ],
)
def test_broken_rule_is_reported_with_file_rule_and_problem(rules_copy, mutation, expected):
    edit(rules_copy / "eligibility.yaml", mutation)
    problems = problems_of(rules_copy)
    assert any(expected in p for p in problems), problems


def test_broken_yaml_names_the_file(rules_copy):
    (rules_copy / "cautions.yaml").write_text("rules: [unclosed\n")
    assert any(p.startswith("cautions.yaml: not valid YAML") for p in problems_of(rules_copy))


def test_unknown_is_not_false_in_conditions(evaluator):
    """A comparison on an unknown fact is never true (neither == nor !=); only `is unknown` matches it,
    on the real engine (each fact dict below is one patient's engine facts: an unknown fact is absent)."""
    cond = parse_condition({"any": ["ecog >= 3", "frailty is unknown"]}, "when")
    assert cond.text() == "ecog >= 3 or frailty is unknown"
    frail = evaluator.ruleset.rules[0]  # any rule: only its condition is replaced
    cases = {
        "frailty is unknown": [({}, True), ({"frailty": "fit"}, False)],
        "frailty == frail": [({}, False), ({"frailty": "frail"}, True)],
        "frailty != frail": [({}, False), ({"frailty": "fit"}, True)],
        "creatinine_clearance_ml_min < 30": [({}, False), ({"creatinine_clearance_ml_min": 20.0}, True)],
    }
    for text, expectations in cases.items():
        rule = dataclasses.replace(frail, condition=parse_condition(text, "when"))
        engine = Engine(dataclasses.replace(evaluator.ruleset, rules=(rule,)))
        fired = engine.run([{"age": 60, "ecog": 1, **facts} for facts, _ in expectations])
        assert [rule.id in f for f in fired] == [holds for _, holds in expectations], text


def test_a_duplicated_key_in_a_rule_file_is_an_error(rules_copy):
    path = rules_copy / "eligibility.yaml"
    text = path.read_text()
    marker = "  - id: ELIG-CART-001\n"
    assert marker in text
    path.write_text(text.replace(marker, marker + "    options: [bcma_bispecific]\n", 1))
    problems = problems_of(rules_copy)
    assert any(p.startswith("eligibility.yaml: not valid YAML") and "duplicate key 'options'" in p for p in problems), problems


def _restrict(products: list[str], rule_id: str = "PROD-CART-003", **extra):
    def fn(d):
        rule = next(r for r in d["rules"] if r["id"] == rule_id)
        rule["restricts_products"] = {"products": products, "why": "the only product with trial evidence here"}
        rule.update(extra)

    return fn


@pytest.mark.parametrize(
    "mutation, expected",
    [
        (_restrict(["cilta-cel", "ide-cel"]), "[PROD-CART-003] restricts_products: names every product of option bcma_car_t"),
        (_restrict(["ciltacabtagene autoleucel", "abecma"]), "names every product of option bcma_car_t"),  # aliases are the drug
        (_restrict(["teclistamab"]), "'teclistamab' (teclistamab) is not a drug of option bcma_car_t"),
        (_restrict(["anito-cel"]), "anitocabtagene autoleucel not among option bcma_car_t's products (cilta-cel, ide-cel)"),
        (_restrict(["no-such-cel"]), "'no-such-cel' is not a drug of catalog/drugs.yaml"),
        (
            _restrict(["cilta-cel"], favourable=True),
            "restricts_products: only a caution rule of one option, not marked favourable",
        ),
        (
            _restrict(["cilta-cel"], options=["bcma_car_t", "bcma_bispecific"]),
            "restricts_products: only a caution rule of one option",
        ),
        (_restrict(["teclistamab"], rule_id="PROD-BSAB-002", favourable=False), "option bcma_bispecific lists no products"),
    ],
)
def test_restricted_products_are_checked_against_the_options_products(rules_copy, mutation, expected):
    """`restricts_products` (R12-08) names some of the products its option's catalogue entry lists, as drugs of
    the vocabulary; naming all of them, another option's drug or an unlisted one is a problem of `cds rules check`."""
    edit(rules_copy / "products.yaml", mutation)
    problems = problems_of(rules_copy)
    assert any(expected in p for p in problems), problems


def test_a_products_list_of_an_option_names_its_own_drugs(rules_copy):
    def fn(d):
        d["options"][0]["products"] = ["cilta-cel", "teclistamab"]

    edit(rules_copy / "catalog" / "options.yaml", fn)
    problems = problems_of(rules_copy)
    assert any(
        "catalog/options.yaml [bcma_car_t] products: 'teclistamab' (teclistamab) is not a drug of option bcma_car_t" in p
        for p in problems
    ), problems
