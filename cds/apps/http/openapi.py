"""The service's OpenAPI document, committed as schemas/openapi.json (a test fails when it is stale).

python -m cds.apps.http.openapi            # rewrite schemas/openapi.json from the checkout root
python -m cds.apps.http.openapi --check    # exit 1 (EXIT_FINDINGS) if it is out of date
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

from cds.errors import EXIT_FINDINGS, EXIT_OK

PATH = Path("schemas") / "openapi.json"


def document() -> dict[str, Any]:
    """What GET /openapi.json serves (built without starting workers or the store)."""
    from .app import create_app
    from .settings import Settings

    return create_app(Settings(no_auth=True, workers=1)).openapi()


def text() -> str:
    return json.dumps(document(), indent=2, sort_keys=True, ensure_ascii=False) + "\n"


def main(argv: list[str]) -> int:
    expected = text()
    if "--check" in argv:
        current = PATH.read_text(encoding="utf-8") if PATH.exists() else ""
        if current != expected:
            print(f"{PATH} is out of date; regenerate with: python -m cds.apps.http.openapi", file=sys.stderr)
            return EXIT_FINDINGS
        return EXIT_OK
    PATH.parent.mkdir(exist_ok=True)
    PATH.write_text(expected, encoding="utf-8")
    print(f"wrote {PATH}", file=sys.stderr)
    return EXIT_OK


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
