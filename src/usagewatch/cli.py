"""The `usagewatch` command."""

from __future__ import annotations

import logging
import os
import sys
from pathlib import Path
from typing import Annotated, Any

import typer

from usagewatch import __version__
from usagewatch.config import ADMIN_TOKEN_LENGTH_MIN, PLACEHOLDER_TOKENS, Settings
from usagewatch.service.scheduler import WORKER_PARENT_ENV

app = typer.Typer(
    help="usagewatch: usage tracking and prepaid billing. Settings come from USAGEWATCH_* "
    "environment variables; flags override them.",
    no_args_is_help=True,
    add_completion=False,
)

DatabaseUrl = Annotated[
    str | None,
    typer.Option(
        "--database-url",
        help="sqlite:///path.db (default ./usagewatch.db) or postgresql://user@host/db "
        "[env USAGEWATCH_DATABASE_URL]",
        show_default=False,
    ),
]


def _settings(**overrides: object) -> Settings:
    """The environment's settings with the command line's on top. Unless
    USAGEWATCH_PUBLIC_URL says otherwise, the links in notices point at the address this
    process serves (its host and port), not at the default port."""
    settings = Settings()
    values = {k: v for k, v in overrides.items() if v is not None}
    if "public_url" not in settings.model_fields_set and ("host" in values or "port" in values):
        host = str(values.get("host", settings.host))
        port = values.get("port", settings.port)
        if host not in ("0.0.0.0", "::", ""):  # every interface: no address to link to
            values["public_url"] = (
                f"http://[{host}]:{port}" if ":" in host else f"http://{host}:{port}"
            )
    return settings.model_copy(update=values) if values else settings


def resolve_admin_token(settings: Settings) -> tuple[str, bool]:
    """The operator token: from USAGEWATCH_ADMIN_TOKEN, or generated when missing.
    Returns (token, generated). A weak or placeholder token is refused unless dev_mode."""
    from usagewatch.service.accounts import random_admin_token

    token = settings.admin_token
    if not token:
        return random_admin_token(), True
    weak = token.lower() in PLACEHOLDER_TOKENS or len(token) < ADMIN_TOKEN_LENGTH_MIN
    if weak and not settings.dev_mode:
        raise typer.BadParameter(
            f"USAGEWATCH_ADMIN_TOKEN looks like a placeholder (fewer than "
            f"{ADMIN_TOKEN_LENGTH_MIN} characters or a common word). Set a random one, e.g. "
            f"`python -c 'import secrets; print(secrets.token_urlsafe(32))'`, or set "
            f"USAGEWATCH_DEV_MODE=true on a development machine.",
            param_hint="USAGEWATCH_ADMIN_TOKEN",
        )
    return token, False


@app.command()
def serve(
    host: Annotated[str | None, typer.Option(help="interface [env USAGEWATCH_HOST]")] = None,
    port: Annotated[int | None, typer.Option(help="port [env USAGEWATCH_PORT]")] = None,
    database_url: DatabaseUrl = None,
    test_clock: Annotated[
        bool | None,
        typer.Option(
            "--test-clock/--no-test-clock",
            help="switch on /v1/test-clock (admin) [env USAGEWATCH_TEST_CLOCK]",
        ),
    ] = None,
    dev: Annotated[
        bool | None,
        typer.Option(
            "--dev", help="development mode: accept weak admin tokens [env USAGEWATCH_DEV_MODE]"
        ),
    ] = None,
) -> None:
    """Run the HTTP API (and its background sweeper). Applies migrations first."""
    import uvicorn

    from usagewatch.api.app import create_app
    from usagewatch.bootstrap import build, freeze_startup_heap

    settings = _settings(
        host=host, port=port, database_url=database_url, test_clock=test_clock, dev_mode=dev
    )
    token, generated = resolve_admin_token(settings)
    container = build(settings, token)
    app_ = create_app(container)
    freeze_startup_heap()
    where = f"http://{settings.host}:{settings.port}"
    typer.echo(f"usagewatch {__version__} on {container.db.url.split('@')[-1]}")
    typer.echo(f"listening on {where}  (API docs: {where}/docs)")
    if generated:
        typer.echo(
            f"admin token (generated for this run; set USAGEWATCH_ADMIN_TOKEN to keep one): {token}"
        )
    if container.test_clock is not None:
        typer.echo(f"test clock ON at {container.test_clock.now().isoformat()}")
    try:
        uvicorn.run(
            app_,
            host=settings.host,
            port=settings.port,
            log_level=settings.log_level,
            access_log=False,
        )
    finally:
        container.close()


