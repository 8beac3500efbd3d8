"""Fails when something is undocumented: settings (docs/configuration.md), commands
(README.md), error codes (docs/errors.md, both ways, with their HTTP status)."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
import typer

from usagewatch.cli import app as cli_app
from usagewatch.config import Settings
from usagewatch.domain import errors
from usagewatch.domain.errors import CODES, UsageWatchError

ROOT = Path(__file__).resolve().parent.parent
SRC = ROOT / "src" / "usagewatch"
# One row of an error table: | `code` | status | meaning |
ERROR_ROW = re.compile(r"^\|\s*`([a-z][a-z0-9_]*)`\s*\|\s*([0-9][0-9, ]*)\s*\|\s*(\S.*?)\s*\|\s*$")


def read(relative: str) -> str:
    path = ROOT / relative
    assert path.is_file(), f"{relative} is missing"
    return path.read_text(encoding="utf-8")


def documented_errors() -> dict[str, set[int]]:
    """code -> the HTTP statuses docs/errors.md gives it, from the tables' rows."""
    rows: dict[str, set[int]] = {}
    for line in read("docs/errors.md").splitlines():
        match = ERROR_ROW.match(line)
        if match:
            code, statuses, _meaning = match.groups()
            assert code not in rows, f"{code} is listed twice in docs/errors.md"
            rows[code] = {int(s) for s in re.findall(r"\d{3}", statuses)}
    return rows


def cli_commands() -> dict[str, Any]:
    """The commands of `usagewatch` as typer builds them (name -> command with .params)."""
    group = typer.main.get_command(cli_app)
    commands = getattr(group, "commands", None)
    assert isinstance(commands, dict) and commands, "usagewatch.cli.app has no commands"
    return commands


# -- settings --------------------------------------------------------------------------------
@pytest.mark.parametrize("name", sorted(Settings.model_fields))
def test_every_setting_is_in_configuration_md(name: str) -> None:
    variable = f"USAGEWATCH_{name.upper()}"
    text = read("docs/configuration.md")
    assert re.search(rf"\b{variable}\b", text), f"{variable} is not in docs/configuration.md"


def test_configuration_md_names_no_unknown_setting() -> None:
    known = {f"USAGEWATCH_{name.upper()}" for name in Settings.model_fields}
    known.add("USAGEWATCH_TEST_POSTGRES_URL")  # the test suite's, documented there too
    mentioned = set(re.findall(r"\bUSAGEWATCH_[A-Z0-9_]+\b", read("docs/configuration.md")))
    assert mentioned <= known, f"not settings: {sorted(mentioned - known)}"


def test_every_cli_flag_is_documented() -> None:
    text = read("docs/configuration.md") + read("README.md")
    for name, command in cli_commands().items():
        for param in command.params:
            for flag in [*param.opts, *getattr(param, "secondary_opts", [])]:
                if flag.startswith("--") and flag != "--help":
                    assert flag in text, f"`usagewatch {name} {flag}` is not documented"


# -- commands --------------------------------------------------------------------------------
def test_every_command_is_in_the_readme() -> None:
    commands = cli_commands()
    assert {"serve", "migrate", "verify"} <= set(commands)
    text = read("README.md")
    for name in commands:
        assert re.search(rf"\busagewatch {re.escape(name)}\b", text), (
            f"`usagewatch {name}` is not in README.md"
        )


# -- error codes -----------------------------------------------------------------------------
def test_every_code_is_in_errors_md() -> None:
    documented = documented_errors()
    missing = sorted(set(CODES) - set(documented))
    assert not missing, f"codes missing from docs/errors.md: {missing}"


def test_every_code_in_errors_md_exists() -> None:
    documented = documented_errors()
    unknown = sorted(set(documented) - set(CODES))
    assert not unknown, f"docs/errors.md lists codes that are not in CODES: {unknown}"


def _raised_statuses() -> dict[str, set[int]]:
    """code -> statuses it is raised with in src: `SomeError("code", …)` (the class carries
    the status), `envelope(status, "code", …)`, and request-validation codes (422)."""
    classes = {
        name: cls.status
        for name, cls in vars(errors).items()
        if isinstance(cls, type) and issubclass(cls, UsageWatchError)
    }
    raised: dict[str, set[int]] = {}
    class_call = re.compile(rf"\b({'|'.join(classes)})\(\s*\"([a-z_]+)\"")
    envelope_call = re.compile(r"\benvelope\(\s*(\d{3}),\s*\"([a-z_]+)\"")
    validation = re.compile(r"\b(?:PydanticCustomError|MoneyFormatError)\(\s*\"([a-z_]+)\"")
    for path in SRC.rglob("*.py"):
        text = path.read_text(encoding="utf-8")
        for cls_name, code in class_call.findall(text):
            raised.setdefault(code, set()).add(classes[cls_name])
        for status, code in envelope_call.findall(text):
            raised.setdefault(code, set()).add(int(status))
        for code in validation.findall(text):
            raised.setdefault(code, set()).add(422)
    return raised


def test_documented_statuses_match_the_code() -> None:
    documented = documented_errors()
    raised = _raised_statuses()
    assert "insufficient_balance" in raised and "malformed_json" in raised  # the scan works
    wrong = {
        code: (sorted(statuses), sorted(documented.get(code, set())))
        for code, statuses in raised.items()
        if code in CODES and not statuses <= documented.get(code, set())
    }
    assert not wrong, f"code: (raised with, documented as) {wrong}"
    undeclared = sorted(set(raised) - set(CODES))
    assert not undeclared, f"raised but not in CODES: {undeclared}"


def test_errors_md_shows_the_envelope() -> None:
    text = read("docs/errors.md")
    assert '{"error": {"code":' in text
    for member in ("`code`", "`message`", "`field`"):
        assert member in text
