"""The journal of uploads in progress: what remove_interrupted_uploads removes, and what not."""

from __future__ import annotations

from pathlib import Path

from buildyard.master.workers.transfers import FileWriter, remove_interrupted_uploads


async def test_the_journal_names_a_partial_file_until_it_is_renamed(tmp_path: Path) -> None:
    journal = tmp_path / "journal"
    writer = FileWriter(tmp_path / "out" / "f.bin", maxsize=None, journal=journal)
    await writer.write(b"data")
    [entry] = journal.iterdir()
    part = Path(entry.read_text())
    assert part.parent == tmp_path / "out" and part.name.endswith(".part")
    assert part in list((tmp_path / "out").iterdir())
    await writer.close()
    assert (tmp_path / "out" / "f.bin").read_bytes() == b"data"
    assert list(journal.iterdir()) == []
    assert remove_interrupted_uploads(journal) == []


async def test_left_behind_partial_files_go_and_nothing_else(tmp_path: Path) -> None:
    journal = tmp_path / "journal"
    # a transfer the master was receiving when it died: file and entry stay
    writer = FileWriter(tmp_path / "out" / "f.bin", maxsize=None, journal=journal)
    await writer.write(b"half")
    [entry] = journal.iterdir()
    part = Path(entry.read_text())
    # entries that do not name a partial file are dropped, the files they name kept
    precious = tmp_path / "precious.txt"
    precious.write_text("keep")
    (journal / "odd").write_text(str(precious))
    (journal / "relative").write_text(".x.part")
    (journal / "binary").write_bytes(b"\xff\xfe")
    assert remove_interrupted_uploads(journal) == [part]
    assert part not in list((tmp_path / "out").iterdir())
    assert precious.read_text() == "keep"
    assert list(journal.iterdir()) == []
    writer.discard()  # the writer of a dead master is never used again; harmless here
    assert remove_interrupted_uploads(tmp_path / "no-journal") == []