@app.command()
def migrate(database_url: DatabaseUrl = None) -> None:
    """Apply database migrations (serve also does this at start)."""
    from usagewatch.adapters.db import migrate as migrations
    from usagewatch.adapters.db.engine import Database

    db = Database(_settings(database_url=database_url).database_url)
    migrations.upgrade(db)
    typer.echo(f"database at revision {migrations.current_revision(db)}")
    db.dispose()


@app.command()
def verify(
    database_url: DatabaseUrl = None,
    account: Annotated[str | None, typer.Option(help="check one account only")] = None,
) -> None:
    """Recompute every balance, lot and day total from the journal, and every usage rollup
    from the usage records; print differences.
    Exit code 1 when anything disagrees, 0 when all agree."""
    from usagewatch.adapters.db.engine import Database
    from usagewatch.service.verify import verify as run_verify

    db = Database(_settings(database_url=database_url).database_url)
    problems = run_verify(db, account)
    db.dispose()
    for line in problems:
        typer.echo(line)
    if problems:
        typer.echo(f"{len(problems)} difference(s) between cached figures and the journal")
        raise typer.Exit(1)
    typer.echo("ok: every balance, lot, day total and usage rollup agrees with its source")


def _container(database_url: str | None) -> Any:
    """The services over the configured database, for one-shot commands."""
    from usagewatch.bootstrap import build
    from usagewatch.service.accounts import random_admin_token

    return build(_settings(database_url=database_url), random_admin_token())


