"""The case pages' protections: a strict CSP, no caching, CSRF tokens, cookies that scripts cannot read.

CSRF: a double-submit token. Every page that shows a form sets the cookie ``cds_csrf`` (random,
``HttpOnly``, ``SameSite=Strict``, ``Path=/``; ``Secure`` behind an https public URL) and puts
the same value in a hidden field of each form; a POST whose field does not match its cookie is
refused (403) before anything is read or stored. A cross-site page can neither read the cookie
nor make the browser send it (SameSite=Strict).
"""

from __future__ import annotations

import hmac
import secrets

from fastapi import Request
from fastapi.responses import Response

CSRF_COOKIE = "cds_csrf"
CSRF_FIELD = "csrf"
#: pages: no script at all, styles and images from this origin only, forms post only here
PAGE_CSP = "default-src 'none'; style-src 'self'; img-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
#: the printable board and the full report: the report templates' own inline styles and data: images
DOCUMENT_CSP = (
    "default-src 'none'; style-src 'unsafe-inline'; img-src data:; form-action 'none'; frame-ancestors 'none'; base-uri 'none'"
)


def csrf_token(request: Request) -> tuple[str, bool]:
    """(the token of this browser, whether the cookie must be set)."""
    token = request.cookies.get(CSRF_COOKIE, "")
    if len(token) >= 32 and token.replace("-", "").replace("_", "").isalnum():
        return token, False
    return secrets.token_urlsafe(32), True


def csrf_ok(request: Request, submitted: str | None) -> bool:
    cookie = request.cookies.get(CSRF_COOKIE, "")
    return bool(cookie) and bool(submitted) and hmac.compare_digest(cookie.encode(), (submitted or "").encode())


def finish(response: Response, token: str | None, new: bool, secure: bool, csp: str = PAGE_CSP) -> Response:
    response.headers["Content-Security-Policy"] = csp
    response.headers["Cache-Control"] = "no-store"
    response.headers["X-Content-Type-Options"] = "nosniff"
    if token is not None and new:
        response.set_cookie(CSRF_COOKIE, token, httponly=True, samesite="strict", secure=secure, path="/")
    return response
