"""Site settings: which options a centre can actually give, without touching the clinical ranking.

A site file (``cds evaluate PATH --site site.yaml``) states, for the centre the
tumor board sits in, whether each option (IDs from ``rules/catalog/options.yaml``)
is available and reimbursed, and whether the centre delivers CAR-T itself or
can refer to a centre that does::

    name: "University Hospital X"
    description: "Haematology department; CAR-T by referral to Centre Y."
    car_t_delivered_on_site: false
    car_t_referral_possible: true
    availability:
      bcl2_inhibitor:
        available: false
        reimbursed: false
        note: "Venetoclax is not licensed for myeloma here; off-label only."
      bcma_bispecific:
        available: true
        reimbursed: true
        products:                       # optional, per product (drug names from catalog/drugs.yaml)
          teclistamab: {available: true, reimbursed: true}

``available``/``reimbursed`` may be ``null`` (not stated); an option the file
does not list is "not stated" too. An option that is not available or not
reimbursed needs a ``note`` giving the reason. ``cites`` (optional) names
evidence IDs from ``rules/evidence/``.

Without ``--site`` the default site shipped with the rules is used
(``rules/catalog/site_default.yaml``: the sources' own setting, stated plainly).

How a site acts on the report (`availability` here; `cds.report.build.apply_site` builds the report's fields):

* It never changes facts, fired rules, scores, ranks or exclusions. An option
  that is clinically ranked but unavailable or not reimbursed here stays in
  ``options`` with its rank, gets an ``availability`` field with the reason,
  and is listed in the report's ``site.unavailable``; the templates show a
  visible "Not available at this site: <reason>" marker.
* CAR-T and ``car_t_center_access``: the profile is about the patient, the site
  about the centre. When the profile states ``car_t_center_access`` (true or
  false) it wins: false excludes CAR-T by rule ELIG-CART-005 whatever the site
  says, true keeps it (a note flags a site that neither delivers nor refers).
  When the profile leaves it unknown, the site's delivery decides the marker
  only: delivered on site -> available; not delivered but referral possible ->
  "refer to a certified CAR-T centre" (not excluded, not listed as
  unavailable); neither -> listed as not available at this site. A product the
  site marks unavailable (``availability.bcma_car_t.available: false``) is
  always marked, whatever the profile says about centre access.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path
from typing import Literal, Self

from pydantic import Field, ValidationError, model_validator

from cds.datafile import SITE_LIMIT, parse_yaml, read_capped
from cds.errors import ReadError, SiteError, printable, quoted
from cds.knowledge.ruleset import RuleSet
from cds.model.base import Strict, record, schema_problems
from cds.usercache import cached

DEFAULT_SITE_FILE = Path("catalog") / "site_default.yaml"

#: an option's availability at a site
Status = Literal["unavailable", "not_reimbursed", "referral", "available", "unknown"]
MARKER_LABEL = {
    "unavailable": "Not available at this site",
    "not_reimbursed": "Not reimbursed at this site",
    "referral": "Referral needed (not delivered at this site)",
}


class _Availability(Strict):
    available: bool | None = None
    reimbursed: bool | None = None
    note: str | None = Field(default=None, min_length=3, max_length=2000)
    cites: list[str] = []

    @model_validator(mode="after")
    def _reason_given(self) -> Self:
        if (self.available is False or self.reimbursed is False) and not self.note:
            raise ValueError("an option that is not available or not reimbursed needs a note giving the reason")
        return self


class ProductAvailability(_Availability):
    pass


class OptionAvailability(_Availability):
    products: dict[str, ProductAvailability] = {}


class SiteFile(Strict):
    name: str = Field(min_length=1, max_length=200)
    description: str = Field(min_length=1, max_length=4000)
    car_t_delivered_on_site: bool
    car_t_referral_possible: bool
    availability: dict[str, OptionAvailability] = {}


@dataclass(frozen=True)
class Site:
    spec: SiteFile
    path: Path
    digest: str  # sha256 of the file's bytes
    default: bool

    @property
    def name(self) -> str:
        return self.spec.name


def _fail(label: str, problems: list[str]) -> SiteError:
    return SiteError(f"invalid site file {label}: " + "; ".join(problems))


def load_site(path: Path, ruleset: RuleSet, default: bool = False) -> Site:
    """Read and validate a site file against the rule set's options, drugs and evidence. Raises SiteError."""
    label = printable(path, 200)
    try:
        data = read_capped(path, SITE_LIMIT, "a site file")
    except ReadError as exc:
        raise SiteError(f"site file {label}: {exc.problem}") from None
    try:
        raw = parse_yaml(data)
    except ReadError as exc:
        raise _fail(label, [exc.problem]) from None
    if not isinstance(raw, dict):
        raise _fail(label, [f"expected a mapping with name, description, car_t_delivered_on_site, ..., got {type(raw).__name__}"])
    try:
        spec = SiteFile.model_validate(raw)
    except ValidationError as exc:
        raise _fail(label, schema_problems(exc, with_input=True)) from None

    problems: list[str] = []
    options = {o.id: o for o in ruleset.options}
    for oid, entry in spec.availability.items():
        where = f"availability.{printable(oid)}"
        if oid not in options:
            problems.append(f"{where}: unknown option ID {quoted(oid)} (options: {', '.join(options)})")
            continue
        for cid in entry.cites:
            if cid not in ruleset.registry.entries:
                problems.append(f"{where}.cites: unknown evidence ID {quoted(cid)}")
        for product, pa in entry.products.items():
            there = f"{where}.products.{printable(product)}"
            drug = ruleset.vocabulary.lookup(product)
            if drug is None:
                problems.append(f"{there}: unknown drug {quoted(product)}")
                continue
            classes = options[oid].drug_classes
            if classes and drug.drug_class not in classes:
                problems.append(
                    f"{there}: {drug.name} is a {drug.drug_class}, not a product of option {oid} ({', '.join(classes)})"
                )
            for cid in pa.cites:
                if cid not in ruleset.registry.entries:
                    problems.append(f"{there}.cites: unknown evidence ID {quoted(cid)}")
    if problems:
        raise _fail(label, problems)
    return Site(spec=spec, path=path, digest=hashlib.sha256(data).hexdigest(), default=default)


