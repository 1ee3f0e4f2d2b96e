"""FHIR R4 / mCODE Bundles in: a patient profile with every derived fact traced to its resource.

    result = import_bundle(bundle_dict, vocabulary, evaluation_date="2026-01-15")
    result.profile      # the profile (contract field names; unknown facts left out)
    result.facts        # per field: imported / derived / overridden / unknown, sources, how
    result.lines        # derived lines of therapy, each with the rule that opened it
    result.not_used     # every resource not used, with the reason

Modules: `bundle` (strict reading with fhir.resources' R4B models), `codes` (every code
read, with where it was verified), `dates`, `units` (the conversion table), `lines` (the
line-of-therapy and refractoriness algorithm), `mapping` (Bundle -> profile),
`overrides` (--with). fhir.resources is imported only when a Bundle is read.
"""

from __future__ import annotations

from cds.errors import BundleError, NoMyelomaDiagnosis

from .mapping import Fact, ImportResult, import_bundle

__all__ = ["BundleError", "Fact", "ImportResult", "NoMyelomaDiagnosis", "import_bundle"]
