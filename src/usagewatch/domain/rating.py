"""Rating: what a call, an SMS, a WhatsApp conversation, a number rental or an agent seat
costs under an account's rate card. Pure functions; no clock, no storage.

The rounding rule (the only one in the product)
-----------------------------------------------
Every price in a rate card is an exact amount of micro-units per *unit of usage*: per
pulse of a call, per SMS unit (segment), per WhatsApp conversation, per month of a number
or seat. A charge is always a whole number of those units times that price, so it is an
exact multiple of the per-unit micro-unit price and nothing is ever rounded, with one
exception: a call's duration is converted into pulses by rounding a partial pulse UP

    pulses = ceil(duration_seconds / pulse_seconds)      (0 for a 0-second call)
    price  = pulses * per_pulse_price

SMS units are whole by construction (segments, see `sms_segments`). Consequently a cost is
never negative (prices are >= 0) and never decreases as usage grows (ceil is monotonic).

`max_call_seconds` inverts `price_call` exactly (it is built from the same pulse rule), so
the gate that authorizes a call and the code that settles it can never disagree.

Limits (all validated, with stable error codes):
- a rate card's `pulse_seconds` is 1..3600 (`invalid_pulse_seconds`); every price is
  0..RATE_UNITS_MAX currency units (`invalid_rate`);
- a call duration is an int of 0..CALL_SECONDS_MAX seconds (`invalid_duration`);
- an SMS is 1..SMS_UNITS_MAX units (`invalid_units`); a body that needs more is refused
  (`sms_too_long`).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, replace
from enum import StrEnum
from types import MappingProxyType
from typing import Any, Final, Literal, TypeVar

from usagewatch.domain.errors import Invalid
from usagewatch.domain.money import MICROS_PER_UNIT, Money

PULSE_SECONDS_MIN: Final = 1
PULSE_SECONDS_MAX: Final = 3600
CALL_SECONDS_MAX: Final = 86_400  # one day: no call is longer
# A single price in a rate card may not exceed this many currency units. With at most
# 86,400 pulses per call the largest possible call price (8.64e16 micro-units) stays far
# below the 64-bit integer columns' limit (9.2e18).
RATE_UNITS_MAX: Final = 1_000_000
RATE_MICROS_MAX: Final = RATE_UNITS_MAX * MICROS_PER_UNIT

# -- SMS segmentation constants ----------------------------------------------------------
SMS_UNITS_MAX: Final = 10  # the longest concatenated SMS we rate (and accept as `units`)
GSM7_SINGLE: Final = 160  # septets in a single-unit GSM-7 message
GSM7_PER_UNIT: Final = 153  # septets per unit of a concatenated GSM-7 message (7 for the UDH)
UCS2_SINGLE: Final = 70  # UTF-16 code units in a single-unit UCS-2 message
UCS2_PER_UNIT: Final = 67  # UTF-16 code units per unit of a concatenated UCS-2 message
# No body longer than this can fit SMS_UNITS_MAX units in either encoding; checked first so
# that counting is bounded work.
SMS_BODY_CHARACTERS_MAX: Final = SMS_UNITS_MAX * GSM7_PER_UNIT

# GSM 03.38 default alphabet (0x00-0x7F), without 0x1B (the escape to the extension table).
GSM7_BASIC: Final = frozenset(
    "@£$¥èéùìòÇ\nØø\rÅå"
    "Δ_ΦΓΛΩΠΨΣΘΞÆæßÉ"  # 0x1B (escape) left out on purpose
    " !\"#¤%&'()*+,-./"
    "0123456789:;<=>?"
    "¡ABCDEFGHIJKLMNO"
    "PQRSTUVWXYZÄÖÑÜ§"
    "¿abcdefghijklmno"
    "pqrstuvwxyzäöñüà"
)
# The extension table: each takes two septets (escape + code).
GSM7_EXTENSION: Final = frozenset("\f^{}\\[~]|€")
assert len(GSM7_BASIC) == 127 and not GSM7_BASIC & GSM7_EXTENSION


class CallDirection(StrEnum):
    OUTBOUND = "outbound"
    INBOUND = "inbound"


class SmsType(StrEnum):
    TRANSACTIONAL = "transactional"
    PROMOTIONAL = "promotional"
    SERVICE = "service"


class WhatsAppCategory(StrEnum):
    MARKETING = "marketing"
    UTILITY = "utility"
    AUTHENTICATION = "authentication"
    SERVICE = "service"


_E = TypeVar("_E", bound=StrEnum)


def _parse_enum(enum: type[_E], value: object, code: str, field: str) -> _E:
    if isinstance(value, enum):
        return value
    if isinstance(value, str):
        try:
            return enum(value)
        except ValueError:
            pass
    allowed = ", ".join(member.value for member in enum)
    raise Invalid(code, f"{str(value)[:40]!r} is not one of {allowed}", field)


def parse_call_direction(value: object) -> CallDirection:
    """A CallDirection from its string; anything else -> Invalid("invalid_call_direction")."""
    return _parse_enum(CallDirection, value, "invalid_call_direction", "direction")


def parse_sms_type(value: object) -> SmsType:
    """An SmsType from its string; anything else -> Invalid("invalid_sms_type")."""
    return _parse_enum(SmsType, value, "invalid_sms_type", "type")


def parse_whatsapp_category(value: object) -> WhatsAppCategory:
    """A WhatsAppCategory from its string; anything else -> Invalid("invalid_whatsapp_category")."""
    return _parse_enum(WhatsAppCategory, value, "invalid_whatsapp_category", "category")


# -- the rate card -------------------------------------------------------------------------
def _check_rate(value: object, field: str) -> Money:
    if not isinstance(value, Money):
        raise Invalid("validation_error", "a price must be Money", field)
    if value.is_negative() or value.micros > RATE_MICROS_MAX:
        raise Invalid("invalid_rate", f"a price is 0 to {RATE_UNITS_MAX:,} currency units", field)
    return value


def _check_pulse_seconds(value: object, field: str = "voice.pulse_seconds") -> int:
    if type(value) is not int:  # bool refused on purpose
        raise Invalid("validation_error", "pulse_seconds must be an integer", field)
    if not PULSE_SECONDS_MIN <= value <= PULSE_SECONDS_MAX:
        raise Invalid(
            "invalid_pulse_seconds",
            f"pulse_seconds must be {PULSE_SECONDS_MIN} to {PULSE_SECONDS_MAX}",
            field,
        )
    return value


def _price_table(enum: type[_E], table: object, section: str) -> Mapping[_E, Money]:
    """A complete, read-only {member: price} table; keys may be the members' strings."""
    if not isinstance(table, Mapping):
        raise Invalid("validation_error", f"{section} must be an object", section)
    known = {member.value for member in enum}
    for key in table:
        if not isinstance(key, str) or key not in known:
            raise Invalid("unknown_field", f"unknown {section} entry {key!r}", f"{section}.{key}")
    prices: dict[_E, Money] = {}
    for member in enum:
        if member.value not in table:
            raise Invalid("missing_field", f"{section}.{member.value} has no price", section)
        prices[member] = _check_rate(table[member.value], f"{section}.{member.value}")
    return MappingProxyType(prices)


