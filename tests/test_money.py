"""Money: exact decimal strings in, exact decimal strings out, integer micro-units inside,
and floats refused everywhere."""

from __future__ import annotations

import operator
from collections.abc import Callable
from decimal import Decimal
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from usagewatch.domain.money import (
    AMOUNT_MICROS_MAX,
    BALANCE_MICROS_MAX,
    MICROS_PER_UNIT,
    Money,
    MoneyFormatError,
)

# -- parsing -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "micros"),
    [
        ("0", 0),
        ("0.00", 0),
        ("-0.00", 0),
        ("1", 1_000_000),
        ("1000.00", 1_000_000_000),
        ("0.1875", 187_500),
        ("0.000001", 1),
        ("12.5", 12_500_000),
        ("12.50", 12_500_000),
        ("-3.25", -3_250_000),
        ("-0.000001", -1),
        ("999999999.999999", 999_999_999_999_999),
        ("1000000000", AMOUNT_MICROS_MAX),
        ("1000000000000", BALANCE_MICROS_MAX),
    ],
)
def test_parse_exact_decimal_strings(text: str, micros: int) -> None:
    assert Money.parse(text) == Money(micros)
    assert Money.parse(text).micros == micros


@pytest.mark.parametrize("text", ["0.0000001", "1.1234567", "-0.0000005", "10.0000001"])
def test_more_than_six_decimals_is_too_precise(text: str) -> None:
    with pytest.raises(MoneyFormatError) as err:
        Money.parse(text)
    assert err.value.code == "amount_too_precise"


def test_trailing_zeros_beyond_six_decimals_are_still_one_micro_unit_exact() -> None:
    # "finer than a micro-unit" is about the value: 1.1000000 is exactly 1.10.
    assert Money.parse("1.1000000") == Money(1_100_000)


@pytest.mark.parametrize(
    "text",
    [
        "",
        " ",
        "abc",
        "1,000.00",
        "1 000",
        " 1.00",
        "1.00 ",
        "+1.00",
        "1.",
        ".5",
        "-.5",
        "--1",
        "1e3",
        "1E-3",
        "0x10",
        "NaN",
        "nan",
        "Infinity",
        "-inf",
        "01",
        "00.5",
        "1.2.3",
        "₹10",
        "10 INR",
        "\u0661\u0660",  # Arabic-Indic digits: Decimal would accept them, the API does not
        "1_000",
    ],
)
def test_bad_strings_are_invalid_amounts(text: str) -> None:
    with pytest.raises(MoneyFormatError) as err:
        Money.parse(text)
    assert err.value.code == "invalid_amount"
    assert isinstance(err.value, ValueError)


@pytest.mark.parametrize("text", ["1.00\n", "\n1.00", "1.00\r\n", "1.00\t", "\u00a01.00"])
def test_whitespace_anywhere_is_an_invalid_amount(text: str) -> None:
    # Decimal() would strip it, and `$` in a regex matches before a final newline
    with pytest.raises(MoneyFormatError) as err:
        Money.parse(text)
    assert err.value.code == "invalid_amount"


def test_absurdly_long_numbers_are_refused_without_parsing() -> None:
    for text in ("9" * 65, "-" + "9" * 65, "1." + "0" * 70):
        with pytest.raises(MoneyFormatError):
            Money.parse(text)


def test_too_precise_is_detected_beyond_decimal_context_precision() -> None:
    with pytest.raises(MoneyFormatError) as err:
        Money.parse("100000000000000000.000000000001")
    assert err.value.code == "amount_too_precise"


@pytest.mark.parametrize(
    "value",
    [10, 10.5, 0.1, Decimal("10.50"), None, b"10.00", ["10.00"], True, Money(10)],
)
def test_non_strings_are_refused(value: object) -> None:
    with pytest.raises(MoneyFormatError) as err:
        Money.parse(value)  # type: ignore[arg-type]
    assert err.value.code == "money_must_be_string"


# -- formatting --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("micros", "text"),
    [
        (0, "0.00"),
        (1, "0.000001"),
        (10, "0.00001"),
        (187_500, "0.1875"),
        (250_000, "0.25"),
        (1_000_000, "1.00"),
        (1_500_000, "1.50"),
        (1_000_000_000, "1000.00"),
        (123_456_789, "123.456789"),
        (-1, "-0.000001"),
        (-187_500, "-0.1875"),
        (-2_500_000, "-2.50"),
        (-1_000_000_000, "-1000.00"),
        (BALANCE_MICROS_MAX, "1000000000000.00"),
    ],
)
def test_format(micros: int, text: str) -> None:
    assert Money(micros).format() == text
    assert repr(Money(micros)) == f"Money({text})"


# -- construction and arithmetic -----------------------------------------------------------


def test_construct_takes_only_int_micro_units() -> None:
    assert Money(5).micros == 5
    for bad in (1.0, 0.0, Decimal("1"), "1", True, False, None):
        with pytest.raises(TypeError):
            Money(bad)  # type: ignore[arg-type]


def test_money_is_immutable() -> None:
    m = Money(5)
    with pytest.raises(AttributeError):
        m.micros = 6


