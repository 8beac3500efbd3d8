"""Charges run from the state this process last committed, without the locking read.

`LedgerService.run_command(unlocked_ok=True)` (SMS and WhatsApp charges without a campaign):
on PostgreSQL the command starts from the account as this process's last transaction on it
left it, and its posting writes only if the balance version and the account's config_version
are still those -- else it rolls back and runs again the usual way, which decides. Two
containers on one database stand for two server processes: each remembers its own.
"""

from __future__ import annotations

import threading
from collections import Counter
from collections.abc import Iterator
from datetime import timedelta

import pytest
import sqlalchemy as sa
from sqlalchemy.engine import Connection

from tests.conftest import ADMIN_TOKEN
from usagewatch.adapters.db import prepared
from usagewatch.adapters.db.schema import usage_records
from usagewatch.bootstrap import Container, build
from usagewatch.config import Settings
from usagewatch.domain.clock import ManualClock
from usagewatch.domain.errors import Conflict, PaymentRequired
from usagewatch.domain.ledger import LotKind
from usagewatch.domain.limits import Limits
from usagewatch.domain.money import Money
from usagewatch.service.verify import verify

TO = "+919800000001"


@pytest.fixture
def other(database_url: str, clock: ManualClock) -> Iterator[Container]:
    """A second container on the same database: another server process."""
    c = build(Settings(database_url=database_url, test_clock=True), ADMIN_TOKEN, clock=clock)
    yield c
    c.close()


def funded(c: Container, amount: str = "1.00", sms_price: str = "0.20") -> str:
    """The account, its SMS price, then its credit: the credit is a command, so this process
    then knows the account's state (a rate change after it would make that stale)."""
    c.accounts.create_account("Unlocked", "acc")
    c.rates.replace_overrides("acc", {"sms": {"transactional": Money.parse(sms_price)}})
    c.ledger.add_credit("acc", LotKind.PAID, Money.parse(amount))
    return "acc"


def sms(c: Container, sid: str, units: int = 1) -> int:
    return c.usage.charge_sms("acc", sid, "transactional", to=TO, units=units).price_micros


def available(c: Container) -> int:
    return c.queries.balance("acc").available_micros


def is_pg(c: Container) -> bool:
    return not c.db.is_sqlite


def test_a_charge_after_this_process_committed_skips_the_locking_read(
    container: Container,
) -> None:
    funded(container)
    for sid in ("S1", "S2", "S3"):  # each from the state the command before it committed
        sms(container, sid)
    whatsapp = container.usage.charge_whatsapp("acc", "WA1", "utility")
    # SQLite's locking read costs no round trip (the database is in the process): never
    committed = 4 if is_pg(container) else 0
    assert container.ledger.unlocked_runs == {"committed": committed, "rolled_back": 0}
    assert available(container) == 400_000 - whatsapp.price_micros
    assert verify(container.db) == []


def test_a_balance_moved_by_another_process_is_seen_before_charging(
    container: Container, other: Container
) -> None:
    funded(container)
    sms(container, "S1")  # 0.80 left, and this process remembers it
    for n in range(4):
        sms(other, f"O{n}")  # the other process spends the rest
    assert available(container) == 0
    with pytest.raises(PaymentRequired) as refused:
        sms(container, "S2")
    assert refused.value.code == "insufficient_balance"
    other.ledger.add_credit("acc", LotKind.PAID, Money.parse("0.40"))
    sms(container, "S3")  # remembered state is stale again: it runs the usual way
    assert available(container) == 200_000
    if is_pg(container):  # S1 went unlocked; S2 and S3 found the balance moved, ran locked
        assert container.ledger.unlocked_runs == {"committed": 1, "rolled_back": 2}
    assert verify(container.db) == []


def test_a_rate_change_by_another_process_prices_the_next_charge(
    container: Container, other: Container
) -> None:
    funded(container, "10.00")
    assert sms(container, "S1") == 200_000
    other.rates.replace_overrides("acc", {"sms": {"transactional": Money.parse("0.50")}})
    # the balance did not move, but config_version did: the cached card is not used
    assert sms(container, "S2") == 500_000
    assert sms(container, "S3") == 500_000  # and now from the state that saw the change
    assert available(container) == 10_000_000 - 1_200_000
    if is_pg(container):
        assert container.ledger.unlocked_runs == {"committed": 2, "rolled_back": 1}
    assert verify(container.db) == []


def test_a_cap_set_by_another_process_refuses_the_next_charge(
    container: Container, other: Container
) -> None:
    funded(container, "10.00")
    sms(container, "S1")
    other.limits.put("acc", Limits(enabled=True, daily_cap=Money.parse("0.30")))
    with pytest.raises(PaymentRequired) as refused:
        sms(container, "S2")
    assert refused.value.code == "daily_cap_reached"
    assert available(container) == 9_800_000
    assert verify(container.db) == []


