"""The `usagewatch` command."""

from __future__ import annotations

import sys
from typing import Annotated

import typer

from usagewatch import __version__
from usagewatch.config import ADMIN_TOKEN_LENGTH_MIN, PLACEHOLDER_TOKENS, Settings

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
    settings = Settings()
    values = {k: v for k, v in overrides.items() if v is not None}
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
    from usagewatch.bootstrap import build

    settings = _settings(
        host=host, port=port, database_url=database_url, test_clock=test_clock, dev_mode=dev
    )
    token, generated = resolve_admin_token(settings)
    container = build(settings, token)
    app_ = create_app(container)
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


@app.command()
def version() -> None:
    """Print the version."""
    typer.echo(__version__)


def main() -> None:
    try:
        app()
    except KeyboardInterrupt:  # pragma: no cover
        sys.exit(130)
