"""This user's cache folder, safe against other users' files (bottom layer).

``CDS_CACHE_DIR`` names it (``off`` turns every cache off); otherwise it is
``$XDG_CACHE_HOME/cds`` or ``~/.cache/cds``. What is cached there only saves
time: the rule folder's YAML documents as JSON and the validated rule set
(`cds.knowledge.rulecache`), the cytogenetics catalogue the fact catalogue is
built from (`cds.model.vocabulary`), the engine's shard plan (`cds.engine.durable`)
Jinja's compiled templates (`cds.report.render`) and the code of dataclasses' generated methods
(`cds.apps.classcode`).

A cache another user could write is never read: `cache_dir` returns a folder
only if it is a real directory (not a symbolic link) owned by this user and
writable by nobody else, creating it (mode 0700) when it is missing; files are
written under a temporary name (mode 0600) and renamed into place, and
`read_private` opens a file only if the same holds for it. Any problem means
"no cache", never an error.

A pickle can run code when it is loaded: `read_pickle` loads one only from such
a private file, only after the header line that names what the file is for
(its cache key), and through an unpickler that builds nothing but the classes
of cds's own modules and pathlib's paths.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import importlib.util
import io
import os
import pickle
import stat
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

T = TypeVar("T")

MAX_FILE = 64 << 20  # a cache file larger than this is not read


@functools.cache
def code_fingerprint() -> str:
    """sha256 over the cds package's source files and the versions of PyYAML, pydantic, pydantic-core and Python:
    what a cached result of reading and validating a data file depends on besides the file itself.

    A source file counts by its path, size and modification time in nanoseconds (not its bytes):
    what Python itself trusts to run a module's compiled bytecode (size and mtime in seconds),
    read in one stat per file instead of reading and hashing the whole package at every start."""
    import pydantic.version
    import pydantic_core

    h = hashlib.sha256()
    for rel, st in sorted(_sources(Path(__file__).resolve().parent, "")):
        h.update(f"{rel}\0{st.st_size}\0{st.st_mtime_ns}\0".encode("utf-8", "surrogateescape"))
    spec = importlib.util.find_spec("yaml")
    if spec is not None and spec.origin:
        h.update(Path(spec.origin).read_bytes())  # yaml/__init__.py carries __version__
    h.update(f"pydantic {pydantic.version.VERSION} pydantic-core {pydantic_core.__version__} {sys.version}".encode())
    return h.hexdigest()


def _sources(folder: Path, prefix: str) -> list[tuple[str, os.stat_result]]:
    """(relative path, stat) of every ``*.py`` file below `folder` (bytecode folders skipped)."""
    found = []
    with os.scandir(folder) as entries:
        for entry in entries:
            if entry.is_dir(follow_symlinks=False):
                if entry.name != "__pycache__":
                    found.extend(_sources(Path(entry.path), f"{prefix}{entry.name}/"))
            elif entry.name.endswith(".py"):
                found.append((prefix + entry.name, entry.stat()))
    return found


def _base() -> Path | None:
    env = os.environ.get("CDS_CACHE_DIR")
    if env is not None:
        return None if env.strip().lower() in ("", "off", "0", "no") else Path(env)
    xdg = os.environ.get("XDG_CACHE_HOME")
    if xdg and os.path.isabs(xdg):
        return Path(xdg) / "cds"
    home = os.path.expanduser("~")
    return Path(home) / ".cache" / "cds" if home != "~" else None


def _private(st: os.stat_result, kind: int) -> bool:
    """Of this kind, owned by this user, writable by nobody else."""
    return stat.S_IFMT(st.st_mode) == kind and st.st_uid == os.getuid() and not st.st_mode & (stat.S_IWGRP | stat.S_IWOTH)


def cache_dir(name: str) -> Path | None:
    """The folder `name` of this user's cache (created if missing), or None when there is no safe one."""
    base = _base()
    if base is None:
        return None
    folder = base / name
    try:
        base.mkdir(mode=0o700, parents=True, exist_ok=True)
        folder.mkdir(mode=0o700, exist_ok=True)
        for path in (base, folder):
            if not _private(os.lstat(path), stat.S_IFDIR):
                return None
    except OSError:
        return None
    return folder


def read_private(path: Path) -> bytes | None:
    """The bytes of a cache file, or None if it is missing, too large, or not this user's own (see the module docstring)."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | getattr(os, "O_CLOEXEC", 0))
    except OSError:
        return None
    with os.fdopen(fd, "rb") as fh:
        st = os.fstat(fd)
        if not _private(st, stat.S_IFREG) or st.st_size > MAX_FILE:
            return None
        return fh.read(MAX_FILE + 1)


def write_private(path: Path, data: bytes) -> None:
    """Write a cache file atomically (temporary name, mode 0600, then rename); a failure leaves no file."""
    tmp = None
    try:
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
        os.replace(tmp, path)
        tmp = None
    except OSError:
        pass
    finally:
        if tmp is not None:
            with contextlib.suppress(OSError):
                os.unlink(tmp)


class _OwnClasses(pickle.Unpickler):
    """Builds only the classes of cds's own modules and pathlib's paths."""

    def find_class(self, module: str, name: str) -> object:
        if module == "pathlib" and name in ("PosixPath", "WindowsPath", "PurePosixPath", "PureWindowsPath"):
            return super().find_class(module, name)
        if module.startswith("cds.") and "." not in name:
            found = super().find_class(module, name)
            if isinstance(found, type) and found.__module__ == module:
                return found
        raise pickle.UnpicklingError(f"{module}.{name}: not a class of cds")


def read_pickle(path: Path, head: str) -> object | None:
    """The object a private cache file (`read_private`) holds after the line `head`, or None (see the module docstring)."""
    data = read_private(path)
    first = head.encode() + b"\n"
    if data is None or not data.startswith(first):
        return None
    try:
        value: object = _OwnClasses(io.BytesIO(data[len(first) :])).load()
    except Exception:  # noqa: BLE001 - a file that does not load is no cache
        return None
    return value


def write_pickle(path: Path, head: str, value: object) -> None:
    """Write `value` for `read_pickle` (nothing when it does not pickle)."""
    try:
        data = pickle.dumps(value, protocol=pickle.HIGHEST_PROTOCOL)
    except (pickle.PicklingError, TypeError, AttributeError):
        return
    write_private(path, head.encode() + b"\n" + data)


def cached(
    folder: str, fmt: str, inputs: bytes, kind: type[T], build: Callable[[], T], accept: Callable[[T], bool] | None = None
) -> T:
    """`build()`, or what an earlier `build()` of the same `inputs` gave, from this user's cache folder `folder`.

    The file is named by a key over `fmt`, `code_fingerprint` (the code that builds it) and `inputs`
    (everything else the result depends on), written again as its header line, and read with
    `read_pickle`; it is used only if it holds exactly a `kind` (and `accept` takes it). With no cache
    folder, `build()` alone. An exception of `build` propagates and nothing is kept."""
    where = cache_dir(folder)
    if where is None:
        return build()
    key = hashlib.sha256(f"{fmt}\0{code_fingerprint()}\0".encode() + inputs).hexdigest()
    path, head = where / f"{key}.pickle", f"{fmt} {key}"
    known = read_pickle(path, head)
    if type(known) is kind and (accept is None or accept(known)):
        return known
    value = build()
    write_pickle(path, head, value)
    return value
