"""Parameter values a run cannot hold are refused, whichever way they come in."""

from __future__ import annotations

from typing import Any

import pytest

from rota.errors import ParameterError
from rota.model.dag import ParamSpec
from rota.model.params import MAX_DEPTH, merge_params, parse_param

UNTYPED = ParamSpec("x", None)


def nested(depth: int) -> str:
    return "[" * depth + "]" * depth


def test_nesting_up_to_the_limit_is_accepted_and_one_more_is_refused() -> None:
    value = parse_param(UNTYPED, nested(MAX_DEPTH))
    assert isinstance(value, list)
    with pytest.raises(ParameterError, match=f"nested more than {MAX_DEPTH} levels deep"):
        parse_param(UNTYPED, nested(MAX_DEPTH + 1))
    with pytest.raises(ParameterError, match="nested more than"):
        parse_param(ParamSpec("d", {}), '{"a": ' * (MAX_DEPTH + 1) + "1" + "}" * (MAX_DEPTH + 1))


def test_brackets_inside_strings_do_not_count_as_nesting() -> None:
    text = '["' + "[" * 500 + '", "\\"' + "{" * 500 + '"]'
    assert parse_param(UNTYPED, text) == ["[" * 500, '"' + "{" * 500]


def test_text_that_is_not_json_stays_text() -> None:
    assert parse_param(UNTYPED, "hello [world") == "hello [world"
    assert parse_param(UNTYPED, "nan") == "nan"  # not JSON's NaN, and not a float: just text
    assert parse_param(ParamSpec("s", ""), "NaN") == "NaN"  # a str parameter takes any text


@pytest.mark.parametrize("raw", ["nan", "NaN", "inf", "-inf", "Infinity", "1e400", "-1e400"])
def test_a_float_parameter_must_be_finite(raw: str) -> None:
    with pytest.raises(ParameterError, match="expects a finite float"):
        parse_param(ParamSpec("f", 1.0), raw)


@pytest.mark.parametrize("raw", ["NaN", "-Infinity", "[1, NaN]", '{"a": Infinity}'])
def test_json_constants_that_are_not_json_are_refused(raw: str) -> None:
    with pytest.raises(ParameterError, match="is not JSON"):
        parse_param(UNTYPED, raw)


@pytest.mark.parametrize(
    "value",
    [
        "a\x00b",
        ["ok", {"key\x00": 1}],
        ("t", float("nan")),
        {"x": [float("-inf")]},
    ],
)
def test_values_given_from_python_are_checked_too(value: Any) -> None:
    with pytest.raises(ParameterError, match="parameter 'x'"):
        merge_params("f", (ParamSpec("x", None),), {"x": value})


def test_a_value_that_contains_itself_is_refused_not_a_recursion_error() -> None:
    loop: list[Any] = []
    loop.append(loop)
    with pytest.raises(ParameterError, match="nested more than"):
        merge_params("f", (ParamSpec("x", None),), {"x": loop})


def test_defaults_and_ordinary_values_pass() -> None:
    specs = (ParamSpec("x", None), ParamSpec("f", 0.5))
    given = {"x": {"a": [1, 2.5, "text", None, True]}}
    assert merge_params("f", specs, given) == {"x": given["x"], "f": 0.5}


def test_a_secret_s_bad_value_is_not_echoed_in_the_error() -> None:
    from rota.errors import ParameterError
    from rota.model.dag import ParamSpec
    from rota.model.params import parse_param

    with pytest.raises(ParameterError) as info:
        parse_param(ParamSpec("api_token", 0), "hunter2-secret")
    assert "hunter2" not in str(info.value)
    assert "expects int, got ***" in str(info.value)
