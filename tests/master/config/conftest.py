"""Fixtures: a fresh basedir, and writing master.cfg into it."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from tests.master.config._files import WriteConfig


@pytest.fixture
def basedir(tmp_path: Path) -> Path:
    path = tmp_path / "master"
    path.mkdir()
    return path.resolve()


@pytest.fixture
def write_config(basedir: Path) -> WriteConfig:
    """Write ``text`` (dedented) as basedir/master.cfg and return its path."""

    def write(text: str) -> Path:
        path = basedir / "master.cfg"
        path.write_text(textwrap.dedent(text).lstrip("\n"), encoding="utf-8")
        return path

    return write
