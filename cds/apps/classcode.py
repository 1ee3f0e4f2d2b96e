"""The compiled code of the methods `dataclasses` writes, kept in this user's cache (the command line's start-up).

`@dataclass` writes the source text of each class's ``__init__``, ``__repr__``, ``__eq__``,
``__hash__`` and, frozen, ``__setattr__`` and ``__delattr__``, and compiles it with `exec`
at every start: some 550 small functions for cds's 100 or so dataclasses, about a seventh
of a cold `cds evaluate`. Python keeps the bytecode of modules, not of these. Within `kept`,
`dataclasses._create_fn` is this module's copy of it, line for line, except that it compiles
a text only once: the code object of each text is looked up in a table read from the cache
folder ``classcode`` (marshal, like Python's own bytecode files), and compiled and added when
it is not there. The same text gives the same code (``compile(text, "<string>", "exec")`` is
what ``exec(text)`` does), so every class is exactly what it was: the text is the key, the
table is named by the Python version and bytecode magic number, and is read only as any
cache file of cds is (`cds.usercache.read_private`: this user's own, written by nobody else).
Any problem means "compile", never an error.
"""

from __future__ import annotations

import dataclasses
import hashlib
import importlib.util
import marshal
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from types import CodeType
from typing import Any

from cds.usercache import cache_dir, read_private, write_private

_HEAD = b"cds-classcode/1\n"
_MAX_ENTRIES = 5000  # texts of earlier versions of the sources pile up; beyond this, only the last run's are kept


def _table_name() -> str:
    key = hashlib.sha256(f"{sys.version}\0{importlib.util.MAGIC_NUMBER.hex()}".encode()).hexdigest()[:32]
    return f"{key}.marshal"


def _read(data: bytes | None) -> dict[str, CodeType]:
    if data is None or not data.startswith(_HEAD):
        return {}
    try:
        table = marshal.loads(data[len(_HEAD) :])  # noqa: S302 - a private file of this user (read_private), as a .pyc
    except (EOFError, ValueError, TypeError):
        return {}
    if not isinstance(table, dict):
        return {}
    return {k: v for k, v in table.items() if isinstance(k, str) and isinstance(v, CodeType)}


@contextmanager
def kept() -> Iterator[None]:
    """Within: the dataclasses created compile each method's text once per user and Python (see the module docstring)."""
    names = vars(dataclasses)
    original = names.get("_create_fn")
    # the copy below is Python 3.11's (3.12 names the return annotation differently, 3.13 has no _create_fn)
    folder = cache_dir("classcode") if sys.version_info[:2] == (3, 11) and original is not None else None
    if folder is None:
        yield
        return
    path = folder / _table_name()
    table = _read(read_private(path))
    known = len(table)
    used: dict[str, CodeType] = {}  # this run's texts: what the table keeps when it grew too large
    missing = dataclasses.MISSING

    def _create_fn(
        name: str,
        args: list[str],
        body: list[str],
        *,
        globals: dict[str, Any] | None = None,
        locals: dict[str, Any] | None = None,
        return_type: Any = missing,
    ) -> Any:
        # dataclasses._create_fn of Python 3.11, with `exec(text)` as `exec(compile(text))`, compiled once
        if locals is None:
            locals = {}
        return_annotation = ""
        if return_type is not missing:
            locals["_return_type"] = return_type
            return_annotation = "->_return_type"
        args_text = ",".join(args)
        body_text = "\n".join(f"  {b}" for b in body)
        txt = f" def {name}({args_text}){return_annotation}:\n{body_text}"
        local_vars = ", ".join(locals.keys())
        txt = f"def __create_fn__({local_vars}):\n{txt}\n return {name}"
        code = table.get(txt)
        if code is None:
            code = table[txt] = compile(txt, "<string>", "exec")
        used[txt] = code
        ns: dict[str, Any] = {}
        exec(code, dataclasses.__dict__ if globals is None else globals, ns)  # noqa: S102 - the text dataclasses wrote, as dataclasses itself runs it
        return ns["__create_fn__"](**locals)

    names["_create_fn"] = _create_fn
    try:
        yield
    finally:
        names["_create_fn"] = original
        if len(table) != known:
            write_private(path, _HEAD + marshal.dumps(table if len(table) <= _MAX_ENTRIES else used))