@dataclass(frozen=True)
class RateCard:
    """An account's prices (platform defaults overlaid with the account's overrides).

    Construct with plain dicts for `sms` and `whatsapp` (keys: the enum members or their
    strings, all of them present); they are stored as read-only mappings keyed by the enum.
    Invalid values raise `Invalid` with a stable code and the dotted field of API.md's shape.
    """

    pulse_seconds: int
    voice_outbound_per_pulse: Money
    voice_inbound_per_pulse: Money
    sms: Mapping[SmsType, Money]
    whatsapp: Mapping[WhatsAppCategory, Money]
    number_rental_monthly: Money
    agent_seat_monthly: Money

    def __post_init__(self) -> None:
        _check_pulse_seconds(self.pulse_seconds)
        _check_rate(self.voice_outbound_per_pulse, "voice.outbound_per_pulse")
        _check_rate(self.voice_inbound_per_pulse, "voice.inbound_per_pulse")
        object.__setattr__(self, "sms", _price_table(SmsType, self.sms, "sms"))
        object.__setattr__(
            self, "whatsapp", _price_table(WhatsAppCategory, self.whatsapp, "whatsapp")
        )
        _check_rate(self.number_rental_monthly, "number_rental_monthly")
        _check_rate(self.agent_seat_monthly, "agent_seat_monthly")

    def __hash__(self) -> int:
        return hash(
            (
                self.pulse_seconds,
                self.voice_outbound_per_pulse,
                self.voice_inbound_per_pulse,
                tuple(self.sms.items()),
                tuple(self.whatsapp.items()),
                self.number_rental_monthly,
                self.agent_seat_monthly,
            )
        )

    def voice_per_pulse(self, direction: CallDirection | str) -> Money:
        if parse_call_direction(direction) is CallDirection.OUTBOUND:
            return self.voice_outbound_per_pulse
        return self.voice_inbound_per_pulse

    def as_dict(self) -> dict[str, Any]:
        """The card in API.md's rates shape (prices still Money; format them at the edge)."""
        return {
            "voice": {
                "pulse_seconds": self.pulse_seconds,
                "outbound_per_pulse": self.voice_outbound_per_pulse,
                "inbound_per_pulse": self.voice_inbound_per_pulse,
            },
            "sms": {kind.value: price for kind, price in self.sms.items()},
            "whatsapp": {kind.value: price for kind, price in self.whatsapp.items()},
            "number_rental_monthly": self.number_rental_monthly,
            "agent_seat_monthly": self.agent_seat_monthly,
        }

    def merged(self, overrides: Mapping[str, Any]) -> RateCard:
        """This card (the platform defaults) with a partial override in API.md's rates shape
        laid over it, prices already parsed to Money and `pulse_seconds` an int:

            {"voice": {"pulse_seconds"?, "outbound_per_pulse"?, "inbound_per_pulse"?}?,
             "sms": {"transactional"?, "promotional"?, "service"?}?,
             "whatsapp": {"marketing"?, "utility"?, "authentication"?, "service"?}?,
             "number_rental_monthly"?, "agent_seat_monthly"?}

        An absent entry or a `None` keeps the default. An unknown key raises
        Invalid("unknown_field") naming the dotted field; a wrong type "validation_error";
        a bad value "invalid_rate" / "invalid_pulse_seconds".
        """
        if not isinstance(overrides, Mapping):
            raise Invalid("validation_error", "rates must be an object")
        for key in overrides:
            if key not in _TOP_LEVEL:
                raise Invalid("unknown_field", f"unknown rates entry {key!r}", str(key))
        voice = _section(overrides, "voice", _VOICE_FIELDS)
        changes: dict[str, Any] = {
            "sms": {
                **{k.value: v for k, v in self.sms.items()},
                **_section(overrides, "sms", SmsType),
            },
            "whatsapp": {
                **{k.value: v for k, v in self.whatsapp.items()},
                **_section(overrides, "whatsapp", WhatsAppCategory),
            },
        }
        for source, target in (
            ("pulse_seconds", "pulse_seconds"),
            ("outbound_per_pulse", "voice_outbound_per_pulse"),
            ("inbound_per_pulse", "voice_inbound_per_pulse"),
        ):
            if source in voice:
                changes[target] = voice[source]
        for key in ("number_rental_monthly", "agent_seat_monthly"):
            if overrides.get(key) is not None:
                changes[key] = overrides[key]
        # Every field is re-validated by __post_init__ (types and ranges, dotted field names).
        return replace(self, **changes)


