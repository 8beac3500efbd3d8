"""Telephone numbers and SMS sender IDs: the shapes usagewatch accepts, checked once.

Two kinds of number reach usagewatch:

- **Recipients we send to** (an alert's phones): E.164 only, `+` then country code and
  number, 7-15 digits (`PHONE`; code `invalid_phone`). We dial them, so they must be
  complete.
- **Numbers on usage** (a call's `from`/`to`, an SMS's `to`, in single requests and in
  batches): what the platform dialled, which is not always E.164 — Exotel reports national
  forms such as `09800000001` and short codes such as `56767`. Accepted: an optional `+`
  and 3-15 digits (`NUMBER`). An SMS's `from` may also be an alphanumeric sender ID (DLT
  headers such as `EXOTEL`, Twilio's alphanumeric senders): 1-11 letters, digits, spaces
  and hyphens with at least one letter, not starting or ending with a space (`SENDER_ID`).
  Anything else is refused with `invalid_number` and the field's name, so a typo, a
  pasted name or a formula never becomes a billed record.
"""

from __future__ import annotations

import re
from typing import Final

from usagewatch.domain.errors import Invalid

PHONE: Final = re.compile(r"\+[1-9][0-9]{6,14}")
NUMBER: Final = re.compile(r"\+?[0-9]{3,15}")
# at least one letter; 1-11 of letters, digits, spaces, hyphens; no space at either end
SENDER_ID: Final = re.compile(
    r"(?=[^A-Za-z]*[A-Za-z])[A-Za-z0-9](?:[A-Za-z0-9 -]{0,9}[A-Za-z0-9-])?"
)


def check_number(value: object, field: str) -> str:
    """A call's or an SMS's number: an optional '+' and 3-15 digits."""
    if type(value) is not str or NUMBER.fullmatch(value) is None:
        raise Invalid("invalid_number", f"{field} is a number: '+' and 3-15 digits", field)
    return value


def check_sender(value: object, field: str = "from") -> str:
    """An SMS's sender: a number as `check_number`, or an alphanumeric sender ID."""
    if type(value) is str and (NUMBER.fullmatch(value) or SENDER_ID.fullmatch(value)):
        return value
    raise Invalid(
        "invalid_number",
        f"{field} is a number ('+' and 3-15 digits) or a sender ID: 1-11 letters, digits, "
        "spaces or hyphens",
        field,
    )
