"""File-system commands against real files (docs/worker-protocol.md)."""

from __future__ import annotations

import errno
import stat
from pathlib import Path

import pytest

from buildyard.protocol.peer import RequestFailed
from buildyard.worker.commands import REGISTRY, worker_commands
from tests.worker.helpers import run, start


async def test_stat_sends_ten_numbers(tmp_path: Path) -> None:
    (tmp_path / "f").write_text("hello")
    r = await run("stat", {"path": str(tmp_path / "f")}, tmp_path)
    st = r.last("stat")
    assert len(st) == 10
    assert stat.S_ISREG(st[0])
    assert st[6] == 5
    assert r.last("rc") == 0
    assert isinstance(r.last("elapsed"), float)
    assert r.failure is None


async def test_stat_missing_is_header_and_errno(tmp_path: Path) -> None:
    r = await run("stat", {"path": str(tmp_path / "nope")}, tmp_path)
    assert r.last("rc") == errno.ENOENT
    assert "nope" in r.text("header")
    assert r.last("stat") is None


async def test_listdir_and_glob_send_files(tmp_path: Path) -> None:
    (tmp_path / "a.txt").write_text("")
    (tmp_path / "b.log").write_text("")
    r = await run("listdir", {"path": str(tmp_path)}, tmp_path)
    assert sorted(r.last("files")) == ["a.txt", "b.log"]
    assert r.last("rc") == 0
    r = await run("glob", {"path": str(tmp_path / "*.txt")}, tmp_path)
    assert r.last("files") == [str(tmp_path / "a.txt")]
    r = await run("listdir", {"path": str(tmp_path / "missing")}, tmp_path)
    assert r.last("rc") == errno.ENOENT


async def test_mkdir_rmfile_rmdir_cpdir(tmp_path: Path) -> None:
    paths = [str(tmp_path / "x" / "y"), str(tmp_path / "z")]
    r = await run("mkdir", {"paths": paths}, tmp_path)
    assert r.last("rc") == 0
    assert all(Path(p).is_dir() for p in paths)  # noqa: ASYNC240
    (tmp_path / "x" / "y" / "f").write_text("data")
    r = await run(
        "cpdir", {"from_path": str(tmp_path / "x"), "to_path": str(tmp_path / "c")}, tmp_path
    )
    assert r.last("rc") == 0
    assert (tmp_path / "c" / "y" / "f").read_text() == "data"
    r = await run("rmfile", {"path": str(tmp_path / "c" / "y" / "f")}, tmp_path)
    assert r.last("rc") == 0
    assert not (tmp_path / "c" / "y" / "f").exists()
    r = await run("rmfile", {"path": str(tmp_path / "c" / "y" / "f")}, tmp_path)
    assert r.last("rc") == errno.ENOENT
    r = await run("rmdir", {"paths": [str(tmp_path / "x"), str(tmp_path / "c")]}, tmp_path)
    assert r.last("rc") == 0
    assert not (tmp_path / "x").exists()
    assert not (tmp_path / "c").exists()
    assert "rm -rf" in r.text("header")


async def test_mkdir_failure_reports_errno(tmp_path: Path) -> None:
    (tmp_path / "file").write_text("")
    r = await run("mkdir", {"paths": [str(tmp_path / "file" / "sub")]}, tmp_path)
    assert r.last("rc") == errno.ENOTDIR


async def test_unknown_command_and_missing_args(tmp_path: Path) -> None:
    with pytest.raises(RequestFailed, match=r"^\(command 1\): unrecognized WorkerCommand 'nope'$"):
        start("nope", {}, tmp_path)
    with pytest.raises(
        RequestFailed, match=r"^WorkerShellCommand is missing args: workdir, command$"
    ):
        start("shell", {}, tmp_path)
    with pytest.raises(RequestFailed, match=r"^CopyDirectory is missing args: to_path$"):
        start("cpdir", {"from_path": "a"}, tmp_path)


def test_worker_commands_lists_every_alias() -> None:
    names = worker_commands()
    assert set(names.values()) == {"3.3"}
    for name in ("shell", "stat", "glob", "listdir", "mkdir", "rmdir", "rmfile", "cpdir",
                 "upload_file", "uploadFile", "upload_directory", "uploadDirectory",
                 "download_file", "downloadFile"):  # fmt: skip
        assert name in names
        assert name in REGISTRY
