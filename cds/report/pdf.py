"""PDF from the HTML report, printed by headless Chromium (Debian's /usr/bin/chromium).

Why Chromium and not WeasyPrint: the HTML report is what people open and
print from a browser, and the browser tests already check it in Chromium; one
layout engine means the page-1 test (tests/test_pdf.py) proves both the PDF
and the browser's own print. Chromium implements the CSS the report uses
(grid, flex, @page margin boxes with "page N of M" since version 131) and
printed a 23-page report in about 2.4 s here, against about 7 s for WeasyPrint
70, which would also add nine Python packages.

One browser process prints any number of documents (`PdfPrinter`, used by
``cds batch --reports --format pdf`` and ``cds board``): it is driven over the
DevTools protocol on a pipe (``--remote-debugging-pipe``: file descriptors 3
and 4, NUL-terminated JSON messages), never a network port, so no other
process can reach the patient data it renders. The pages are loaded from
files in a private temporary folder; the browser runs without network access
of its own (the report's Content-Security-Policy forbids every external load).

The PDF's creation and modification dates are set from the report's
evaluation time (not the time of printing).
"""

from __future__ import annotations

import base64
import contextlib
import json
import os
import re
import select
import shutil
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any

from cds.errors import InputError, PdfError

CHROMIUM_ENV = "CDS_CHROMIUM"  # path of the browser, if not chromium on PATH
TIMEOUT_S = 120.0
_FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-extensions",
    "--disable-default-apps",
    "--mute-audio",
    "--remote-debugging-pipe",
)


def chromium_path() -> str:
    found = os.environ.get(CHROMIUM_ENV) or shutil.which("chromium") or shutil.which("chromium-browser")
    if not found or not Path(found).is_file():
        raise InputError(
            "--format pdf needs Chromium (the PDF is printed from the HTML report by headless Chromium): "
            "install it (Debian: apt-get install chromium) or set CDS_CHROMIUM to its path"
        )
    return found


def _above_nine(fd: int) -> int:
    import fcntl

    moved = fcntl.fcntl(fd, fcntl.F_DUPFD, 10)
    os.close(fd)
    return moved