def test_a_replay_answers_the_first_result_and_a_reused_id_is_a_conflict(
    container: Container,
) -> None:
    funded(container)
    sms(container, "S1")
    sms(container, "S2")
    assert sms(container, "S2") == 200_000  # the record's unique index refuses it unlocked
    with pytest.raises(Conflict) as reused:
        sms(container, "S2", units=2)
    assert reused.value.code == "idempotency_key_reused"
    assert available(container) == 600_000
    if is_pg(container):  # the replay and the reuse each ran again the usual way
        assert container.ledger.unlocked_runs == {"committed": 2, "rolled_back": 2}
    assert verify(container.db) == []


def test_a_free_message_is_recorded_once_the_usual_way(container: Container) -> None:
    funded(container, sms_price="0")
    sms(container, "S1")
    sms(container, "S2")  # no posting confirms the remembered state: it runs again locked
    assert sms(container, "S2") == 0
    with container.db.read() as conn:
        records = conn.execute(
            sa.select(sa.func.count())
            .select_from(usage_records)
            .where(usage_records.c.natural_id == "S2")
        ).scalar_one()
    assert records == 1
    assert available(container) == 1_000_000
    if is_pg(container):
        assert container.ledger.unlocked_runs["committed"] == 0
    assert verify(container.db) == []


def test_a_promotional_expiry_that_fell_due_is_forfeited_first(
    container: Container, clock: ManualClock
) -> None:
    funded(container)
    container.ledger.add_credit(
        "acc", LotKind.PROMOTIONAL, Money.parse("5.00"), expires_at=clock.now() + timedelta(hours=1)
    )
    sms(container, "S1")  # from the promotional lot
    clock.advance(2 * 3600)
    sms(container, "S2")  # the expiry is due: the usual way forfeits it, then charges paid
    view = container.queries.balance("acc")
    assert (view.promotional_micros, view.paid_micros) == (0, 800_000)
    if is_pg(container):  # S1 only
        assert container.ledger.unlocked_runs == {"committed": 1, "rolled_back": 0}
    assert verify(container.db) == []


def test_threads_racing_from_one_remembered_state_charge_exactly_what_is_there(
    container: Container,
) -> None:
    funded(container)
    sms(container, "warm")  # 0.80 left: room for exactly four more
    barrier = threading.Barrier(12)
    outcomes: Counter[str] = Counter()
    lock = threading.Lock()

    def run(n: int) -> None:
        barrier.wait()
        try:
            sms(container, f"T{n}")
            code = "ok"
        except PaymentRequired as exc:
            code = exc.code
        with lock:
            outcomes[code] += 1

    threads = [threading.Thread(target=run, args=(n,)) for n in range(12)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert outcomes == {"ok": 4, "insufficient_balance": 8}
    assert available(container) == 0
    assert verify(container.db) == []


def test_an_unlocked_charge_alone_is_its_whole_transaction(
    container: Container, monkeypatch: pytest.MonkeyPatch
) -> None:
    """On PostgreSQL its posting is held back until commit and then runs in autocommit:
    one round trip, no BEGIN and COMMIT around it."""
    funded(container)
    sms(container, "S1")  # reads the rate card (a cache miss): a transaction as usual
    seen: list[tuple[bool, str]] = []
    run = prepared._execute

    def spy(conn: Connection, sql: str, args: object, many: bool = False) -> object:
        raw = conn.connection.dbapi_connection
        autocommit = bool(getattr(raw, "autocommit", False)) and not container.db.is_sqlite
        seen.append((autocommit, sql.split()[0]))
        return run(conn, sql, args, many)

    monkeypatch.setattr(prepared, "_execute", spy)
    sms(container, "S2")
    if is_pg(container):
        assert seen == [(True, "WITH")]  # the posting, record and rollups: nothing else
    else:
        assert (True, "WITH") not in seen and seen  # the usual statements, in a transaction
    assert available(container) == 600_000
    assert verify(container.db) == []


def test_a_failure_after_the_held_back_posting_leaves_nothing(container: Container) -> None:
    funded(container)
    sms(container, "S1")

    def failing(_cmd: object) -> None:
        raise RuntimeError("a trigger failed")

    container.ledger.add_trigger(failing)
    with pytest.raises(RuntimeError):
        sms(container, "S2")  # unlocked, then the usual way: both roll back
    container.ledger._triggers.remove(failing)
    assert available(container) == 800_000
    sms(container, "S3")  # nothing held back leaks into the pooled connection's next use
    with container.db.read() as conn:
        sids = conn.execute(sa.select(usage_records.c.natural_id)).scalars().all()
    assert sorted(sids) == ["S1", "S3"]
    assert available(container) == 600_000
    assert verify(container.db) == []
