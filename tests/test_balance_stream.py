"""The live balance (GET /v1/accounts/{id}/balance/stream, Server-Sent Events) against a real
uvicorn server: the first event at once, then a new event within a second of every change,
whether the change is made in the server's process or by another OS process (PostgreSQL
LISTEN/NOTIFY; SQLite's data_version poller)."""

from __future__ import annotations

import asyncio
import json
import os
import queue
import socket
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from typing import Any

import httpx
import pytest

from tests.conftest import ADMIN
from usagewatch.adapters import events
from usagewatch.adapters.events import FANOUT_INTERVAL_SECONDS
from usagewatch.bootstrap import Container
from usagewatch.domain.accounts import Principal, Role
from usagewatch.domain.ledger import LotKind
from usagewatch.domain.money import Money
from usagewatch.service.queries import BalanceView

CHANGE_DEADLINE = 1.0  # seconds from a committed change to its event
CONNECT_DEADLINE = 5.0


class EventStream:
    """Reads an SSE response in a background thread; events arrive on a queue."""

    def __init__(self, url: str, headers: dict[str, str]) -> None:
        self.events: queue.Queue[dict[str, Any] | BaseException] = queue.Queue()
        self.comments: list[str] = []
        self.status: int | None = None
        self.headers: httpx.Headers | None = None
        self._opened = threading.Event()
        self._closing = False
        self._socket: socket.socket | None = None
        self._client = httpx.Client(timeout=httpx.Timeout(10.0, read=60.0))
        self._thread = threading.Thread(target=self._run, args=(url, headers), daemon=True)
        self._thread.start()
        assert self._opened.wait(CONNECT_DEADLINE), "the stream did not open"

    def _run(self, url: str, headers: dict[str, str]) -> None:
        try:
            with self._client.stream("GET", url, headers=headers) as response:
                self.status = response.status_code
                self.headers = response.headers
                stream = response.extensions.get("network_stream")
                self._socket = stream.get_extra_info("socket") if stream else None
                self._opened.set()
                if response.status_code != 200:
                    response.read()
                    self.events.put({"status": response.status_code, "body": response.json()})
                    return
                fields: dict[str, Any] = {}
                for line in response.iter_lines():
                    if line == "":
                        if fields:
                            if "data" in fields:
                                fields["data"] = json.loads(fields["data"])
                            fields["arrived_at"] = time.monotonic()
                            self.events.put(fields)
                            fields = {}
                    elif line.startswith(":"):
                        self.comments.append(line)
                    else:
                        name, _, value = line.partition(":")
                        value = value.removeprefix(" ")
                        if name == "data" and "data" in fields:
                            value = fields["data"] + "\n" + value
                        fields[name] = value
        except BaseException as exc:
            if not self._closing:
                self.events.put(exc)
        finally:
            self._opened.set()

    def next(self, timeout: float) -> dict[str, Any]:
        try:
            item = self.events.get(timeout=timeout)
        except queue.Empty:
            raise AssertionError(f"no event within {timeout} s") from None
        if isinstance(item, BaseException):
            raise AssertionError(f"the stream failed: {item!r}") from item
        return item

    def next_balance(self, timeout: float) -> dict[str, Any]:
        event = self.next(timeout)
        assert event.get("event") == "balance", event
        assert "id" in event and event["id"].isdigit(), event
        return event["data"]  # type: ignore[no-any-return]

    def assert_quiet(self, seconds: float) -> None:
        try:
            item = self.events.get(timeout=seconds)
        except queue.Empty:
            return
        raise AssertionError(f"unexpected event {item!r}")

    def close(self) -> None:
        """Disconnect the way a browser tab does: the socket goes away."""
        self._closing = True
        if self._socket is not None:
            with suppress(OSError):
                self._socket.shutdown(socket.SHUT_RDWR)
        self._thread.join(timeout=5)
        self._client.close()


@contextmanager
def balance_stream(
    base_url: str, account_id: str, headers: dict[str, str] = ADMIN
) -> Iterator[EventStream]:
    stream = EventStream(f"{base_url}/v1/accounts/{account_id}/balance/stream", headers)
    try:
        yield stream
    finally:
        stream.close()


@pytest.fixture
def acme(container: Container) -> str:
    container.accounts.create_account("Acme", "acme")
    return "acme"


