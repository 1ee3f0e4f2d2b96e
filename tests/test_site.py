"""Site settings: availability is shown next to the clinical ranking and never changes it."""

from __future__ import annotations

import copy
import hashlib
import json

import pytest
import yaml
from conftest import PROFILES, RULES, case_names, load_case
from typer.testing import CliRunner

from cds.api import build_report, default_site, load_site, render
from cds.apps.cli import app
from cds.errors import SiteError
from cds.knowledge.fixtures import apply_overrides

runner = CliRunner()
FIXED = "2026-01-01T00:00:00Z"
DEFAULT_FILE = RULES / "catalog" / "site_default.yaml"

NO_CART_SITE = {
    "name": "District hospital without CAR-T",
    "description": "Test site: no CAR-T product, bispecifics self-pay.",
    "car_t_delivered_on_site": False,
    "car_t_referral_possible": False,
    "availability": {
        "bcma_car_t": {"available": False, "reimbursed": False, "note": "No CAR-T product is licensed in this region."},
        "bcma_bispecific": {"available": True, "reimbursed": False, "note": "Self-pay only."},
    },
}


def write_site(tmp_path, data, name="site.yaml"):
    path = tmp_path / name
    path.write_text(data if isinstance(data, str) else yaml.safe_dump(data, sort_keys=False), encoding="utf-8")
    return path


def cli(*args):
    return runner.invoke(app, [*args, "--rules", str(RULES)])


def report_for(evaluator, data, site=None):
    """The report's JSON data (what `--format json` prints)."""
    return build_report(evaluator.evaluate(evaluator.parse(data)), FIXED, site).to_dict()


def clinical_part(report):
    """Everything the ranking decides, without the availability annotations."""
    strip = lambda items: [{k: v for k, v in i.items() if k != "availability"} for i in items]  # noqa: E731
    return strip(report["options"]), strip(report["excluded"]), report["fired_rules"]


# ------------------------------------------------------------------ the default site


def test_default_site_applies_and_is_stated():
    result = cli("evaluate", str(PROFILES / "fit_tcr_bcma_naive.json"), "--format", "json", "--timestamp", FIXED)
    assert result.exit_code == 0, result.stderr
    r = json.loads(result.stdout)
    digest = hashlib.sha256(DEFAULT_FILE.read_bytes()).hexdigest()
    assert r["site_hash"] == digest and r["site"]["hash"] == digest
    assert r["site"]["default"] is True and r["site"]["file"] == "site_default.yaml"
    assert "setting of the sources" in r["site_name"] and "Hong Kong" in r["site"]["description"]
    assert all(o["availability"]["site"] == r["site_name"] for o in r["options"])
    md = cli("evaluate", str(PROFILES / "fit_tcr_bcma_naive.json"), "--timestamp", FIXED).stdout
    assert "| Site | Default: the setting of the sources" in md and digest[:16] in md
    html = cli("evaluate", str(PROFILES / "fit_tcr_bcma_naive.json"), "--format", "html", "--timestamp", FIXED).stdout
    assert "<dt>Site</dt>" in html and digest[:16] in html


def test_default_site_states_the_sources_setting(ruleset):
    site = default_site(ruleset)
    assert site is not None and site.default
    spec = site.spec
    assert spec.car_t_delivered_on_site is False and spec.car_t_referral_possible is True
    assert set(spec.availability) == set(ruleset.option_ids), "the default site states every option"
    bcl2 = spec.availability["bcl2_inhibitor"]
    assert bcl2.available is False and bcl2.reimbursed is False and "STMT.S002.BCL2-T1114" in bcl2.cites
    assert spec.availability["bcma_bispecific"].available is True
    assert "STMT.S002.CART-LOGISTICS" in spec.availability["bcma_car_t"].cites
    for oid, entry in spec.availability.items():
        assert entry.note, oid
        if entry.available is not None or entry.reimbursed is not None:
            assert entry.cites, f"{oid}: a stated availability cites its evidence"
        assert all(c in ruleset.registry.entries for c in entry.cites)


def test_default_site_is_part_of_the_rule_set_hash(tmp_path):
    import shutil

    from cds.knowledge.ruleset import ruleset_digest

    rules = tmp_path / "rules"
    shutil.copytree(RULES, rules)
    before = ruleset_digest(rules)
    site = rules / "catalog" / "site_default.yaml"
    site.write_text(site.read_text(encoding="utf-8") + "# edited\n", encoding="utf-8")
    assert ruleset_digest(rules) != before


def test_unavailable_option_keeps_its_rank_and_shows_the_reason(evaluator):
    data = load_case("fit_tcr_bcma_naive")
    data["cytogenetics"] = ["t(11;14)"]
    r = report_for(evaluator, data)
    bcl2 = next(o for o in r["options"] if o["id"] == "bcl2_inhibitor")
    assert bcl2["availability"]["status"] == "unavailable"
    assert bcl2["availability"]["marker"].startswith("Not available at this site: BCL2 inhibitors are not registered")
    assert [u["id"] for u in r["site"]["unavailable"]] == ["bcl2_inhibitor"]
    assert r["site"]["unavailable"][0]["rank"] == bcl2["rank"]


