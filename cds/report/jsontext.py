"""Indented JSON, the same text as ``json.dumps(obj, indent=2, ensure_ascii=False)`` in about a third of the time.

With an indent, the standard library encodes in pure Python: a generator per list and dict, several
``yield``s per value (about 50M instructions, a twentieth of a cold ``cds evaluate --format json``,
for one report). `dumps_indented` writes the same characters with one recursive function over the
types a report holds, every string through the standard library's own C escaper
(`json.encoder.encode_basestring`, which ``ensure_ascii=False`` uses) and every number through the
``repr`` the standard library uses. Anything else (a subclass of a JSON type, a key that is not a
string, a value JSON cannot hold, a cycle, deep nesting) is left to ``json.dumps`` itself, so the
result, or the error, is always the standard library's (tests/test_jsontext.py compares the two).
"""

from __future__ import annotations

import json
from json.encoder import encode_basestring
from typing import Any

_SPECIAL_FLOATS = {"nan": "NaN", "inf": "Infinity", "-inf": "-Infinity"}  # json's allow_nan=True spellings


class _Other(Exception):
    """A value the fast path does not write: ``json.dumps`` writes (or refuses) it."""


def dumps_indented(obj: Any) -> str:
    """``json.dumps(obj, indent=2, ensure_ascii=False)``, character for character."""
    parts: list[str] = []
    try:
        _write(obj, "\n", parts.append)
    except (_Other, RecursionError):
        return json.dumps(obj, indent=2, ensure_ascii=False)
    return "".join(parts)


def _scalar(o: Any) -> str:
    """A JSON scalar of exactly a JSON type, as json writes it; _Other for anything else."""
    t = type(o)
    if t is str:
        return encode_basestring(o)
    if o is None:
        return "null"
    if o is True:
        return "true"
    if o is False:
        return "false"
    if t is int:
        return int.__repr__(o)
    if t is float:
        r = float.__repr__(o)
        return _SPECIAL_FLOATS.get(r, r)
    raise _Other


def _write(o: Any, nl: str, put: Any) -> None:
    """Append `o` at the indentation that `nl` (a newline and the current indent) gives."""
    t = type(o)
    if t is dict:
        if not o:
            put("{}")
            return
        inner = nl + "  "
        sep = "{" + inner
        between = "," + inner
        for k, v in o.items():
            if type(k) is not str:
                raise _Other
            tv = type(v)
            if tv is str:
                put(f"{sep}{encode_basestring(k)}: {encode_basestring(v)}")
            elif tv is dict or tv is list or tv is tuple:
                put(f"{sep}{encode_basestring(k)}: ")
                _write(v, inner, put)
            elif v is None:
                put(f"{sep}{encode_basestring(k)}: null")
            else:
                put(f"{sep}{encode_basestring(k)}: {_scalar(v)}")
            sep = between
        put(nl + "}")
    elif t is list or t is tuple:
        if not o:
            put("[]")
            return
        inner = nl + "  "
        sep = "[" + inner
        between = "," + inner
        for v in o:
            tv = type(v)
            if tv is str:
                put(sep + encode_basestring(v))
            elif tv is dict or tv is list or tv is tuple:
                put(sep)
                _write(v, inner, put)
            else:
                put(sep + _scalar(v))
            sep = between
        put(nl + "]")
    else:
        put(_scalar(o))