_TOP_LEVEL: Final = frozenset(
    {"voice", "sms", "whatsapp", "number_rental_monthly", "agent_seat_monthly"}
)
_VOICE_FIELDS: Final = ("pulse_seconds", "outbound_per_pulse", "inbound_per_pulse")


def _section(overrides: Mapping[str, Any], name: str, fields: Iterable[str]) -> dict[str, Any]:
    """The non-null entries of one nested section of an override (absent/None -> {})."""
    value = overrides.get(name)
    if value is None:
        return {}
    if not isinstance(value, Mapping):
        raise Invalid("validation_error", f"{name} must be an object", name)
    known = {str(field) for field in fields}
    for key in value:
        if key not in known:
            raise Invalid("unknown_field", f"unknown {name} entry {key!r}", f"{name}.{key}")
    return {str(key): item for key, item in value.items() if item is not None}


# -- voice -------------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class CallPrice:
    pulses: int
    price: Money


def check_duration(duration_seconds: object, field: str = "duration_seconds") -> int:
    """A call duration: an int of 0..CALL_SECONDS_MAX seconds, else Invalid("invalid_duration")."""
    if type(duration_seconds) is not int or not 0 <= duration_seconds <= CALL_SECONDS_MAX:
        raise Invalid(
            "invalid_duration",
            f"a duration is a whole number of 0 to {CALL_SECONDS_MAX} seconds",
            field,
        )
    return duration_seconds