# ------------------------------------------------------------------ a site without CAR-T


def test_site_without_car_t_keeps_car_t_ranked_and_marked(tmp_path):
    site = write_site(tmp_path, NO_CART_SITE)
    args = ("evaluate", str(PROFILES / "fit_tcr_bcma_naive.json"), "--timestamp", FIXED, "--site", str(site))
    default = json.loads(cli(*args[:4], "--format", "json").stdout)
    result = cli(*args, "--format", "json")
    assert result.exit_code == 0, result.stderr
    r = json.loads(result.stdout)
    assert r["options"][0]["id"] == "bcma_car_t" and r["options"][0]["rank"] == 1
    assert [o["id"] for o in r["options"]] == [o["id"] for o in default["options"]]
    a = r["options"][0]["availability"]
    assert a == {
        **a,
        "site": "District hospital without CAR-T",
        "available": False,
        "reimbursed": False,
        "status": "unavailable",
        "note": "No CAR-T product is licensed in this region.",
    }
    assert r["site"]["name"] == "District hospital without CAR-T" and r["site"]["default"] is False
    assert r["site_hash"] == hashlib.sha256(site.read_bytes()).hexdigest()
    listed = {u["id"]: u for u in r["site"]["unavailable"]}
    assert listed["bcma_car_t"]["reason"] == "No CAR-T product is licensed in this region."
    assert listed["bcma_bispecific"]["status"] == "not_reimbursed"

    md = cli(*args).stdout
    car_t = md[md.index("### 1. BCMA-directed CAR-T") : md.index("### 2.")]
    assert "**Not available at this site: No CAR-T product is licensed in this region.**" in car_t
    assert "Not reimbursed at this site: Self-pay only" in md
    assert "| Site | District hospital without CAR-T" in md

    html = cli(*args, "--format", "html").stdout
    section = html[html.index('id="option-bcma_car_t"') :]
    section = section[: section.index("</article>")]
    assert "Not available at this site: No CAR-T product is licensed in this region." in section


@pytest.mark.parametrize("name", case_names())
def test_a_site_never_changes_the_clinical_ranking(evaluator, tmp_path, name):
    everything_off = copy.deepcopy(NO_CART_SITE)
    everything_off["availability"] = {
        o: {"available": False, "reimbursed": False, "note": "Not on this formulary."} for o in evaluator.ruleset.option_ids
    }
    site = load_site(write_site(tmp_path, everything_off), evaluator.ruleset)
    data = load_case(name)
    assert clinical_part(report_for(evaluator, data, site)) == clinical_part(report_for(evaluator, data))


# ------------------------------------------------------------------ CAR-T delivery vs car_t_center_access


@pytest.mark.parametrize(
    "access, delivered, referral, status, excluded",
    [
        (None, True, False, "available", False),
        (None, False, True, "referral", False),  # referral possible: CAR-T is not excluded, not listed unavailable
        (None, False, False, "unavailable", False),  # marked, still ranked
        (True, False, False, "available", False),  # the profile (about the patient) wins; a note flags it
        (False, True, True, None, True),  # no access in the profile: ELIG-CART-005 excludes, whatever the site
    ],
)
def test_car_t_delivery_and_profile_access(evaluator, tmp_path, access, delivered, referral, status, excluded):
    spec = {
        "name": "Site",
        "description": "CAR-T delivery test",
        "car_t_delivered_on_site": delivered,
        "car_t_referral_possible": referral,
        "availability": {"bcma_car_t": {"available": True, "reimbursed": True}},
    }
    site = load_site(write_site(tmp_path, spec), evaluator.ruleset)
    data = apply_overrides(load_case("fit_tcr_bcma_naive"), {"car_t_center_access": access})
    r = report_for(evaluator, data, site)
    ranked = {o["id"]: o for o in r["options"]}
    if excluded:
        assert "bcma_car_t" not in ranked
        x = next(x for x in r["excluded"] if x["id"] == "bcma_car_t")
        assert any(reason["rule_id"] == "ELIG-CART-005" for reason in x["reasons"])
        assert "profile records no access" in x["availability"]["note"]
        return
    assert ranked["bcma_car_t"]["rank"] == 1
    assert ranked["bcma_car_t"]["availability"]["status"] == status
    assert ("bcma_car_t" in {u["id"] for u in r["site"]["unavailable"]}) == (status == "unavailable")
    if access is True:
        assert "profile records access" in ranked["bcma_car_t"]["availability"]["note"]


# ------------------------------------------------------------------ bad site files