def wait_for_balance(stream: EventStream, available: str, deadline: float) -> dict[str, Any]:
    """The first event showing `available`, which must come before `deadline` (monotonic);
    intermediate events (several changes coalescing) are allowed."""
    while True:
        # Wait generously, then judge by when the event reached the client: the test thread
        # may have been busy (e.g. waiting for another process to exit) meanwhile.
        event = stream.next(max(deadline - time.monotonic(), 0) + 5)
        assert event.get("event") == "balance", event
        assert event["arrived_at"] <= deadline, f"the {available} event came too late"
        if event["data"]["available_balance"] == available:
            return event["data"]  # type: ignore[no-any-return]


# -- in process ------------------------------------------------------------------------------
def test_first_event_is_the_current_balance(
    live_server: str, container: Container, acme: str
) -> None:
    container.ledger.add_credit(acme, LotKind.PAID, Money.parse("12.50"))
    with balance_stream(live_server, acme) as stream:
        assert stream.status == 200
        assert stream.headers is not None
        assert stream.headers["content-type"].startswith("text/event-stream")
        assert stream.headers["cache-control"] == "no-store"
        first = stream.next_balance(CONNECT_DEADLINE)
        plain = httpx.get(f"{live_server}/v1/accounts/{acme}/balance", headers=ADMIN).json()
        assert {k: v for k, v in first.items() if k != "as_of"} == {
            k: v for k, v in plain.items() if k != "as_of"
        }
        assert set(first) == set(plain)
        assert first["available_balance"] == "12.50"
        stream.assert_quiet(0.5)  # nothing changed, nothing sent


def test_a_change_in_the_server_process_arrives_within_a_second(
    live_server: str, container: Container, acme: str
) -> None:
    with balance_stream(live_server, acme) as stream:
        first = stream.next_balance(CONNECT_DEADLINE)
        assert first["available_balance"] == "0.00"
        for total in ("10.00", "10.25"):
            started = time.monotonic()
            amount = "10.00" if total == "10.00" else "0.25"
            container.ledger.add_credit(acme, LotKind.PAID, Money.parse(amount))
            data = wait_for_balance(stream, total, started + CHANGE_DEADLINE)
            assert data["paid_credits"] == total
        # A hold moves the available balance and the reserved amount.
        started = time.monotonic()
        container.ledger.place_hold(acme, "CA1", Money.parse("0.25"), 300)
        data = wait_for_balance(stream, "10.00", started + CHANGE_DEADLINE)
        assert data["reserved_amount"] == "0.25"


def test_a_burst_of_changes_ends_on_the_final_balance(
    live_server: str, container: Container, acme: str
) -> None:
    with balance_stream(live_server, acme) as stream:
        stream.next_balance(CONNECT_DEADLINE)
        for _ in range(20):
            container.ledger.add_credit(acme, LotKind.PAID, Money.parse("1"))
        started = time.monotonic()
        wait_for_balance(stream, "20.00", started + CHANGE_DEADLINE)
        stream.assert_quiet(0.5)


def test_changes_to_other_accounts_send_nothing(
    live_server: str, container: Container, acme: str
) -> None:
    container.accounts.create_account("Globex", "globex")
    with balance_stream(live_server, acme) as stream:
        stream.next_balance(CONNECT_DEADLINE)
        container.ledger.add_credit("globex", LotKind.PAID, Money.parse("5"))
        stream.assert_quiet(1.0)


