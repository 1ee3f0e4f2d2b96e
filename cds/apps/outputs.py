"""Output files named on the command line (``--output``, ``--summary``, ``--report``) and standard output.

The whole text or nothing, never over an input, never a temporary file that outlives the run:

* A regular file (new or existing) is written into an unnamed file in the target's folder
  (Linux ``O_TMPFILE``) and given its name only when complete (linked under a temporary name
  and renamed over the target in one step). A process killed at any moment (SIGKILL, the
  out-of-memory killer) leaves no partial or temporary file: the unnamed file dies with it.
  Where ``O_TMPFILE`` is not available (another OS, a filesystem without it) a hidden
  ``.<name>.<random>.tmp`` beside the target is used and removed on every abort.
* A symbolic link is followed: the file it points to is written, the link stays. An existing
  FIFO or character device is opened and written directly. The file gets the permission bits
  of the file it replaces, or 0o666 & ~umask.
* `refuse` names inputs of the command: an output that is the same file as an input (after
  links, ``..`` and hard links: ``os.path.samefile``), or inside the rule folder, is refused
  before anything is read or written.
* Every problem (a folder, a missing folder, no permission, a full disk, an input) is an
  InputError naming the option and the path (exit code 2). ``None`` means standard output, whose
  write errors (a full disk, a closed pipe: ``| head``) are InputErrors too, "standard output:
  cannot write (...)", the same exit code as for a file.
"""

from __future__ import annotations

import contextlib
import errno
import os
import stat
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from cds.errors import InputError, printable

STDOUT = "standard output"


def _umask() -> int:
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def stdout_error(exc: OSError) -> InputError:
    """A failed write to standard output, as the same kind of error as a failed --output; silences stdout after it.

    The interpreter flushes sys.stdout once more at exit: with the broken stream replaced by
    /dev/null that flush cannot fail, and the error line stays the only line on stderr.
    """
    with contextlib.suppress(OSError, ValueError, AttributeError):
        fd = sys.stdout.fileno()
        null = os.open(os.devnull, os.O_WRONLY)
        os.dup2(null, fd)
        os.close(null)
    return InputError(f"{STDOUT}: cannot write ({exc.strerror or exc})")


def write_stdout(text: str | bytes) -> None:
    try:
        if isinstance(text, bytes):
            sys.stdout.buffer.write(text)
        else:
            sys.stdout.write(text)
    except OSError as exc:
        raise stdout_error(exc) from None


def flush_stdout() -> None:
    try:
        sys.stdout.flush()
    except OSError as exc:
        raise stdout_error(exc) from None


def _tmpfile_supported() -> bool:
    return hasattr(os, "O_TMPFILE") and os.path.isdir("/proc/self/fd")


