"""Output files named on the command line (``--output``, ``--summary``): the whole text or nothing."""

from __future__ import annotations

import contextlib
import errno
import os
import stat
import sys
import tempfile
from typing import Any

from cds.errors import InputError


def _umask() -> int:
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


class OutputFile:
    """An output file given with an option (``--output``, ``--summary``): the whole text or nothing.

    Constructing it only checks the path (nothing is created), so that every output of a
    command is checked before any is created; `open()` then creates it. A regular file (new or
    existing) is written under a temporary name beside it and renamed over it by `commit()`;
    `abort()` removes the temporary file. A symbolic link is followed: the file it points to
    is written, the link stays. An existing FIFO or character device is opened and written
    directly. The file gets the permission bits of the file it replaces, or 0o666 & ~umask.
    Every problem (a folder, a missing folder, no permission, a full disk, ...) is an
    InputError naming the option and the path (exit code 2). `None` means standard output.
    """

    def __init__(self, raw: str | None, option: str = "--output", binary: bool = False):
        self.raw, self.option, self.binary = raw, option, binary
        self.fh: Any = None
        self.tmp: str | None = None
        self.direct = False
        self.target: str | None = None
        if raw is None:
            return
        if raw == "":
            raise InputError(f"{option}: the path is empty")
        path = os.path.expanduser(raw)
        try:
            st: os.stat_result | None = os.stat(path)
        except OSError as exc:
            if exc.errno not in (errno.ENOENT, errno.ENOTDIR):
                raise self._error(exc) from None
            st = None
        if st is not None and stat.S_ISDIR(st.st_mode):
            raise InputError(f"{option} {raw}: is a directory")
        if st is not None and not stat.S_ISREG(st.st_mode):
            self.direct, self.target = True, path  # FIFO, character device: write to it as it is
            return
        self.target = os.path.realpath(path)  # through symbolic links: replace the file, not the link
        self.directory = os.path.dirname(self.target)
        if not os.path.isdir(self.directory):
            raise InputError(f"{option} {raw}: folder {self.directory} does not exist")
        if not os.access(self.directory, os.W_OK | os.X_OK) or (st is not None and not os.access(self.target, os.W_OK)):
            raise InputError(f"{option} {raw}: cannot write ({os.strerror(errno.EACCES)})")
        self.mode = stat.S_IMODE(st.st_mode) if st is not None else 0o666 & ~_umask()

    def _error(self, exc: OSError) -> InputError:
        return InputError(f"{self.option} {self.raw}: cannot write ({exc.strerror or exc})")

    def same_file(self, other: OutputFile) -> bool:
        return self.target is not None and self.target == other.target

    def open(self) -> OutputFile:
        if self.raw is None:
            self.fh = sys.stdout.buffer if self.binary else sys.stdout
            return self
        target = self.target
        assert target is not None  # set by __init__ whenever a path was given
        try:
            if self.direct:
                self.fh = open(target, "wb") if self.binary else open(target, "w", encoding="utf-8")  # noqa: SIM115 - kept open until commit()
                return self
            fd, self.tmp = tempfile.mkstemp(prefix=f".{os.path.basename(target)}.", suffix=".tmp", dir=self.directory)
            self.fh = os.fdopen(fd, "wb") if self.binary else os.fdopen(fd, "w", encoding="utf-8")
            os.fchmod(fd, self.mode)
        except OSError as exc:
            self.abort()
            raise self._error(exc) from None
        return self

    def write(self, text: str | bytes) -> None:
        if self.raw is None:
            self.fh.write(text)
            return
        try:
            self.fh.write(text)
        except OSError as exc:
            raise self._error(exc) from None

    def write_all(self, text: str | bytes) -> None:
        """Open, write the whole text and commit; on any failure remove what was started."""
        try:
            self.open()
            self.write(text)
            self.commit()
        except BaseException:
            self.abort()
            raise

    def commit(self) -> None:
        if self.raw is None:
            self.fh.flush()
            return
        try:
            self.fh.close()
            if self.tmp is not None:
                os.replace(self.tmp, self.target)  # type: ignore[arg-type]
                self.tmp = None
        except OSError as exc:
            raise self._error(exc) from None

    def abort(self) -> None:
        """Remove the temporary file (a FIFO or device is just closed); never raises."""
        if self.raw is None:
            return
        if self.fh is not None:
            with contextlib.suppress(OSError):  # the write that failed is reported already
                self.fh.close()
        if self.tmp is not None:
            with contextlib.suppress(OSError):
                os.unlink(self.tmp)
            self.tmp = None