def test_arithmetic_with_money() -> None:
    a, b = Money.parse("10.50"), Money.parse("0.25")
    assert a + b == Money.parse("10.75")
    assert a - b == Money.parse("10.25")
    assert b - a == Money.parse("-10.25")
    assert -a == Money.parse("-10.50")
    assert a * 3 == Money.parse("31.50")
    assert 3 * a == Money.parse("31.50")
    assert Money.zero() == Money(0)
    assert sum([a, b], Money.zero()) == Money.parse("10.75")
    assert a > b and b < a and a >= a and a <= a and a != b
    assert not Money.zero() and Money(1)
    assert Money(1).is_positive() and Money(-1).is_negative()
    assert not Money(0).is_positive() and not Money(0).is_negative()
    assert hash(Money.parse("1.0")) == hash(Money.parse("1.000000"))
    assert len({Money.parse("1.0"), Money.parse("1.00"), Money(1_000_000)}) == 1


def test_money_equals_no_other_type() -> None:
    assert Money(1_000_000) != 1_000_000
    assert Money(1_000_000) != "1.00"
    assert Money(0) != 0


BINARY_OPS: list[Callable[[Any, Any], object]] = [
    operator.add,
    operator.sub,
    operator.lt,
    operator.le,
    operator.gt,
    operator.ge,
    operator.eq,
    operator.ne,
]


@pytest.mark.parametrize("op", BINARY_OPS, ids=lambda op: op.__name__)
@pytest.mark.parametrize("value", [1.0, 0.0, 10.5, float("nan")])
def test_floats_are_refused_on_either_side(
    op: Callable[[object, object], object], value: float
) -> None:
    m = Money.parse("10.50")
    with pytest.raises(TypeError):
        op(m, value)
    with pytest.raises(TypeError):
        op(value, m)


@pytest.mark.parametrize("op", [operator.add, operator.sub, operator.lt, operator.ge])
@pytest.mark.parametrize("value", [1, Decimal("1.00"), "1.00"])
def test_non_money_is_refused_in_arithmetic(
    op: Callable[[object, object], object], value: object
) -> None:
    with pytest.raises(TypeError):
        op(Money(1), value)


def test_multiplying_by_a_float_is_refused() -> None:
    m = Money.parse("10.50")
    for bad in (2.0, 0.5, Decimal("2"), True):
        with pytest.raises(TypeError):
            m * bad  # type: ignore[operator]
        with pytest.raises(TypeError):
            bad * m  # type: ignore[operator]


def test_sum_without_a_money_start_is_refused() -> None:
    with pytest.raises(TypeError):
        sum([Money(1), Money(2)])  # type: ignore[list-item]


# -- properties ----------------------------------------------------------------------------

micros_values = st.integers(min_value=-(10**24) + 1, max_value=10**24 - 1)


@given(micros_values)
def test_parse_format_round_trip(micros: int) -> None:
    m = Money(micros)
    assert Money.parse(m.format()) == m


@given(micros_values)
def test_format_is_the_exact_decimal_value(micros: int) -> None:
    text = Money(micros).format()
    assert Decimal(text) * MICROS_PER_UNIT == micros
    whole, _, frac = text.lstrip("-").partition(".")
    assert 2 <= len(frac) <= 6
    assert len(frac) == 2 or not frac.endswith("0")
    assert whole == str(abs(micros) // MICROS_PER_UNIT)


@given(
    st.decimals(
        min_value=Decimal("-999999999999"),
        max_value=Decimal("999999999999"),
        places=6,
        allow_nan=False,
        allow_infinity=False,
    )
)
def test_parse_of_any_six_decimal_amount_is_exact(value: Decimal) -> None:
    text = f"{value:f}"
    if text.startswith("-0") and value == 0:
        text = text[1:]
    m = Money.parse(text)
    assert m.micros == int(value * MICROS_PER_UNIT)
    assert Decimal(m.format()) == value


@given(micros_values, micros_values)
def test_arithmetic_matches_integers(a: int, b: int) -> None:
    assert (Money(a) + Money(b)).micros == a + b
    assert (Money(a) - Money(b)).micros == a - b
    assert (Money(a) < Money(b)) == (a < b)
    assert (Money(a) == Money(b)) == (a == b)


@pytest.mark.parametrize(
    ("text", "shown"),
    [
        ("0", "0.00"),
        ("999.5", "999.50"),
        ("1000", "1,000.00"),
        ("1234567.000001", "1,234,567.000001"),
        ("-16657.25", "-16,657.25"),
    ],
)
def test_display_groups_thousands_and_stays_exact(text: str, shown: str) -> None:
    amount = Money.parse(text)
    assert amount.display() == shown
    assert Money.parse(shown.replace(",", "")) == amount


@pytest.mark.parametrize(
    ("text", "places", "shown"),
    [
        ("1098.692857", 2, "1098.69"),
        ("3704.505", 2, "3704.51"),
        ("-3704.505", 2, "-3704.51"),
        ("0.004999", 2, "0.00"),
        ("12.5", 0, "13.00"),
        ("1.000001", 6, "1.000001"),
    ],
)
def test_rounded_is_half_away_from_zero(text: str, places: int, shown: str) -> None:
    assert Money.parse(text).rounded(places) == Money.parse(shown)