def test_a_change_just_before_subscribing_is_not_lost(
    live_server: str, container: Container, acme: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The stream reads the balance, then subscribes. A change committed between the two
    must still reach the client (it wakes nobody: there is no subscriber yet)."""
    real_balance = container.queries.balance
    calls = {"n": 0}

    def balance_then_change(account_id: str) -> BalanceView:
        view = real_balance(account_id)
        calls["n"] += 1
        if calls["n"] == 1:
            container.ledger.add_credit(account_id, LotKind.PAID, Money.parse("3"))
        return view

    monkeypatch.setattr(container.queries, "balance", balance_then_change)
    with balance_stream(live_server, acme) as stream:
        first = stream.next_balance(CONNECT_DEADLINE)
        assert first["available_balance"] == "0.00"
        wait_for_balance(stream, "3.00", time.monotonic() + CHANGE_DEADLINE)


def test_a_disconnected_client_is_unsubscribed(
    live_server: str, container: Container, acme: str
) -> None:
    with balance_stream(live_server, acme) as stream:
        stream.next_balance(CONNECT_DEADLINE)
        assert container.feed.subscriber_count() == 1
    deadline = time.monotonic() + 5
    while container.feed.subscriber_count():
        assert time.monotonic() < deadline, "the subscription outlived its client"
        # Starlette notices the disconnect when it next sends: give it something to send.
        container.ledger.add_credit(acme, LotKind.PAID, Money.parse("1"))
        time.sleep(0.1)


def test_an_idle_stream_gets_keepalives_and_a_gone_client_is_noticed_without_a_change(
    live_server: str, container: Container, acme: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The account's ticker wakes every stream each FANOUT_TICK_SECONDS: a `: keepalive`
    comment goes out, and a client that went away is unsubscribed, with no balance change
    to send."""
    monkeypatch.setattr(events, "FANOUT_TICK_SECONDS", 0.2)
    with balance_stream(live_server, acme) as stream:
        stream.next_balance(CONNECT_DEADLINE)
        deadline = time.monotonic() + 5
        while len(stream.comments) < 2:
            assert time.monotonic() < deadline, "no keepalives"
            time.sleep(0.05)
        assert set(stream.comments) == {": keepalive"}
        stream.assert_quiet(0.5)  # keepalives are comments, never balance events
    deadline = time.monotonic() + 5
    while container.feed.subscriber_count():
        assert time.monotonic() < deadline, "the subscription outlived its client"
        time.sleep(0.05)


def test_the_stream_follows_the_access_policy(
    live_server: str, container: Container, acme: str
) -> None:
    container.accounts.create_account("Globex", "globex")
    viewer = container.accounts.create_api_key(acme, "viewer", Principal(Role.ADMIN, None, None))
    with balance_stream(live_server, acme, {"Authorization": f"Bearer {viewer.token}"}) as stream:
        assert stream.next_balance(CONNECT_DEADLINE)["available_balance"] == "0.00"
    with httpx.Client(base_url=live_server, timeout=5) as http:
        path = "/v1/accounts/{}/balance/stream"
        assert http.get(path.format(acme)).status_code == 401
        foreign = http.get(
            path.format("globex"), headers={"Authorization": f"Bearer {viewer.token}"}
        )
        assert foreign.status_code == 404
        assert foreign.json()["error"]["code"] == "account_not_found"
        absent = http.get(path.format("nobody"), headers=ADMIN)
        assert absent.status_code == 404
        assert absent.json()["error"]["code"] == "account_not_found"


# -- across processes -----------------------------------------------------------------------
CREDIT_FROM_ANOTHER_PROCESS = textwrap.dedent(
    """
    import sys
    from usagewatch.bootstrap import build
    from usagewatch.config import Settings
    from usagewatch.domain.ledger import LotKind
    from usagewatch.domain.money import Money

    url, account_id, amount = sys.argv[1:4]
    c = build(Settings(database_url=url), "another-process-admin-token-0123456789")
    c.ledger.add_credit(account_id, LotKind.PAID, Money.parse(amount))
    print("committed", flush=True)
    c.close()
    """
)


def credit_from_another_process(database_url: str, account_id: str, amount: str) -> float:
    """Runs a separate Python process that builds its own container on the same database
    and adds credit. Returns the monotonic time at which its commit was done."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("USAGEWATCH_")}
    proc = subprocess.Popen(
        [sys.executable, "-c", CREDIT_FROM_ANOTHER_PROCESS, database_url, account_id, amount],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )
    assert proc.stdout is not None
    line = proc.stdout.readline()
    committed = time.monotonic()
    _, err = proc.communicate(timeout=60)
    assert line.strip() == "committed", err
    assert proc.returncode == 0, err
    return committed


def _cross_process(request: pytest.FixtureRequest) -> None:
    database_url: str = request.getfixturevalue("database_url")
    live_server: str = request.getfixturevalue("live_server")
    acme: str = request.getfixturevalue("acme")
    with balance_stream(live_server, acme) as stream:
        assert stream.next_balance(CONNECT_DEADLINE)["available_balance"] == "0.00"
        for total, amount in (("42.00", "42.00"), ("42.50", "0.50")):
            committed = credit_from_another_process(database_url, acme, amount)
            data = wait_for_balance(stream, total, committed + CHANGE_DEADLINE)
            assert data["paid_credits"] == total


def test_a_change_by_another_process_arrives_within_a_second(
    request: pytest.FixtureRequest, database_url: str
) -> None:
    """PostgreSQL: LISTEN/NOTIFY. SQLite: the data_version watcher."""
    _cross_process(request)


def test_the_open_streams_of_an_account_share_one_read_per_change(
    container: Container, acme: str
) -> None:
    """200 open dashboards: a join or a burst of 100 changes is a read or two, not one per
    stream and change; every stream ends on the last read; leaving unsubscribes."""
    reads: list[int] = []

    async def read(account_id: str) -> int:
        assert account_id == acme
        reads.append(len(reads) + 1)
        return reads[-1]

    async def scenario() -> None:
        fanout = container.feed.fanout
        listeners = [fanout.join(acme, read) for _ in range(200)]
        assert container.feed.subscriber_count() == 1
        await asyncio.sleep(0.05)
        joined = len(reads)
        assert 1 <= joined <= 2  # the joins coalesce (a PostgreSQL LISTEN adds a wake-up)

        def burst() -> None:  # as the ledger does after each commit, from a worker thread
            for _ in range(100):
                container.feed.publish_local(acme)

        await asyncio.to_thread(burst)
        await asyncio.sleep(2 * FANOUT_INTERVAL_SECONDS + 0.2)
        assert 1 <= len(reads) - joined <= 3
        assert {listener.latest for listener in listeners} == {reads[-1]}
        for listener in listeners:
            fanout.leave(listener)
        assert container.feed.subscriber_count() == 0

    asyncio.run(scenario())


def test_a_change_to_another_account_wakes_no_subscriber_from_any_process(
    container: Container, database_url: str, acme: str
) -> None:
    """The feed wakes the subscribers of the account that changed, whether the commit was
    this process's or another's (PostgreSQL: NOTIFY names the account; SQLite: the watcher
    compares balance versions when data_version moves, instead of waking everyone)."""
    from usagewatch.bootstrap import build
    from usagewatch.config import Settings

    container.accounts.create_account("Globex", "globex")
    other = build(Settings(database_url=database_url), "another-process-admin-token-0123456789")

    async def woken(sub: Any, seconds: float) -> bool:
        try:
            async with asyncio.timeout(seconds):
                await sub.event.wait()
        except TimeoutError:
            return False
        sub.event.clear()
        return True

    async def scenario() -> None:
        sub = container.feed.subscribe(acme)
        try:
            # the watcher's first look (or LISTEN's catch-up) may wake once: settle first
            await asyncio.to_thread(other.ledger.add_credit, acme, LotKind.PAID, Money.parse("1"))
            assert await woken(sub, CHANGE_DEADLINE + 1)
            await asyncio.sleep(0.5)
            sub.event.clear()
            for ledger in (other.ledger, container.ledger):  # another process's, then ours
                await asyncio.to_thread(ledger.add_credit, "globex", LotKind.PAID, Money.parse("5"))
                assert not await woken(sub, CHANGE_DEADLINE), "woken by another account"
            started = time.monotonic()
            await asyncio.to_thread(other.ledger.add_credit, acme, LotKind.PAID, Money.parse("2"))
            assert await woken(sub, CHANGE_DEADLINE)
            assert time.monotonic() - started < CHANGE_DEADLINE
        finally:
            container.feed.unsubscribe(sub)

    try:
        asyncio.run(scenario())
    finally:
        other.close()


def test_a_read_that_finds_nothing_new_wakes_no_stream(container: Container, acme: str) -> None:
    """A duplicate wake-up (the SQLite watcher seeing this process's own commit, a
    PostgreSQL reconnect) costs one read, not a wake-up of every open stream; a join still
    gets the next read, unchanged or not."""
    state = {"value": "v1", "reads": 0}

    async def read(account_id: str) -> str:
        state["reads"] += 1
        return state["value"]

    async def settled(reads_before: int) -> None:
        deadline = time.monotonic() + 5
        while state["reads"] == reads_before:
            assert time.monotonic() < deadline, "no read"
            await asyncio.sleep(0.01)
        await asyncio.sleep(0.05)

    async def scenario() -> None:
        fanout = container.feed.fanout
        listeners = [fanout.join(acme, read) for _ in range(3)]
        await settled(0)
        assert all(x.event.is_set() and x.latest == "v1" for x in listeners)
        for listener in listeners:
            listener.event.clear()
        reads = state["reads"]
        await asyncio.sleep(FANOUT_INTERVAL_SECONDS)
        container.feed.publish_local(acme)  # nothing changed
        await settled(reads)
        assert not any(x.event.is_set() for x in listeners)

        late = fanout.join(acme, read)  # a join: the next read goes to everyone
        reads = state["reads"]
        await asyncio.sleep(FANOUT_INTERVAL_SECONDS)
        await settled(reads)
        assert late.event.is_set() and late.latest == "v1"
        for listener in [*listeners, late]:
            listener.event.clear()

        state["value"] = "v2"
        reads = state["reads"]
        await asyncio.sleep(FANOUT_INTERVAL_SECONDS)
        container.feed.publish_local(acme)
        await settled(reads)
        assert all(x.event.is_set() and x.latest == "v2" for x in [*listeners, late])
        for listener in [*listeners, late]:
            fanout.leave(listener)

    asyncio.run(scenario())