_DEFAULTS: dict[tuple[str, str], Site] = {}


def default_site(ruleset: RuleSet) -> Site | None:
    """The site shipped with the rule folder (catalog/site_default.yaml), or None if the folder has none."""
    path = ruleset.directory / DEFAULT_SITE_FILE
    if not path.is_file():
        return None
    key = (str(path), ruleset.digest)  # the rule-set digest covers the file's bytes
    if key not in _DEFAULTS:
        _DEFAULTS[key] = _cached_default_site(path, ruleset)
    return _DEFAULTS[key]


_SITE_FORMAT = "cds-default-site/1"


def _cached_default_site(path: Path, ruleset: RuleSet) -> Site:
    """`load_site` of the default site, kept in this user's cache when the rule set came from `load_ruleset`.

    Validating a site depends on the file and on the rule set only: the cache file is named by the
    rule set's cache key (`cds.knowledge.rulecache.loaded_key`: its folder, files, the cds sources and
    the libraries' versions) and the site file's bytes, and read like the rule set's
    (`cds.usercache.cached`). A site with a problem raises SiteError and is never kept.
    """
    from cds.knowledge.rulecache import loaded_key

    ruleset_key = loaded_key(ruleset)
    if ruleset_key is None:
        return load_site(path, ruleset, default=True)
    try:
        data = read_capped(path, SITE_LIMIT, "a site file")
    except ReadError:
        return load_site(path, ruleset, default=True)  # which reports it
    inputs = f"{ruleset_key}\0{path}\0".encode("utf-8", "surrogateescape") + data
    return cached(
        "site", _SITE_FORMAT, inputs, Site, lambda: load_site(path, ruleset, default=True), lambda known: known.path == path
    )


# --------------------------------------------------------------------- effect on the report


def _is_car_t(ruleset: RuleSet, option_id: str) -> bool:
    return any(c.endswith("_car_t") for c in ruleset.option(option_id).drug_classes)


def _status(available: bool | None, reimbursed: bool | None) -> Status:
    if available is False:
        return "unavailable"
    if reimbursed is False:
        return "not_reimbursed"
    if available is True:
        return "available"
    return "unknown"


@record  # in the report: no properties beyond these fields in its JSON Schema
class ProductStatus:
    """Availability of one product of an option at a site."""

    product: str
    available: bool | None
    reimbursed: bool | None
    status: Status
    note: str | None
    cites: list[str]


@record  # in the report: no properties beyond these fields in its JSON Schema
class Availability:
    """The ``availability`` of one option at a site (see the module docstring for the rules)."""

    site: str
    available: bool | None
    reimbursed: bool | None
    status: Status
    note: str
    marker: str | None  # "Not available at this site: <reason>", ...; None when available or not stated
    cites: list[str]
    products: list[ProductStatus]


def availability(site: Site, ruleset: RuleSet, option_id: str, car_t_center_access: bool | None) -> Availability:
    """The ``availability`` field of one option at this site (see the module docstring for the rules)."""
    entry = site.spec.availability.get(option_id)
    available = entry.available if entry else None
    reimbursed = entry.reimbursed if entry else None
    notes: list[str] = []
    if entry and entry.note:
        notes.append(" ".join(entry.note.split()))
    elif not entry:
        notes.append("The site file does not state this option's availability.")
    status = _status(available, reimbursed)

    if _is_car_t(ruleset, option_id) and status != "unavailable":
        s = site.spec
        if car_t_center_access is None:
            if s.car_t_delivered_on_site:
                notes.append("CAR-T is delivered at this centre.")
            elif s.car_t_referral_possible:
                notes.append("CAR-T is not delivered at this centre; referral to a certified CAR-T centre is possible.")
                if status != "not_reimbursed":
                    status = "referral"
            else:
                notes.append("CAR-T is not delivered at this centre and no referral route is stated.")
                status = "unavailable"
        elif car_t_center_access is True and not (s.car_t_delivered_on_site or s.car_t_referral_possible):
            notes.append(
                "The profile records access to a certified CAR-T centre, which is used (it is about this patient); "
                "the site file says this centre neither delivers CAR-T nor refers for it: confirm the route."
            )
        elif car_t_center_access is False and s.car_t_delivered_on_site:
            notes.append(
                "The profile records no access to a certified CAR-T centre, which is used (it is about this patient), "
                "although the site file says this centre delivers CAR-T: confirm."
            )

    note = " ".join(notes)
    label = MARKER_LABEL.get(status)
    products = []
    for product, pa in entry.products.items() if entry else ():
        products.append(
            ProductStatus(
                product=product,
                available=pa.available,
                reimbursed=pa.reimbursed,
                status=_status(pa.available, pa.reimbursed),
                note=" ".join(pa.note.split()) if pa.note else None,
                cites=list(pa.cites),
            )
        )
    return Availability(
        site=site.name,
        available=False if status == "unavailable" else available,
        reimbursed=reimbursed,
        status=status,
        note=note,
        marker=f"{label}: {note}" if label else None,
        cites=list(entry.cites) if entry else [],
        products=products,
    )
