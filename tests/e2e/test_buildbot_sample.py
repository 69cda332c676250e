"""The sample master.cfg that stock Buildbot 4.3.0's create-master writes, through checkconfig."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from buildyard.testing.processes import buildyard
from buildyard.testing.stock import buildbot_venv

pytestmark = pytest.mark.e2e


def test_buildbot_create_master_sample_passes_checkconfig(tmp_path: Path) -> None:
    basedir = tmp_path / "bb"
    created = subprocess.run(
        [str(buildbot_venv() / "bin" / "buildbot"), "create-master", "-q", str(basedir)],
        check=False,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert created.returncode == 0, created.stderr
    shutil.copy(basedir / "master.cfg.sample", basedir / "master.cfg")

    result = buildyard("checkconfig", str(basedir))
    assert result.returncode == 0, result.stderr
    # every import resolved, and the sample's PB port is taken as it is
    warnings = [line for line in result.stderr.splitlines() if line.startswith("warning: ")]
    assert warnings == []
    rest = "\n".join(line for line in result.stderr.splitlines() if line not in warnings)
    assert "buildbot" not in rest.replace(str(basedir), "")
