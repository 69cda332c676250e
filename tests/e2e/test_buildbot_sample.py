"""The sample master.cfg that stock Buildbot 4.3.0's create-master writes, through checkconfig."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest

from buildyard.testing.processes import buildyard
from buildyard.testing.stock import buildbot_venv

pytestmark = pytest.mark.e2e

# the classes of the sample that later issues build, each to be reported once
EXPECTED = {
    "schedulers.SingleBranchScheduler",
    "util.ChangeFilter",
    "schedulers.ForceScheduler",
}


def test_buildbot_create_master_sample_passes_checkconfig_but_for_later_issues(
    tmp_path: Path,
) -> None:
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
    assert result.returncode == 1
    errors = [line.strip() for line in result.stderr.splitlines() if line.startswith("  ")]
    cfg = re.escape(str(basedir / "master.cfg"))
    reported = []
    for line in errors:
        match = re.match(
            rf"{cfg}:\d+: (\S+) is not implemented yet \(buildyard issue #\d+\)$", line
        )
        assert match, f"unexpected report: {line!r}\n{result.stderr}"
        reported.append(match.group(1))
    assert sorted(reported) == sorted(EXPECTED)  # once each, nothing else
    # every import resolved; the one warning is about the sample's PB port
    warnings = [line for line in result.stderr.splitlines() if line.startswith("warning: ")]
    assert len(warnings) == 1 and "c['protocols']['pb']" in warnings[0]
    rest = "\n".join(line for line in result.stderr.splitlines() if line not in warnings)
    assert "buildbot" not in rest.replace(str(basedir), "")