class OutputFile:
    """An output file given with an option: constructing it only checks the path; `open()` creates it.

    Every output of a command is checked (and `refuse`d against the inputs) before any is created.
    """

    def __init__(self, raw: str | None, option: str = "--output", binary: bool = False):
        self.raw, self.option, self.binary = raw, option, binary
        self.fh: Any = None
        self.fd: int | None = None
        self.tmp: str | None = None  # a name the data has under the target's folder before the rename
        self.unnamed = False
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
            raise InputError(f"{self._name}: is a directory")
        if st is not None and not stat.S_ISREG(st.st_mode):
            self.direct, self.target = True, path  # FIFO, character device: write to it as it is
            return
        self.target = os.path.realpath(path)  # through symbolic links: replace the file, not the link
        self.directory = os.path.dirname(self.target)
        if not os.path.isdir(self.directory):
            raise InputError(f"{self._name}: folder {printable(self.directory, 200)} does not exist")
        if not os.access(self.directory, os.W_OK | os.X_OK) or (st is not None and not os.access(self.target, os.W_OK)):
            raise InputError(f"{self._name}: cannot write ({os.strerror(errno.EACCES)})")
        self.mode = stat.S_IMODE(st.st_mode) if st is not None else 0o666 & ~_umask()

    @property
    def _name(self) -> str:
        return f"{self.option} {printable(self.raw, 200)}"

    @property
    def _file(self) -> str:
        """The target path of a file output (`open`/`commit` reach it only for a named one: raw is not None)."""
        assert self.target is not None
        return self.target

    def _error(self, exc: OSError) -> InputError:
        return InputError(f"{self._name}: cannot write ({exc.strerror or exc})")

    def same_file(self, other: OutputFile) -> bool:
        return self.target is not None and self.target == other.target

    # ----------------------------------------------------------------- never over an input

    def refuse(self, path: str | os.PathLike[str] | None, what: str = "input") -> None:
        """InputError if writing this output would replace the file `path` (the same file, however named)."""
        if path is None or self.target is None or self.direct:
            return
        with contextlib.suppress(OSError):
            if os.path.samefile(self.target, path):
                raise InputError(f"{self._name}: is the {what} {printable(path, 200)}; refusing to overwrite it")

    def refuse_inside(self, folder: str | os.PathLike[str] | None, what: str) -> None:
        """InputError if this output would be written inside `folder` (e.g. the rule folder)."""
        if folder is None or self.target is None or self.direct:
            return
        with contextlib.suppress(OSError):
            root = os.path.realpath(folder)
            if os.path.commonpath([root, self.target]) == root:
                raise InputError(f"{self._name}: is inside the {what} {printable(folder, 200)}; refusing to write there")

    def refuse_record(self, folder: str | os.PathLike[str], is_record: Any) -> None:
        """InputError if this output would replace a record file of the input folder (`is_record(name)`)."""
        if self.target is None or self.direct or not os.path.isdir(folder):
            return
        with contextlib.suppress(OSError):
            if os.path.samefile(self.directory, folder) and is_record(os.path.basename(self.target)):
                record = Path(folder) / os.path.basename(self.target)
                raise InputError(
                    f"{self._name}: is the input record {printable(record, 200)} of the folder; refusing to overwrite it"
                )

    # ----------------------------------------------------------------- writing

    def open(self) -> OutputFile:
        if self.raw is None:
            self.fh = sys.stdout.buffer if self.binary else sys.stdout
            return self
        try:
            if self.direct:
                self.fh = open(self._file, "wb") if self.binary else open(self._file, "w", encoding="utf-8")  # noqa: SIM115 - kept open until commit()
                return self
            fd = None
            if _tmpfile_supported():
                try:
                    fd = os.open(self.directory, os.O_TMPFILE | os.O_RDWR | os.O_CLOEXEC, self.mode)
                    self.unnamed = True
                except OSError as exc:
                    if exc.errno not in (errno.EOPNOTSUPP, errno.EISDIR, errno.EINVAL, errno.ENOENT):
                        raise
            if fd is None:  # no O_TMPFILE here: a hidden name beside the target, removed on abort
                fd, self.tmp = tempfile.mkstemp(prefix=f".{os.path.basename(self._file)}.", suffix=".tmp", dir=self.directory)
            self.fd = fd
            self.fh = os.fdopen(fd, "wb", closefd=False) if self.binary else os.fdopen(fd, "w", encoding="utf-8", closefd=False)
            os.fchmod(fd, self.mode)
        except OSError as exc:
            self.abort()
            raise self._error(exc) from None
        return self

    def write(self, text: str | bytes) -> None:
        if self.raw is None:
            write_stdout(text)
            return
        try:
            self.fh.write(text)
        except OSError as exc:
            raise self._error(exc) from None

    @contextlib.contextmanager
    def writing(self) -> Iterator[OutputFile]:
        """Open; when the block ends, commit; if it (or the commit) raises anything, remove what was started."""
        try:
            self.open()
            yield self
            self.commit()
        except BaseException:
            self.abort()
            raise

    def write_all(self, text: str | bytes) -> None:
        """Open, write the whole text and commit; on any failure remove what was started."""
        with self.writing():
            self.write(text)

    def commit(self) -> None:
        if self.raw is None:
            flush_stdout()
            return
        try:
            self.fh.flush()
            if self.unnamed:
                # give the unnamed file a (hidden) name, then rename it over the target in one step
                name = tempfile.mktemp(prefix=f".{os.path.basename(self._file)}.", suffix=".tmp", dir="")  # noqa: S306 - linkat fails if the name exists
                folder = os.open(self.directory, os.O_RDONLY | os.O_DIRECTORY)
                try:
                    # linkat(AT_SYMLINK_FOLLOW) through /proc/self/fd (a dst_dir_fd makes os.link use linkat)
                    os.link(f"/proc/self/fd/{self.fd}", name, dst_dir_fd=folder, follow_symlinks=True)
                finally:
                    os.close(folder)
                self.tmp = os.path.join(self.directory, name)
                self.unnamed = False
            self.fh.close()
            if self.fd is not None:
                os.close(self.fd)
                self.fd = None
            if self.tmp is not None:
                os.replace(self.tmp, self._file)
                self.tmp = None
        except OSError as exc:
            raise self._error(exc) from None

    def abort(self) -> None:
        """Remove whatever was started (an unnamed file just goes); a FIFO or device is just closed. Never raises."""
        if self.raw is None:
            return
        if self.fh is not None:
            with contextlib.suppress(OSError, ValueError):  # the write that failed is reported already
                self.fh.close()
        if self.fd is not None:
            with contextlib.suppress(OSError):
                os.close(self.fd)
            self.fd = None
        if self.tmp is not None:
            with contextlib.suppress(OSError):
                os.unlink(self.tmp)
            self.tmp = None