@pytest.mark.parametrize(
    "content, expected",
    [
        (
            'name: x\ndescription: y\ncar_t_delivered_on_site: "yes"\ncar_t_referral_possible: true\n',
            "car_t_delivered_on_site: Input should be a valid boolean",
        ),
        ("name: x\ndescription: y\ncar_t_delivered_on_site: true\n", "car_t_referral_possible: Field required"),
        (
            "name: x\ndescription: y\ncar_t_delivered_on_site: true\ncar_t_referral_possible: true\ncolour: red\n",
            "colour: Extra inputs are not permitted",
        ),
        (
            "name: x\ndescription: y\ncar_t_delivered_on_site: true\ncar_t_referral_possible: true\n"
            "availability: {bcma_cart: {available: true}}\n",
            "availability.bcma_cart: unknown option ID 'bcma_cart'",
        ),
        (
            "name: x\ndescription: y\ncar_t_delivered_on_site: true\ncar_t_referral_possible: true\n"
            "availability: {bcl2_inhibitor: {available: false}}\n",
            "availability.bcl2_inhibitor: an option that is not available or not reimbursed needs a note",
        ),
        (
            "name: x\ndescription: y\ncar_t_delivered_on_site: true\ncar_t_referral_possible: true\n"
            "availability: {bcma_bispecific: {available: true, cites: [NO-SUCH.S000.TEXT]}}\n",
            "availability.bcma_bispecific.cites: unknown evidence ID 'NO-SUCH.S000.TEXT'",
        ),
        (
            "name: x\ndescription: y\ncar_t_delivered_on_site: true\ncar_t_referral_possible: true\n"
            "availability: {bcma_bispecific: {available: true, products: {talquetamab: {available: true}}}}\n",
            "availability.bcma_bispecific.products.talquetamab: talquetamab is a gprc5d_bispecific",
        ),
        ("- just\n- a list\n", "expected a mapping"),
        ("name: [unclosed\n", "not valid YAML"),
        (
            "name: x\ndescription: y\ncar_t_delivered_on_site: true\ncar_t_referral_possible: true\n"
            "availability:\n  bcl2_inhibitor: {available: false, note: no}\n  bcl2_inhibitor: {available: true}\n",
            "found duplicate key 'bcl2_inhibitor'",
        ),
    ],
)
def test_bad_site_file_exits_2_naming_file_and_field(tmp_path, content, expected):
    site = write_site(tmp_path, content, "my_site.yaml")
    result = cli("evaluate", str(PROFILES / "fit_tcr_bcma_naive.json"), "--site", str(site))
    assert result.exit_code == 2, result.stdout
    assert result.stdout == ""
    assert "Traceback" not in result.stderr
    assert "my_site.yaml" in result.stderr and expected in result.stderr, result.stderr


def test_missing_site_file_exits_2(tmp_path):
    result = cli("evaluate", str(PROFILES / "fit_tcr_bcma_naive.json"), "--site", str(tmp_path / "nope.yaml"))
    assert result.exit_code == 2 and "nope.yaml" in result.stderr and "no such file" in result.stderr


def test_site_error_is_an_input_error(ruleset, tmp_path):
    with pytest.raises(SiteError) as info:
        load_site(write_site(tmp_path, "name: x\n"), ruleset)
    assert info.value.exit_code == 2 and "description: Field required" in str(info.value)


def test_products_are_reported(evaluator, tmp_path):
    spec = copy.deepcopy(NO_CART_SITE)
    spec["availability"]["bcma_bispecific"]["products"] = {
        "Tecvayli": {"available": False, "note": "Not stocked."},
        "elranatamab": {"available": True, "reimbursed": False, "note": "Self-pay only."},
    }
    site = load_site(write_site(tmp_path, spec), evaluator.ruleset)
    r = report_for(evaluator, load_case("fit_tcr_bcma_naive"), site)
    bsab = next(o for o in r["options"] if o["id"] == "bcma_bispecific")
    products = {p["product"]: p for p in bsab["availability"]["products"]}
    assert products["Tecvayli"]["status"] == "unavailable" and products["elranatamab"]["status"] == "not_reimbursed"
    again = build_report(evaluator.evaluate(evaluator.parse(load_case("fit_tcr_bcma_naive"))), FIXED, site)
    assert json.loads(render(again, "json")) == r


def test_apply_site_returns_a_new_report(evaluator, tmp_path):
    """A site is applied to a copy: the report it started from keeps its own availability."""
    from cds.report.build import apply_site

    ev = evaluator.evaluate(evaluator.parse(load_case("fit_tcr_bcma_naive")))
    base = build_report(ev, FIXED)
    before = base.to_dict()
    site = load_site(write_site(tmp_path, NO_CART_SITE), evaluator.ruleset)
    changed = apply_site(base, site, ev)
    assert changed is not base and base.to_dict() == before
    assert changed.options[0].availability.status == "unavailable" and base.options[0].availability.status == "available"
    assert apply_site(base, None, ev).site_name is None and base.site_name == before["site_name"]
