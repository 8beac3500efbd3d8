"""The traffic simulator (`usagewatch simulate`, and the demo's live traffic) against a real
uvicorn server: its SMS get their delivery reports a few seconds later, through the public
status endpoint, and the rollups' delivered count follows them."""

from __future__ import annotations

from tests.conftest import ADMIN_TOKEN
from usagewatch.bootstrap import Container
from usagewatch.domain.ledger import LotKind
from usagewatch.domain.money import Money
from usagewatch.service.reports import parse_period
from usagewatch.simulator import Traffic

TODAY = "2026-11-28"  # the fixture clock's local date (Asia/Kolkata)


def delivered(container: Container) -> tuple[int, int]:
    """(SMS charged today, of them delivered) from the services report (the rollups)."""
    b = container.reports.services("sim", parse_period(TODAY, TODAY))
    return b.sms_messages, b.sms_delivered


def simulated(container: Container, url: str, seed: int) -> Traffic:
    """An account with plenty of money, and a simulator sending to it."""
    container.accounts.create_account("Simulated Ltd", "sim", timezone="Asia/Kolkata")
    container.ledger.add_credit("sim", LotKind.PAID, Money.parse("10000.00"))
    return Traffic(url, ADMIN_TOKEN, "sim", seed=seed)


def test_the_simulators_sms_get_delivery_reports_that_move_the_delivered_count(
    container: Container, live_server: str
) -> None:
    traffic = simulated(container, live_server, seed=11)
    for _ in range(40):
        traffic.step()
    sent = traffic.outcomes["sms ok"]
    assert sent >= 10, traffic.summary()
    # the reports come a few seconds after their SMS: none has arrived yet
    assert delivered(container) == (sent, 0)
    assert not any(name.startswith("sms report") for name in traffic.outcomes)

    traffic.finish()  # posts every pending report (and ends the open calls)
    reports_delivered = traffic.outcomes["sms report delivered ok"]
    reports_failed = traffic.outcomes["sms report failed ok"]
    assert reports_delivered + reports_failed == sent, traffic.summary()
    assert reports_delivered >= sent * 0.7  # ~95% delivered, the rest failed
    assert delivered(container) == (sent, reports_delivered)
    assert not [name for name in traffic.outcomes if "refused" in name], traffic.summary()
    finished = dict(traffic.outcomes)
    traffic.finish()  # nothing left to send
    assert traffic.outcomes == finished


def test_a_report_is_posted_by_the_first_step_after_it_is_due(
    container: Container, live_server: str
) -> None:
    traffic = simulated(container, live_server, seed=3)
    while not traffic.outcomes["sms ok"]:
        traffic.step()
    assert delivered(container) == (1, 0)
    (report,) = traffic._pending_reports
    traffic._pending_reports[0] = (0.0, *report[1:])  # its time has come
    traffic.step()
    outcome = report[2]
    assert traffic.outcomes[f"sms report {outcome} ok"] == 1
    assert delivered(container)[1] == (1 if outcome == "delivered" else 0)
    traffic.finish()