def pulses_for(duration_seconds: int, pulse_seconds: int) -> int:
    """ceil(duration / pulse): a partial pulse counts as a whole one; 0 s is 0 pulses."""
    return -(-duration_seconds // pulse_seconds)


def price_call(card: RateCard, direction: CallDirection | str, duration_seconds: int) -> CallPrice:
    """The price of a call of `duration_seconds` (0..86,400): whole pulses, rounded up."""
    duration = check_duration(duration_seconds)
    pulses = pulses_for(duration, card.pulse_seconds)
    return CallPrice(pulses, card.voice_per_pulse(direction) * pulses)


def max_call_seconds(
    card: RateCard,
    direction: CallDirection | str,
    money_available: Money,
    platform_max_seconds: int,
) -> int:
    """The longest call that `money_available` pays for, by the rule of `price_call`.

    Uncapped, the answer is a whole number of pulses n * pulse_seconds with
    n * per_pulse <= money_available < (n + 1) * per_pulse: charging exactly that duration
    keeps the money >= 0 and one more pulse would not fit. It is then bounded by
    `platform_max_seconds` exactly (not rounded down to whole pulses): the cap limits the
    call's length, not its money, and a capped duration costs at most as many pulses as
    the uncapped one, so it is always affordable too.

    0 when money_available is below one pulse (or negative); `platform_max_seconds` when
    the per-pulse price is zero. Pass as `money_available` the smallest money headroom of
    every limit that applies (balance, caps, budgets): the result is then the duration
    all of them permit. `platform_max_seconds` is 0..86,400 (else "invalid_duration").
    """
    cap = check_duration(platform_max_seconds, "platform_max_seconds")
    per_pulse = card.voice_per_pulse(direction)
    if not isinstance(money_available, Money):
        raise TypeError("money_available must be Money")
    if not per_pulse:
        return cap
    if money_available < per_pulse:
        return 0
    pulses = money_available.micros // per_pulse.micros
    return min(pulses * card.pulse_seconds, cap)


# -- SMS ---------------------------------------------------------------------------------
Encoding = Literal["GSM-7", "UCS-2"]


@dataclass(frozen=True, slots=True)
class SmsSegments:
    """How a body is sent: its encoding, its units (segments, what is charged), its
    characters (code points, what a person counts) and its encoded length (septets for
    GSM-7, extension characters counting 2; UTF-16 code units for UCS-2, an emoji 2)."""

    encoding: Encoding
    units: int
    characters: int
    encoded_length: int


def _septets(character: str) -> int:
    """1 or 2 septets in GSM-7; 0 when the character is not in GSM-7 at all."""
    if character in GSM7_BASIC:
        return 1
    if character in GSM7_EXTENSION:
        return 2
    return 0


def _utf16_units(character: str) -> int:
    return 2 if ord(character) > 0xFFFF else 1


def _count_units(sizes: list[int], single: int, per_unit: int) -> int:
    """Units for characters of these sizes: one when they all fit `single`, else filled
    segment by segment with `per_unit`, never splitting a character (an escape pair or a
    surrogate pair) across two segments."""
    if sum(sizes) <= single:
        return 1
    units, used = 1, 0
    for size in sizes:
        if used + size > per_unit:
            units, used = units + 1, 0
        used += size
    return units


def sms_segments(body: str) -> SmsSegments:
    """Segment a body as a GSM network would: GSM-7 (160 septets in one unit, 153 per unit
    when split) when every character is in the GSM 03.38 default alphabet or its extension
    table, otherwise UCS-2 (70 UTF-16 code units in one unit, 67 per unit). An empty body is
    one unit. More than SMS_UNITS_MAX units -> Invalid("sms_too_long")."""
    if not isinstance(body, str):
        raise Invalid("validation_error", "body must be a string", "body")
    if len(body) > SMS_BODY_CHARACTERS_MAX:  # cannot fit in either encoding: bounded work
        raise Invalid("sms_too_long", f"an SMS is at most {SMS_UNITS_MAX} units", "body")
    septets = [_septets(character) for character in body]
    if all(septets):
        encoding: Encoding = "GSM-7"
        sizes = septets
        units = _count_units(sizes, GSM7_SINGLE, GSM7_PER_UNIT)
    else:
        encoding = "UCS-2"
        sizes = [_utf16_units(character) for character in body]
        units = _count_units(sizes, UCS2_SINGLE, UCS2_PER_UNIT)
    if units > SMS_UNITS_MAX:
        raise Invalid("sms_too_long", f"an SMS is at most {SMS_UNITS_MAX} units", "body")
    return SmsSegments(encoding, units, len(body), sum(sizes))


def check_sms_units(units: object, field: str = "units") -> int:
    """SMS units: an int of 1..SMS_UNITS_MAX, else Invalid("invalid_units")."""
    if type(units) is not int or not 1 <= units <= SMS_UNITS_MAX:
        raise Invalid("invalid_units", f"units is a whole number of 1 to {SMS_UNITS_MAX}", field)
    return units


def price_sms(card: RateCard, sms_type: SmsType | str, units: int) -> Money:
    """units x the per-unit price of the SMS type."""
    kind = parse_sms_type(sms_type)
    return card.sms[kind] * check_sms_units(units)


# -- WhatsApp, numbers, seats ----------------------------------------------------------------
def price_whatsapp(card: RateCard, category: WhatsAppCategory | str) -> Money:
    """The price of one conversation of this category."""
    return card.whatsapp[parse_whatsapp_category(category)]


def price_number_rental(card: RateCard) -> Money:
    """One month of a virtual number (ExoPhone) rental."""
    return card.number_rental_monthly


def price_agent_seat(card: RateCard) -> Money:
    """One month of a contact-center agent seat."""
    return card.agent_seat_monthly