class PdfPrinter:
    """One headless Chromium that prints HTML documents to PDF; use as a context manager."""

    def __init__(self, timeout: float = TIMEOUT_S):
        self.timeout = timeout
        self._proc: subprocess.Popen[bytes] | None = None
        self._next_id = 0
        self._buffer = b""
        self._dir: tempfile.TemporaryDirectory[str] | None = None
        self._to_browser: int | None = None  # our ends of the two pipes (None: closed)
        self._from_browser: int | None = None

    # ---------------------------------------------------------------- process

    def __enter__(self) -> PdfPrinter:
        browser = chromium_path()
        self._dir = tempfile.TemporaryDirectory(prefix="cds-pdf-")
        to_browser_r, self._to_browser = os.pipe()
        self._from_browser, from_browser_w = os.pipe()
        # the browser's ends above 9, so that putting them on 3 and 4 overwrites nothing still needed
        to_browser_r, from_browser_w = (_above_nine(fd) for fd in (to_browser_r, from_browser_w))

        def child_fds() -> None:
            # the browser reads commands on fd 3 and writes answers on fd 4 (dup2 also clears close-on-exec:
            # the originals, above 9, are close-on-exec and vanish at exec)
            os.dup2(to_browser_r, 3)
            os.dup2(from_browser_w, 4)

        try:
            self._proc = subprocess.Popen(
                [browser, *_FLAGS, f"--user-data-dir={self._dir.name}/profile", "about:blank"],
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
                close_fds=False,  # keeps 3 and 4; every other descriptor of ours is close-on-exec (PEP 446)
                preexec_fn=child_fds,
            )
        except OSError as exc:
            self._dir.cleanup()
            raise PdfError(f"cannot start Chromium ({browser}): {exc.strerror or exc}") from None
        finally:
            os.close(to_browser_r)
            os.close(from_browser_w)
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        proc, self._proc = self._proc, None
        if proc is not None:
            with contextlib.suppress(PdfError, OSError):
                self._send("Browser.close", {})
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(10)
        for fd in (self._to_browser, self._from_browser):
            if fd is not None:
                with contextlib.suppress(OSError):
                    os.close(fd)
        self._to_browser = self._from_browser = None
        if self._dir is not None:
            self._dir.cleanup()
            self._dir = None

    # ---------------------------------------------------------------- protocol

    def _send(self, method: str, params: dict[str, Any], session: str | None = None) -> int:
        self._next_id += 1
        message: dict[str, Any] = {"id": self._next_id, "method": method, "params": params}
        if session is not None:
            message["sessionId"] = session
        data = json.dumps(message).encode() + b"\0"
        fd = self._to_browser
        if fd is None:
            raise PdfError("Chromium is not running")
        while data:
            written = os.write(fd, data)
            data = data[written:]
        return self._next_id

    def _read(self, deadline: float) -> dict[str, Any]:
        fd = self._from_browser
        if fd is None:
            raise PdfError("Chromium is not running")
        while b"\0" not in self._buffer:
            left = deadline - time.monotonic()
            if left <= 0:
                raise PdfError(f"Chromium did not answer within {self.timeout:g} s")
            ready, _, _ = select.select([fd], [], [], left)
            if not ready:
                continue
            chunk = os.read(fd, 1 << 20)
            if not chunk:
                raise PdfError("Chromium exited while printing")
            self._buffer += chunk
        raw, self._buffer = self._buffer.split(b"\0", 1)
        message: dict[str, Any] = json.loads(raw)  # the DevTools protocol sends JSON objects
        return message

    def _call(self, method: str, params: dict[str, Any], session: str | None = None) -> dict[str, Any]:
        """Send a command and wait for its answer (events that arrive meanwhile are dropped)."""
        wanted = self._send(method, params, session)
        deadline = time.monotonic() + self.timeout
        while True:
            message = self._read(deadline)
            if message.get("id") == wanted:
                if "error" in message:
                    raise PdfError(f"Chromium: {method} failed: {message['error'].get('message')}")
                result: dict[str, Any] = message.get("result", {})
                return result

    def _wait_event(self, method: str, session: str) -> None:
        deadline = time.monotonic() + self.timeout
        while True:
            message = self._read(deadline)
            if message.get("method") == method and message.get("sessionId") == session:
                return

    # ---------------------------------------------------------------- printing

    def print_html(self, html: str, evaluated_at: str | None = None) -> bytes:
        """The PDF of one self-contained HTML document (A4 and margins from its own @page CSS)."""
        if self._proc is None or self._dir is None:
            raise RuntimeError("PdfPrinter used outside its 'with' block")
        page = Path(self._dir.name) / f"page-{self._next_id}.html"
        page.write_text(html, encoding="utf-8")
        target = self._call("Target.createTarget", {"url": "about:blank"})["targetId"]
        session = self._call("Target.attachToTarget", {"targetId": target, "flatten": True})["sessionId"]
        try:
            self._call("Page.enable", {}, session)
            self._send("Page.navigate", {"url": page.as_uri()}, session)
            self._wait_event("Page.loadEventFired", session)
            result = self._call(
                "Page.printToPDF",
                {"printBackground": True, "preferCSSPageSize": True, "displayHeaderFooter": False},
                session,
            )
        finally:
            self._call("Target.closeTarget", {"targetId": target})
            page.unlink(missing_ok=True)
        return fix_dates(base64.b64decode(result["data"]), evaluated_at)


_PDF_DATE = re.compile(rb"/(CreationDate|ModDate) \(D:\d{14}[^)]*\)")


def fix_dates(pdf: bytes, evaluated_at: str | None) -> bytes:
    """Set the PDF's dates to the evaluation time (same length: the cross-reference offsets stay valid)."""
    if not evaluated_at:
        return pdf
    stamp = re.sub(r"\D", "", evaluated_at)[:14].ljust(14, "0").encode()

    def replace(match: re.Match[bytes]) -> bytes:
        old = match.group(0)
        new = b"/" + match.group(1) + b" (D:" + stamp + b"+00'00')"
        return new.ljust(len(old))[: len(old)] if len(new) <= len(old) else old

    return _PDF_DATE.sub(replace, pdf)


def html_to_pdf(html: str, evaluated_at: str | None = None) -> bytes:
    """One HTML document to PDF (starts and stops a browser: use `PdfPrinter` for several)."""
    with PdfPrinter() as printer:
        return printer.print_html(html, evaluated_at)