@app.command()
def export(
    account: Annotated[str, typer.Option(help="account id")],
    from_: Annotated[str, typer.Option("--from", help="first account-local date, YYYY-MM-DD")],
    to: Annotated[str, typer.Option(help="last account-local date, YYYY-MM-DD (inclusive)")],
    output: Annotated[Path, typer.Option(help="file to write")],
    service: Annotated[
        str | None, typer.Option(help="voice, sms, whatsapp, number or agent_seat (all)")
    ] = None,
    format: Annotated[str, typer.Option(help="csv, xlsx or pdf")] = "csv",
    database_url: DatabaseUrl = None,
) -> None:
    """Export an account's usage for a period, as the API's /exports/usage does, with a
    progress bar for the rows."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TimeRemainingColumn

    from usagewatch.domain.errors import UsageWatchError
    from usagewatch.service.exports import parse_format
    from usagewatch.service.reports import parse_period, parse_service

    c = _container(database_url)
    try:
        period = parse_period(from_, to)
        svc = parse_service(service)
        fmt = parse_format(format)
        c.exports.check(account)
        if fmt == "pdf":
            output.write_bytes(c.exports.pdf(account, period, svc))
        else:
            total = c.exports.expected_rows(account, period, svc)
            columns = (*Progress.get_default_columns()[:2], BarColumn(), MofNCompleteColumn())
            with Progress(*columns, TimeRemainingColumn(), transient=False) as bar:
                task = bar.add_task(f"{fmt} rows", total=total)

                def advance(rows: int) -> None:
                    bar.advance(task, rows)

                if fmt == "csv":
                    with output.open("wb") as out:
                        for chunk in c.exports.csv(account, period, svc, advance):
                            out.write(chunk)
                else:
                    c.exports.xlsx(account, period, svc, str(output), advance)
    except UsageWatchError as exc:
        typer.echo(f"error: {exc.code}: {exc.message}", err=True)
        raise typer.Exit(2) from exc
    finally:
        c.close()
    typer.echo(f"wrote {output} ({output.stat().st_size:,} bytes)")


@app.command()
def reconcile(
    account: Annotated[str, typer.Option(help="account id")],
    from_: Annotated[str, typer.Option("--from", help="first account-local date, YYYY-MM-DD")],
    to: Annotated[str, typer.Option(help="last account-local date, YYYY-MM-DD (inclusive)")],
    database_url: DatabaseUrl = None,
) -> None:
    """Print, for a period, the sum of the exported prices, the report total and the usage
    charges in the journal. Exit code 1 when they differ, 0 when all three agree."""
    from usagewatch.domain.errors import UsageWatchError
    from usagewatch.domain.money import Money
    from usagewatch.service.reconcile import reconcile as run_reconcile
    from usagewatch.service.reports import parse_period

    c = _container(database_url)
    try:
        period = parse_period(from_, to)
        result = run_reconcile(c.db, c.reports, c.exports, account, period)
        currency = c.exports.check(account).currency
    except UsageWatchError as exc:
        typer.echo(f"error: {exc.code}: {exc.message}", err=True)
        raise typer.Exit(2) from exc
    finally:
        c.close()
    typer.echo(f"account {account}, {period.first} to {period.last}, {currency}")
    typer.echo(
        f"exported prices  {Money(result.exported_micros).format():>20}"
        f"  ({result.exported_rows} rows)"
    )
    typer.echo(f"report total     {Money(result.reported_micros).format():>20}")
    typer.echo(f"ledger charges   {Money(result.charged_micros).format():>20}")
    if not result.agrees:
        typer.echo("DIFFERENT: the three figures do not agree")
        raise typer.Exit(1)
    typer.echo("ok: all three agree")


DEMO_DATABASE_URL = "sqlite:///./usagewatch-demo.db"


@app.command()
def demo(
    host: Annotated[str, typer.Option(help="interface to listen on")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="port to listen on")] = 8000,
    database_url: Annotated[
        str, typer.Option("--database-url", help="a SQLite file; replaced unless --keep")
    ] = DEMO_DATABASE_URL,
    days: Annotated[int, typer.Option(help="days of history to generate (1-90)")] = 90,
    rate: Annotated[
        float, typer.Option(help="simulated events (calls, SMS, WhatsApp) per second; 0: none")
    ] = 2.0,
    keep: Annotated[
        bool, typer.Option("--keep", help="reuse an existing demo database as it is")
    ] = False,
) -> None:
    """Set up a demo: an account with 90 days of history, a demo login, the server and a
    traffic simulator that moves the balance and spends a campaign's budget in minutes."""
    import secrets
    import threading
    from datetime import UTC, datetime

    import uvicorn

    from usagewatch.adapters.db.engine import Database
    from usagewatch.api.app import create_app
    from usagewatch.bootstrap import build, freeze_startup_heap
    from usagewatch.demo import DEMO_ACCOUNT, DEMO_CAMPAIGN, DEMO_EMAIL, DEMO_PASSWORD, seed
    from usagewatch.domain.clock import ManualClock
    from usagewatch.service.accounts import random_admin_token
    from usagewatch.service.verify import verify as run_verify
    from usagewatch.simulator import Traffic

    if not database_url.startswith("sqlite:///"):
        raise typer.BadParameter("the demo runs on a SQLite file", param_hint="--database-url")
    if not 1 <= days <= 90:
        raise typer.BadParameter("1 to 90 days", param_hint="--days")
    path = Path(database_url.removeprefix("sqlite:///"))
    admin_token = random_admin_token()
    session_secret = secrets.token_urlsafe(48)
    platform_token = None
    if not (keep and path.exists()):
        for suffix in ("", "-wal", "-shm"):
            Path(f"{path}{suffix}").unlink(missing_ok=True)
        now = datetime.now(UTC).replace(microsecond=0)
        from usagewatch.demo import history_start

        clock = ManualClock(history_start(now, days))
        typer.echo(f"generating {days} days of history in {path} ...")
        seeding = build(
            _settings(database_url=database_url, test_clock=True, host=host, port=port),
            admin_token,
            clock=clock,
        )
        try:
            made = seed(seeding, clock, now, days)
        finally:
            seeding.close()
        platform_token = made.platform_token
        typer.echo(f"  {made.events:,} usage events through batch ingest")
        db = Database(database_url)
        problems = run_verify(db)
        db.dispose()
        typer.echo("  verify: " + ("ok, the books agree" if not problems else problems[0]))
    settings = _settings(
        database_url=database_url, host=host, port=port, session_secret=session_secret
    )
    container = build(settings, admin_token)
    freeze_startup_heap()
    if platform_token is None:
        from usagewatch.domain.accounts import Principal, Role

        issued = container.accounts.create_api_key(
            DEMO_ACCOUNT, "platform", Principal(Role.ADMIN, None, None)
        )
        platform_token = issued.token
    where = f"http://{host}:{port}"
    server = uvicorn.Server(
        uvicorn.Config(create_app(container), host=host, port=port, log_level="warning")
    )
    stop = threading.Event()

    def simulate_when_up() -> None:
        while not server.started and not stop.is_set():
            stop.wait(0.1)
        traffic = Traffic(where, platform_token, DEMO_ACCOUNT, rate, DEMO_CAMPAIGN)
        traffic.run(stop, report=typer.echo, report_every_seconds=30)

    typer.echo("")
    typer.echo(f"  dashboard  {where}/login")
    typer.echo(f"  sign in    {DEMO_EMAIL} / {DEMO_PASSWORD}")
    typer.echo(f"  operator   admin / {admin_token}")
    typer.echo(f"  API docs   {where}/docs")
    if rate > 0:
        typer.echo(
            f"  simulating {rate:g} events/s: watch the header balance move and the "
            f"'{DEMO_CAMPAIGN}' campaign reach its budget within a few minutes. Ctrl-C stops."
        )
        threading.Thread(target=simulate_when_up, name="simulator", daemon=True).start()
    try:
        server.run()
    finally:
        stop.set()
        container.close()


