"""Rating (pure): pulses and call prices, the max call duration that exactly inverts them,
GSM-7 / UCS-2 SMS segmentation, and the rate card with its overrides."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from usagewatch.domain.errors import Invalid
from usagewatch.domain.money import Money
from usagewatch.domain.rating import (
    CALL_SECONDS_MAX,
    GSM7_BASIC,
    GSM7_EXTENSION,
    RATE_MICROS_MAX,
    SMS_UNITS_MAX,
    CallDirection,
    CallPrice,
    RateCard,
    SmsSegments,
    SmsType,
    WhatsAppCategory,
    max_call_seconds,
    parse_call_direction,
    price_agent_seat,
    price_call,
    price_number_rental,
    price_sms,
    price_whatsapp,
    sms_segments,
)


def m(text: str) -> Money:
    return Money.parse(text)


def card(
    pulse_seconds: int = 60, outbound: str = "1.00", inbound: str = "0.25", **changes: Any
) -> RateCard:
    fields: dict[str, Any] = {
        "pulse_seconds": pulse_seconds,
        "voice_outbound_per_pulse": m(outbound),
        "voice_inbound_per_pulse": m(inbound),
        "sms": {"transactional": m("0.20"), "promotional": m("0.15"), "service": m("0.10")},
        "whatsapp": {
            "marketing": m("0.80"),
            "utility": m("0.35"),
            "authentication": m("0.30"),
            "service": m("0"),
        },
        "number_rental_monthly": m("500.00"),
        "agent_seat_monthly": m("1200.00"),
    }
    fields.update(changes)
    return RateCard(**fields)


def invalid_code(call: Any, *args: Any, **kwargs: Any) -> tuple[str, str | None]:
    with pytest.raises(Invalid) as caught:
        call(*args, **kwargs)
    return caught.value.code, caught.value.field


# -- voice: pulses -----------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("pulse_seconds", "duration", "pulses"),
    [
        (60, 0, 0),
        (60, 1, 1),
        (60, 59, 1),
        (60, 60, 1),
        (60, 61, 2),
        (60, 120, 2),
        (60, 121, 3),
        (60, 86_400, 1440),
        (15, 0, 0),
        (15, 1, 1),
        (15, 15, 1),
        (15, 16, 2),
        (15, 30, 2),
        (15, 31, 3),
        (15, 60, 4),
        (1, 0, 0),
        (1, 1, 1),
        (1, 61, 61),
        (1, 86_400, 86_400),
        (3600, 1, 1),
        (3600, 3601, 2),
        (7, 100, 15),
    ],
)
def test_partial_pulses_round_up(pulse_seconds: int, duration: int, pulses: int) -> None:
    rates = card(pulse_seconds, outbound="0.5", inbound="0.125")
    outbound = price_call(rates, CallDirection.OUTBOUND, duration)
    assert outbound == CallPrice(pulses, Money(500_000 * pulses))
    inbound = price_call(rates, "inbound", duration)
    assert inbound == CallPrice(pulses, Money(125_000 * pulses))


def test_a_sub_micro_looking_price_is_still_exact() -> None:
    rates = card(60, outbound="0.000001")
    assert price_call(rates, "outbound", 3600).price == Money(60)


@pytest.mark.parametrize("duration", [-1, 86_401, 10**12, True, 1.5, "60", None])
def test_durations_out_of_range_are_refused(duration: Any) -> None:
    assert invalid_code(price_call, card(), "outbound", duration) == (
        "invalid_duration",
        "duration_seconds",
    )


def test_unknown_direction_is_refused() -> None:
    assert invalid_code(price_call, card(), "sideways", 60)[0] == "invalid_call_direction"
    assert parse_call_direction("outbound") is CallDirection.OUTBOUND


# -- voice: max duration -----------------------------------------------------------------------
@pytest.mark.parametrize(
    ("pulse_seconds", "per_pulse", "available", "platform_max", "expected"),
    [
        (60, "1.00", "2.50", 10_800, 120),  # two whole pulses; the third does not fit
        (60, "1.00", "3.00", 10_800, 180),  # exactly three pulses: available ends at 0
        (60, "1.00", "0.999999", 10_800, 0),  # less than one pulse
        (60, "1.00", "0", 10_800, 0),
        (60, "1.00", "-5.00", 10_800, 0),  # an overrun account
        (60, "1.00", "1000.00", 10_800, 10_800),  # capped by the platform
        (60, "1.00", "1000.00", 100, 100),  # capped exactly, not rounded to whole pulses
        (60, "0", "0", 10_800, 10_800),  # free calls: only the platform cap
        (60, "0", "-1.00", 10_800, 10_800),
        (15, "0.30", "1.00", 10_800, 45),  # 3 pulses of 15 s = 0.90
        (1, "0.01", "0.055", 10_800, 5),
        (60, "1.00", "5.00", 0, 0),
    ],
)
def test_max_call_seconds_examples(
    pulse_seconds: int,
    per_pulse: str,
    available: str,
    platform_max: int,
    expected: int,
) -> None:
    rates = card(pulse_seconds, outbound=per_pulse)
    got = max_call_seconds(rates, CallDirection.OUTBOUND, m(available), platform_max)
    assert got == expected
    assert price_call(rates, "outbound", got).price <= max(m(available), Money.zero())


def test_max_call_seconds_uses_the_direction() -> None:
    rates = card(60, outbound="1.00", inbound="0.50")
    assert max_call_seconds(rates, "outbound", m("2.00"), 10_800) == 120
    assert max_call_seconds(rates, "inbound", m("2.00"), 10_800) == 240


@pytest.mark.parametrize("platform_max", [-1, 86_401, 1.0, True])
def test_max_call_seconds_refuses_a_bad_platform_max(platform_max: Any) -> None:
    assert invalid_code(max_call_seconds, card(), "outbound", m("1"), platform_max) == (
        "invalid_duration",
        "platform_max_seconds",
    )


def test_max_call_seconds_refuses_a_float_balance() -> None:
    with pytest.raises(TypeError):
        max_call_seconds(card(), "outbound", 1.0, 100)  # type: ignore[arg-type]


# -- voice: properties -------------------------------------------------------------------------
prices = st.one_of(
    st.just(0),
    st.integers(1, 10),
    st.integers(1, 10_000_000),
    st.integers(0, RATE_MICROS_MAX),
).map(Money)
pulse_lengths = st.one_of(st.sampled_from([1, 6, 15, 30, 60, 3600]), st.integers(1, 3600))
durations = st.integers(0, CALL_SECONDS_MAX)
directions = st.sampled_from(CallDirection)


@st.composite
def rate_cards(draw: st.DrawFn) -> RateCard:
    return RateCard(
        pulse_seconds=draw(pulse_lengths),
        voice_outbound_per_pulse=draw(prices),
        voice_inbound_per_pulse=draw(prices),
        sms={kind: draw(prices) for kind in SmsType},
        whatsapp={kind: draw(prices) for kind in WhatsAppCategory},
        number_rental_monthly=draw(prices),
        agent_seat_monthly=draw(prices),
    )


@given(rate_cards(), directions, durations)
def test_call_cost_is_whole_pulses_and_never_negative(
    rates: RateCard, direction: CallDirection, duration: int
) -> None:
    result = price_call(rates, direction, duration)
    assert result.price >= Money.zero()
    assert result.price == rates.voice_per_pulse(direction) * result.pulses
    # the fewest whole pulses that cover the duration
    assert result.pulses * rates.pulse_seconds >= duration
    assert (result.pulses - 1) * rates.pulse_seconds < duration or result.pulses == 0
    assert (result.pulses == 0) == (duration == 0)


@given(rate_cards(), directions, durations, durations)
def test_call_cost_never_decreases_as_duration_grows(
    rates: RateCard, direction: CallDirection, a: int, b: int
) -> None:
    shorter, longer = sorted((a, b))
    short, long = price_call(rates, direction, shorter), price_call(rates, direction, longer)
    assert short.pulses <= long.pulses
    assert short.price <= long.price


def pulses_price(rates: RateCard, direction: CallDirection, seconds: int) -> Money:
    """price_call, also past CALL_SECONDS_MAX (same rule) for the 'one more pulse' check."""
    if seconds <= CALL_SECONDS_MAX:
        return price_call(rates, direction, seconds).price
    return rates.voice_per_pulse(direction) * -(-seconds // rates.pulse_seconds)


@given(
    rate_cards(),
    directions,
    st.one_of(st.integers(-(10**9), 10**13), st.integers(-10, 10**7)).map(Money),
    st.one_of(st.just(10_800), st.integers(0, CALL_SECONDS_MAX)),
)
def test_max_call_seconds_is_exact(
    rates: RateCard, direction: CallDirection, available: Money, platform_max: int
) -> None:
    best = max_call_seconds(rates, direction, available, platform_max)
    per_pulse = rates.voice_per_pulse(direction)
    assert 0 <= best <= platform_max
    if not per_pulse:
        assert best == platform_max
        return
    if available < per_pulse:
        assert best == 0
        return
    # charging exactly `best` keeps available >= 0 ...
    assert price_call(rates, direction, best).price <= available
    if best < platform_max:
        # ... uncapped, it is whole pulses and one more pulse would not fit
        assert best % rates.pulse_seconds == 0
        assert pulses_price(rates, direction, best + rates.pulse_seconds) > available
        # and no longer duration at all is affordable
        assert pulses_price(rates, direction, best + 1) > available


@given(rate_cards(), directions, st.integers(0, 10**12).map(Money), durations)
def test_every_duration_up_to_the_max_is_affordable(
    rates: RateCard, direction: CallDirection, available: Money, duration: int
) -> None:
    best = max_call_seconds(rates, direction, available, CALL_SECONDS_MAX)
    affordable = price_call(rates, direction, duration).price <= available
    assert affordable == (duration <= best)


# -- SMS segmentation --------------------------------------------------------------------------
EMOJI = "\U0001f600"  # two UTF-16 code units
CYRILLIC = "ж"  # outside GSM-7, one UTF-16 code unit


@pytest.mark.parametrize(
    ("body", "encoding", "units", "characters", "encoded_length"),
    [
        ("", "GSM-7", 1, 0, 0),
        ("hello", "GSM-7", 1, 5, 5),
        ("a" * 160, "GSM-7", 1, 160, 160),
        ("a" * 161, "GSM-7", 2, 161, 161),
        ("a" * 306, "GSM-7", 2, 306, 306),
        ("a" * 307, "GSM-7", 3, 307, 307),
        ("a" * 459, "GSM-7", 3, 459, 459),
        ("a" * 460, "GSM-7", 4, 460, 460),
        ("a" * 1530, "GSM-7", 10, 1530, 1530),
        # extension characters take two septets
        ("€" * 80, "GSM-7", 1, 80, 160),
        ("€" * 80 + "a", "GSM-7", 2, 81, 161),
        ("a" * 159 + "€", "GSM-7", 2, 160, 161),
        ("a" * 158 + "{", "GSM-7", 1, 159, 160),
        ("\f" * 80, "GSM-7", 1, 80, 160),
        ("^{}\\[~]|€", "GSM-7", 1, 9, 18),
        # an escape pair is never split: 152 + [2] would straddle the first boundary
        ("a" * 152 + "€" + "a" * 151, "GSM-7", 2, 304, 305),
        ("a" * 152 + "€" + "a" * 152, "GSM-7", 3, 305, 306),
        ("a" * 153 + "€" + "a" * 151, "GSM-7", 2, 305, 306),
        # the whole GSM-7 default alphabet (and CR/LF) stays GSM-7
        ("@£$¥èéùìòÇ\nØø\rÅåΔ_ΦΓΛΩΠΨΣΘΞÆæßÉ¤¡ÄÖÑÜ§¿äöñüà", "GSM-7", 1, 44, 44),
        # UCS-2
        (CYRILLIC, "UCS-2", 1, 1, 1),
        (CYRILLIC * 70, "UCS-2", 1, 70, 70),
        (CYRILLIC * 71, "UCS-2", 2, 71, 71),
        (CYRILLIC * 134, "UCS-2", 2, 134, 134),
        (CYRILLIC * 135, "UCS-2", 3, 135, 135),
        (CYRILLIC * 670, "UCS-2", 10, 670, 670),
        ("नमस्ते", "UCS-2", 1, 6, 6),
        # one character outside GSM-7 makes the whole body UCS-2
        ("a" * 69 + CYRILLIC, "UCS-2", 1, 70, 70),
        ("a" * 70 + CYRILLIC, "UCS-2", 2, 71, 71),
        ("€" * 35 + CYRILLIC, "UCS-2", 1, 36, 36),  # € is one UTF-16 unit in UCS-2
        ("ç", "UCS-2", 1, 1, 1),  # only the capital Ç is in GSM-7
        ("\x1b", "UCS-2", 1, 1, 1),  # the escape itself is not text
        ("`", "UCS-2", 1, 1, 1),
        # emoji: two UTF-16 code units each, a surrogate pair is never split
        (EMOJI, "UCS-2", 1, 1, 2),
        (EMOJI * 35, "UCS-2", 1, 35, 70),
        (EMOJI * 35 + "a", "UCS-2", 2, 36, 71),
        (EMOJI * 36, "UCS-2", 2, 36, 72),
        (EMOJI * 67, "UCS-2", 3, 67, 134),  # 33 per unit: 33 + 33 + 1
        (CYRILLIC * 66 + EMOJI + CYRILLIC * 65, "UCS-2", 2, 132, 133),
        (CYRILLIC * 66 + EMOJI + CYRILLIC * 66, "UCS-2", 3, 133, 134),
    ],
)
def test_sms_segments(
    body: str, encoding: str, units: int, characters: int, encoded_length: int
) -> None:
    assert sms_segments(body) == SmsSegments(encoding, units, characters, encoded_length)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    "body",
    [
        "a" * 1531,
        "€" * 766,
        "a" * 10**6,
        CYRILLIC * 671,
        EMOJI * 336,
        "a" * 152 + "€" + "a" * 1377,  # 1,531 septets
    ],
)
def test_sms_over_the_maximum_units_is_refused(body: str) -> None:
    assert invalid_code(sms_segments, body) == ("sms_too_long", "body")


def test_the_gsm_tables() -> None:
    assert len(GSM7_BASIC) == 127 and len(GSM7_EXTENSION) == 10
    assert "\x1b" not in GSM7_BASIC


gsm_text = st.text(alphabet=st.sampled_from(sorted(GSM7_BASIC | GSM7_EXTENSION)), max_size=800)
any_text = st.text(max_size=700)


@given(gsm_text, gsm_text)
def test_gsm7_units_never_decrease_as_the_body_grows(head: str, tail: str) -> None:
    short = sms_segments(head)
    assert short.encoding == "GSM-7"
    try:
        long = sms_segments(head + tail)
    except Invalid as exc:
        assert exc.code == "sms_too_long"
        return
    assert long.encoding == "GSM-7"
    assert short.units <= long.units


@given(any_text, any_text)
def test_units_never_decrease_as_the_body_grows(head: str, tail: str) -> None:
    try:
        long = sms_segments(head + tail)
    except Invalid as exc:
        assert exc.code == "sms_too_long"
        return
    assert sms_segments(head).units <= long.units


@given(any_text)
def test_units_cover_the_encoded_length(body: str) -> None:
    try:
        result = sms_segments(body)
    except Invalid as exc:
        assert exc.code == "sms_too_long"
        return
    single, per_unit = (160, 153) if result.encoding == "GSM-7" else (70, 67)
    assert 1 <= result.units <= SMS_UNITS_MAX
    if result.encoded_length <= single:
        assert result.units == 1
    else:
        assert result.units >= -(-result.encoded_length // per_unit)
        # a character never splits, so at most one unit slot per boundary is wasted
        assert result.units <= -(-result.encoded_length // (per_unit - 1))


# -- SMS prices --------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("sms_type", "units", "price"),
    [
        (SmsType.TRANSACTIONAL, 1, "0.20"),
        ("transactional", 3, "0.60"),
        ("promotional", 10, "1.50"),
        (SmsType.SERVICE, 2, "0.20"),
    ],
)
def test_price_sms(sms_type: Any, units: int, price: str) -> None:
    assert price_sms(card(), sms_type, units) == m(price)


@pytest.mark.parametrize("units", [0, -1, SMS_UNITS_MAX + 1, True, 1.0, "1", None])
def test_bad_units_are_refused(units: Any) -> None:
    assert invalid_code(price_sms, card(), "transactional", units) == ("invalid_units", "units")


@pytest.mark.parametrize("sms_type", ["bulk", "", "TRANSACTIONAL", None, 1])
def test_unknown_sms_types_are_refused(sms_type: Any) -> None:
    assert invalid_code(price_sms, card(), sms_type, 1) == ("invalid_sms_type", "type")


@given(rate_cards(), st.sampled_from(SmsType), st.integers(1, SMS_UNITS_MAX))
def test_price_sms_is_units_times_the_price(rates: RateCard, kind: SmsType, units: int) -> None:
    assert price_sms(rates, kind, units) == rates.sms[kind] * units
    assert price_sms(rates, kind.value, units) >= Money.zero()


# -- WhatsApp, numbers, seats -------------------------------------------------------------------
def test_price_whatsapp() -> None:
    rates = card()
    assert price_whatsapp(rates, WhatsAppCategory.MARKETING) == m("0.80")
    assert price_whatsapp(rates, "utility") == m("0.35")
    assert price_whatsapp(rates, "authentication") == m("0.30")
    assert price_whatsapp(rates, "service") == Money.zero()


@pytest.mark.parametrize("category", ["promo", "", None, "transactional"])
def test_unknown_whatsapp_categories_are_refused(category: Any) -> None:
    assert invalid_code(price_whatsapp, card(), category) == (
        "invalid_whatsapp_category",
        "category",
    )


def test_monthly_prices() -> None:
    assert price_number_rental(card()) == m("500.00")
    assert price_agent_seat(card()) == m("1200.00")


# -- the rate card -----------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("changes", "code", "field"),
    [
        ({"pulse_seconds": 0}, "invalid_pulse_seconds", "voice.pulse_seconds"),
        ({"pulse_seconds": 3601}, "invalid_pulse_seconds", "voice.pulse_seconds"),
        ({"pulse_seconds": True}, "validation_error", "voice.pulse_seconds"),
        ({"pulse_seconds": 60.0}, "validation_error", "voice.pulse_seconds"),
        ({"voice_outbound_per_pulse": m("-0.01")}, "invalid_rate", "voice.outbound_per_pulse"),
        (
            {"voice_inbound_per_pulse": m("1000000.000001")},
            "invalid_rate",
            "voice.inbound_per_pulse",
        ),
        ({"voice_inbound_per_pulse": 1.0}, "validation_error", "voice.inbound_per_pulse"),
        ({"number_rental_monthly": m("-1")}, "invalid_rate", "number_rental_monthly"),
        ({"agent_seat_monthly": "10.00"}, "validation_error", "agent_seat_monthly"),
        ({"sms": {"transactional": m("1"), "promotional": m("1")}}, "missing_field", "sms"),
        (
            {"sms": {"transactional": m("1"), "promotional": m("1"), "service": m("-1")}},
            "invalid_rate",
            "sms.service",
        ),
        (
            {"sms": {"transactional": m("1"), "promotional": m("1"), "service": m("1"), "x": 1}},
            "unknown_field",
            "sms.x",
        ),
        ({"whatsapp": []}, "validation_error", "whatsapp"),
    ],
)
def test_bad_rate_cards_are_refused(changes: dict[str, Any], code: str, field: str) -> None:
    assert invalid_code(card, **changes) == (code, field)


def test_the_rate_card_is_immutable_and_hashable() -> None:
    rates = card()
    with pytest.raises(TypeError):
        rates.sms[SmsType.SERVICE] = Money.zero()  # type: ignore[index]
    assert card() == rates and hash(card()) == hash(rates)
    assert set(rates.sms) == set(SmsType) and set(rates.whatsapp) == set(WhatsAppCategory)
    assert all(isinstance(key, SmsType) for key in rates.sms)


def test_merged_overlays_a_partial_override() -> None:
    defaults = card()
    rates = defaults.merged(
        {
            "voice": {"pulse_seconds": 15, "outbound_per_pulse": m("0.25")},
            "sms": {"promotional": m("0")},  # a zero price is a real override
            "whatsapp": {"marketing": None},  # null keeps the default
            "agent_seat_monthly": m("999.00"),
        }
    )
    assert rates.pulse_seconds == 15
    assert rates.voice_outbound_per_pulse == m("0.25")
    assert rates.voice_inbound_per_pulse == defaults.voice_inbound_per_pulse
    assert rates.sms[SmsType.PROMOTIONAL] == Money.zero()
    assert rates.sms[SmsType.TRANSACTIONAL] == m("0.20")
    assert rates.whatsapp == defaults.whatsapp
    assert rates.number_rental_monthly == defaults.number_rental_monthly
    assert rates.agent_seat_monthly == m("999.00")
    assert defaults == card()  # the defaults are untouched
    assert defaults.merged({}) == defaults
    assert defaults.merged({"voice": None, "sms": {}}) == defaults


def test_as_dict_is_the_api_shape_and_round_trips() -> None:
    other = card(15, outbound="0.33", inbound="0", number_rental_monthly=m("1"))
    shape = other.as_dict()
    assert shape["voice"] == {
        "pulse_seconds": 15,
        "outbound_per_pulse": m("0.33"),
        "inbound_per_pulse": Money.zero(),
    }
    assert set(shape) == {"voice", "sms", "whatsapp", "number_rental_monthly", "agent_seat_monthly"}
    assert set(shape["sms"]) == {"transactional", "promotional", "service"}
    assert card().merged(shape) == other


@pytest.mark.parametrize(
    ("overrides", "code", "field"),
    [
        ({"voices": {}}, "unknown_field", "voices"),
        ({"voice": {"pulse": 30}}, "unknown_field", "voice.pulse"),
        ({"sms": {"bulk": m("1")}}, "unknown_field", "sms.bulk"),
        ({"whatsapp": {"promo": m("1")}}, "unknown_field", "whatsapp.promo"),
        ({"voice": 60}, "validation_error", "voice"),
        ({"voice": {"pulse_seconds": 0}}, "invalid_pulse_seconds", "voice.pulse_seconds"),
        ({"voice": {"pulse_seconds": "60"}}, "validation_error", "voice.pulse_seconds"),
        ({"voice": {"inbound_per_pulse": m("-1")}}, "invalid_rate", "voice.inbound_per_pulse"),
        ({"sms": {"service": "0.10"}}, "validation_error", "sms.service"),
        ({"whatsapp": {"utility": m("-0.01")}}, "invalid_rate", "whatsapp.utility"),
        ({"number_rental_monthly": m("-1")}, "invalid_rate", "number_rental_monthly"),
    ],
)
def test_merged_refuses_bad_overrides(
    overrides: dict[str, Any], code: str, field: str | None
) -> None:
    assert invalid_code(card().merged, overrides) == (code, field)


@given(rate_cards(), rate_cards())
def test_merging_a_whole_card_gives_that_card(defaults: RateCard, other: RateCard) -> None:
    assert defaults.merged(other.as_dict()) == other
