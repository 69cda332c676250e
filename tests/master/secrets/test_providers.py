"""SecretInAFile and the provider lookup, on real files."""

from __future__ import annotations

from pathlib import Path

from buildyard.common.errors import ConfigErrors, collecting_config_errors
from buildyard.master.secrets.providers import SecretInAFile, lookup


def _write(path: Path, text: str, mode: int = 0o600) -> None:
    path.write_text(text)
    path.chmod(mode)


async def test_files_are_secrets_named_by_file_less_suffix(tmp_path: Path) -> None:
    _write(tmp_path / "token.txt", "abc\n")
    _write(tmp_path / "other", "zzz\n")
    provider = SecretInAFile(str(tmp_path), suffixes=[".txt"])
    assert provider.get("token") == "abc"
    assert provider.get("other") is None  # no matching suffix
    kept = SecretInAFile(str(tmp_path), strip=False)
    assert kept.get("other") == "zzz\n"
    second = SecretInAFile(str(tmp_path))
    assert await lookup([provider, second], "token") == "abc"
    assert await lookup([provider, second], "other") == "zzz"
    assert await lookup([provider, second], "missing") is None


def test_files_open_to_others_and_a_missing_directory_are_config_errors(tmp_path: Path) -> None:
    _write(tmp_path / "open", "x", mode=0o644)
    errors = ConfigErrors()
    with collecting_config_errors(errors):
        SecretInAFile(str(tmp_path))
        SecretInAFile(str(tmp_path / "nope"))
    messages = [e.message for e in errors.errors]
    assert any("permissions 0o644 on file open are too open" in m for m in messages)
    assert any("does not exist" in m for m in messages)