@app.command()
def simulate(
    url: Annotated[str, typer.Option(help="the server, e.g. http://127.0.0.1:8000")],
    token: Annotated[str, typer.Option(help="a platform key's token (or the admin token)")],
    account: Annotated[str, typer.Option(help="account id")],
    rate: Annotated[float, typer.Option(help="events per second")] = 2.0,
    campaign: Annotated[
        str | None, typer.Option(help="campaign_id to put on half the SMS and WhatsApp")
    ] = None,
    duration_seconds: Annotated[
        float | None, typer.Option(help="stop after this long (default: until Ctrl-C)")
    ] = None,
) -> None:
    """Send simulated calls, SMS and WhatsApp conversations to any server over HTTP; calls
    end and SMS get their delivery report (about 95% delivered) a few seconds later."""
    import threading

    from usagewatch.simulator import Traffic

    try:
        traffic = Traffic(url, token, account, rate, campaign)
    except ValueError as exc:
        raise typer.BadParameter(str(exc), param_hint="--rate") from exc
    stop = threading.Event()
    try:
        traffic.run(stop, duration_seconds, report=typer.echo)
    except KeyboardInterrupt:
        stop.set()
    typer.echo(traffic.summary())


@app.command()
def worker(
    database_url: DatabaseUrl = None,
    once: Annotated[bool, typer.Option(help="run what is due now, then exit")] = False,
    lane: Annotated[
        str,
        typer.Option(help="all, quick (everything but statements) or slow (monthly statements)"),
    ] = "all",
    nice: Annotated[int, typer.Option(min=0, max=19, help="lower this process's CPU priority")] = 0,
) -> None:
    """Run the time-driven work without the HTTP API: notice deliveries (email, SMS,
    webhooks, with retries), alert repeats, cap pauses ending, expiries, monthly charges and
    statements. `serve` runs the same work itself (its statements in a child `worker --lane
    slow`, see USAGEWATCH_SLOW_LANE); run workers beside it to spread delivery load (several
    are safe on PostgreSQL: deliveries are claimed with SKIP LOCKED)."""
    import time

    from usagewatch.bootstrap import freeze_startup_heap

    if lane not in ("all", "quick", "slow"):
        raise typer.BadParameter("all, quick or slow", param_hint="--lane")
    if nice:
        os.nice(nice)
    # Started by `serve`: stop when that server is gone (the parent may be killed outright).
    parent = os.environ.get(WORKER_PARENT_ENV)
    c = _container(database_url)
    freeze_startup_heap()
    quick, slow = c.scheduler.lanes()
    jobs = {"all": None, "quick": quick, "slow": slow}[lane]
    try:
        if once:
            typer.echo(f"ran {c.scheduler.run_due(jobs)} pieces of due work")
            return
        while parent is None or str(os.getppid()) == parent:
            try:
                c.scheduler.run_due(jobs)
            except Exception:
                logging.getLogger(__name__).exception("worker run failed; retrying next period")
            time.sleep(c.settings.sweep_interval_seconds)
    except KeyboardInterrupt:  # pragma: no cover
        pass
    finally:
        c.close()


@app.command()
def version() -> None:
    """Print the version."""
    typer.echo(__version__)


def main() -> None:
    try:
        app()
    except KeyboardInterrupt:  # pragma: no cover
        sys.exit(130)
