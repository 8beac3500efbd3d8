"""Money: an exact integer count of micro-units (10^-6 of the currency unit).

Parsing and formatting (the edges) work on the decimal digits directly, never through a
float or a rounding context. Floats are refused everywhere: constructing, adding or
comparing Money with a float raises `TypeError`.
"""

from __future__ import annotations

import re
from typing import Final

MICROS_PER_UNIT: Final = 1_000_000
DECIMALS_MAX: Final = 6

# A single amount in a request (a credit, a debit, a hold) may not exceed this many currency
# units; an account's balance may not exceed BALANCE_UNITS_MAX. Both keep every sum far from
# the 64-bit integer columns' limit (9.2e18 micro-units).
AMOUNT_UNITS_MAX: Final = 1_000_000_000
BALANCE_UNITS_MAX: Final = 1_000_000_000_000
AMOUNT_MICROS_MAX: Final = AMOUNT_UNITS_MAX * MICROS_PER_UNIT
BALANCE_MICROS_MAX: Final = BALANCE_UNITS_MAX * MICROS_PER_UNIT

# Plain decimals only: no exponent, "+", spaces or leading zeros.
_DECIMAL_STRING = re.compile(r"-?(0|[1-9][0-9]*)(\.[0-9]+)?")
# Longer strings are never parsed (bounded work); a plain number that long is too large.
TEXT_LENGTH_MAX = 64


class MoneyFormatError(ValueError):
    """A string that is not an exact decimal amount. `code` is the stable error code."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code


class Money:
    """An immutable amount of money in micro-units of the account's currency."""

    __slots__ = ("micros",)
    micros: int

    def __init__(self, micros: int) -> None:
        if type(micros) is not int:  # bool and float are refused on purpose
            raise TypeError(f"Money takes an int of micro-units, not {type(micros).__name__}")
        object.__setattr__(self, "micros", micros)

    def __setattr__(self, name: str, value: object) -> None:
        raise AttributeError("Money is immutable")

    # -- edges -------------------------------------------------------------------------
    @classmethod
    def parse(cls, text: str) -> Money:
        """Parse an exact decimal string such as "1000.00" or "0.1875"."""
        if not isinstance(text, str):
            raise MoneyFormatError("money_must_be_string", "money is a decimal string")
        if not _DECIMAL_STRING.fullmatch(text):
            raise MoneyFormatError("invalid_amount", f"not a decimal amount: {text[:40]!r}")
        if len(text) > TEXT_LENGTH_MAX:
            code = "amount_not_positive" if text.startswith("-") else "amount_too_large"
            raise MoneyFormatError(code, f"{text[:20]}… is far out of range")
        # Exact integer arithmetic on the digits: no rounding context can interfere.
        match = _DECIMAL_STRING.fullmatch(text)
        assert match is not None
        whole, fraction = match.group(1), (match.group(2) or ".")[1:]
        if fraction[DECIMALS_MAX:].strip("0"):
            raise MoneyFormatError("amount_too_precise", "amounts have at most 6 decimal places")
        micros = int(whole) * MICROS_PER_UNIT + int(
            fraction[:DECIMALS_MAX].ljust(DECIMALS_MAX, "0")
        )
        return cls(-micros if text.startswith("-") else micros)

    def format(self) -> str:
        """Exact decimal string: at least two decimals, no trailing zeros beyond them."""
        sign = "-" if self.micros < 0 else ""
        units, frac = divmod(abs(self.micros), MICROS_PER_UNIT)
        frac_text = f"{frac:06d}".rstrip("0").ljust(2, "0")
        return f"{sign}{units}.{frac_text}"

    def display(self) -> str:
        """For people (messages, pages): format() with the thousands grouped,
        "1,234,567.50"; still exact."""
        text = self.format()
        sign = "-" if text.startswith("-") else ""
        units, _, frac = text.lstrip("-").partition(".")
        return f"{sign}{int(units):,}.{frac}"

    def rounded(self, places: int = 2) -> Money:
        """To `places` decimals, half away from zero: for showing people an average or an
        estimate (what is charged and compared stays exact)."""
        assert 0 <= places <= 6
        step = 10 ** (6 - places)
        units = (abs(self.micros) + step // 2) // step * step
        return Money(units if self.micros >= 0 else -units)

    # -- arithmetic (Money with Money only) ------------------------------------------------
    @staticmethod
    def zero() -> Money:
        return Money(0)

    def _other(self, other: object) -> int:
        if not isinstance(other, Money):
            raise TypeError(f"Money cannot be combined with {type(other).__name__}")
        return other.micros

    def __add__(self, other: Money) -> Money:
        return Money(self.micros + self._other(other))

    def __sub__(self, other: Money) -> Money:
        return Money(self.micros - self._other(other))

    def __neg__(self) -> Money:
        return Money(-self.micros)

    def __mul__(self, count: int) -> Money:
        if type(count) is not int:
            raise TypeError("Money can only be multiplied by an int")
        return Money(self.micros * count)

    __rmul__ = __mul__

    def __eq__(self, other: object) -> bool:
        if isinstance(other, float):
            raise TypeError("Money is never compared with a float")
        return isinstance(other, Money) and other.micros == self.micros

    def __hash__(self) -> int:
        return hash(self.micros)

    def __lt__(self, other: Money) -> bool:
        return self.micros < self._other(other)

    def __le__(self, other: Money) -> bool:
        return self.micros <= self._other(other)

    def __gt__(self, other: Money) -> bool:
        return self.micros > self._other(other)

    def __ge__(self, other: Money) -> bool:
        return self.micros >= self._other(other)

    def __bool__(self) -> bool:
        return self.micros != 0

    def __repr__(self) -> str:
        return f"Money({self.format()})"

    def is_positive(self) -> bool:
        return self.micros > 0

    def is_negative(self) -> bool:
        return self.micros < 0
