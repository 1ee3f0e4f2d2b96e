"""The patient-view request an EHR would send for the patient of a FHIR Bundle (the README's curl session).

python -m cds.apps.http.example tests/fhir/cases/car_t_bridging.json > patient-view.json
"""

from __future__ import annotations

import json
import sys

from cds.errors import EXIT_INPUT, EXIT_OK

from .hooks import hook_request


def main(argv: list[str]) -> int:
    if len(argv) != 1:
        print("usage: python -m cds.apps.http.example BUNDLE.json", file=sys.stderr)
        return EXIT_INPUT
    with open(argv[0], encoding="utf-8") as fh:
        print(json.dumps(hook_request(json.load(fh)), indent=1, ensure_ascii=False))
    return EXIT_OK


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
