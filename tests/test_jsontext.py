"""cds.report.jsontext.dumps_indented writes exactly json.dumps(obj, indent=2, ensure_ascii=False): the JSON report's text."""

from __future__ import annotations

import enum
import json
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from cds.report.jsontext import dumps_indented

ROOT = Path(__file__).resolve().parents[1]


def _standard(obj: object) -> str:
    return json.dumps(obj, indent=2, ensure_ascii=False)


class Colour(str, enum.Enum):  # noqa: UP042 - the str-mixin enums cds uses (cds.apps.cli.Format)
    red = "red"


class Count(enum.IntEnum):
    one = 1


_scalars = (
    st.none()
    | st.booleans()
    | st.integers()
    | st.integers(min_value=-(2**80), max_value=2**80)
    | st.floats(allow_nan=True, allow_infinity=True)
    | st.text()
    | st.text(alphabet=st.characters(max_codepoint=0x3000))  # control characters, U+2028/2029, surrogates left out
    | st.sampled_from([Colour.red, Count.one, -0.0, 1e16, 1e-7, 5e-324, "\u2028", "\x00\x1f\x7f", '"\\/'])
)
_keys = st.text() | st.sampled_from(["", "a", "é", "\n"])
_values = st.recursive(
    _scalars,
    lambda inner: (
        st.lists(inner, max_size=5) | st.lists(inner, max_size=3).map(tuple) | st.dictionaries(_keys, inner, max_size=5)
    ),
    max_leaves=40,
)


@settings(max_examples=400, deadline=None)
@given(_values)
def test_the_same_text_as_the_standard_library(obj):
    assert dumps_indented(obj) == _standard(obj)


@pytest.mark.parametrize(
    "obj",
    [
        {1: "an int key"},
        {True: 1, None: 2, 1.5: 3},
        {Colour.red: "a str-enum key"},
        [Colour.red, Count.one, {"e": Colour.red, "n": Count.one}],
        {"deep": [[[[{}]]], [], {}]},
        float("nan"),
        [float("inf"), -float("inf")],
    ],
)
def test_what_the_fast_path_leaves_to_json_comes_out_the_same(obj):
    assert dumps_indented(obj) == _standard(obj)


def test_what_json_refuses_is_refused_with_its_error():
    cycle: list[object] = []
    cycle.append(cycle)
    for bad in (cycle, {"a": object()}, {("tuple", "key"): 1}, {"s": {1, 2}}):
        with pytest.raises((TypeError, ValueError)) as standard:
            _standard(bad)
        with pytest.raises(type(standard.value)) as ours:
            dumps_indented(bad)
        assert str(ours.value) == str(standard.value)


def test_a_nesting_too_deep_for_recursion_is_jsons_result():
    deep: object = "leaf"
    for _ in range(5000):
        deep = [deep]
    try:
        expected: object = _standard(deep)
    except RecursionError:
        with pytest.raises(RecursionError):
            dumps_indented(deep)
    else:
        assert dumps_indented(deep) == expected


def test_every_committed_json_report_is_its_own_reindented_text():
    files = sorted((ROOT / "reports" / "examples").glob("*.json"))
    assert files
    for path in files:
        text = path.read_text(encoding="utf-8")
        assert dumps_indented(json.loads(text)) + "\n" == text, path.name
