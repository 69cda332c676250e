"""Directory uploads are unpacked safely: nothing lands outside the destination."""

from __future__ import annotations

import io
import tarfile
from pathlib import Path

import pytest

from buildyard.master.workers.transfers import _extract


def _tar(path: Path, members: list[tuple[tarfile.TarInfo, bytes | None]]) -> Path:
    with tarfile.open(path, "w") as tar:
        for info, data in members:
            tar.addfile(info, io.BytesIO(data) if data is not None else None)
    return path


def _file(name: str, data: bytes) -> tuple[tarfile.TarInfo, bytes]:
    info = tarfile.TarInfo(name)
    info.size = len(data)
    return info, data


def test_links_are_skipped_so_nothing_goes_through_them(tmp_path: Path) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    link = tarfile.TarInfo("escape")
    link.type = tarfile.SYMTYPE
    link.linkname = str(outside)
    hard = tarfile.TarInfo("hard")
    hard.type = tarfile.LNKTYPE
    hard.linkname = "ok.txt"
    archive = _tar(
        tmp_path / "a.tar",
        [_file("ok.txt", b"fine"), (link, None), (hard, None), _file("escape/pwned", b"x")],
    )
    dest = tmp_path / "dest"
    _extract(archive, dest)
    assert (dest / "ok.txt").read_bytes() == b"fine"
    assert not (dest / "escape").is_symlink()
    assert not (dest / "hard").exists()
    assert list(outside.iterdir()) == []
    assert not archive.exists()  # the tarball is removed after unpacking


def test_paths_outside_the_destination_are_refused(tmp_path: Path) -> None:
    archive = _tar(tmp_path / "b.tar", [_file("../escaped.txt", b"x")])
    with pytest.raises(tarfile.FilterError):
        _extract(archive, tmp_path / "dest")
    assert not (tmp_path / "escaped.txt").exists()
