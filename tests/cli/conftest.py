"""Fixtures of the CLI tests: the commands build their Memory from the tiny test engine."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "memory"))

from d2l_memory.cli import main as cli_main  # noqa: E402
from memory_helpers import make_memory  # noqa: E402


@pytest.fixture
def db_url(tmp_path) -> str:
    return f"sqlite:///{tmp_path / 'cli.db'}"


@pytest.fixture
def cli(monkeypatch, db_url):
    """Run the CLI (in process) against a temp database with the tiny engine; returns invoke(args, input=None)."""
    from typer.testing import CliRunner

    monkeypatch.setattr(cli_main, "make_memory", lambda db, checkpoint: make_memory(db))
    monkeypatch.delenv("D2L_MEMORY_FACTORY", raising=False)
    monkeypatch.delenv("D2L_MEMORY_USER", raising=False)
    runner = CliRunner()

    def invoke(args, input=None):
        return runner.invoke(cli_main.app, ["--db", db_url, *args], input=input)

    return invoke
