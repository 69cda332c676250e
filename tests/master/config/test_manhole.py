"""``c['manhole']``: Buildbot's three manhole classes load with their arguments checked, and the
key is named in a warning saying that buildyard has no manhole; a wrong argument is a
configuration error naming the class and the argument.

Stock Buildbot 4.3.0 loads the same accepted configurations (its checkconfig, below). It
checks fewer types at load (a username that is not a string only fails at a login), where
buildyard, which never logs anyone in, refuses it at once.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from buildyard.common.errors import ConfigErrors
from buildyard.master.config.loader import load_master_config
from buildyard.testing.stock import buildbot_venv
from tests.master.config._files import WriteConfig

BASE = """
from buildbot.plugins import schedulers, util, worker
from buildbot import manhole
c = BuildmasterConfig = {}
c['buildbotNetUsageData'] = None
c['schedulers'] = [schedulers.ForceScheduler(name="f", builderNames=["b"])]
c['workers'] = [worker.Worker("w", "p")]
c['protocols'] = {'pb': {'port': 'tcp:0'}}
c['builders'] = [util.BuilderConfig(name="b", workernames="w", factory=util.BuildFactory())]
"""

ACCEPTED = {
    "PasswordManhole": (
        "manhole.PasswordManhole('tcp:1234:interface=127.0.0.1', 'admin', 'passwd', "
        "ssh_hostkey_dir='ssh_host_keys')"
    ),
    "AuthorizedKeysManhole": "util.AuthorizedKeysManhole(1234, 'keys', 'ssh_host_keys')",
    "TelnetManhole": "util.TelnetManhole('tcp:1234', 'admin', b'passwd')",
}


@pytest.mark.parametrize("cls", sorted(ACCEPTED))
def test_each_manhole_loads_with_a_warning_naming_key_and_class(
    cls: str, write_config: WriteConfig, basedir: Path
) -> None:
    path = write_config(BASE + f"c['manhole'] = {ACCEPTED[cls]}\n")
    config = load_master_config(basedir)
    line = len(path.read_text().splitlines())
    assert config.warnings == (
        f"{path}:{line}: c['manhole'] has no effect: buildyard has no manhole (the {cls} "
        "opens no debugging shell into the master; nothing listens on its port)",
    )
    assert "passwd" not in repr(config.manhole)  # the password is hidden where shown


def test_stock_buildbot_loads_the_same_telnet_manhole(tmp_path: Path) -> None:
    # (its two SSH manholes need the cryptography package, which the stock venv here lacks:
    # without it Buildbot refuses them, "cryptography required for ssh mahole")
    basedir = tmp_path / "stock"
    basedir.mkdir()
    body = f"c['manhole'] = {ACCEPTED['TelnetManhole']}\n"
    (basedir / "master.cfg").write_text(BASE.lstrip() + body)
    done = subprocess.run(
        [str(buildbot_venv() / "bin" / "buildbot"), "checkconfig", str(basedir)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr


@pytest.mark.parametrize(
    ("line", "message"),
    [
        (
            "util.PasswordManhole(['tcp:1'], 'a', 'p', 'keys')",
            "PasswordManhole: port must be a port number or a strports string",
        ),
        ("util.PasswordManhole(1, 2, 'p', 'keys')", "PasswordManhole: username must be a string"),
        (
            "util.PasswordManhole(1, 'a', None, 'keys')",
            "PasswordManhole: password must be a string, not NoneType",
        ),
        (
            "util.AuthorizedKeysManhole(1, 'keys', 5)",
            "AuthorizedKeysManhole: ssh_hostkey_dir must be a string, not int",
        ),
        ("util.TelnetManhole(1, 'a', 3)", "TelnetManhole: password must be a string, not int"),
        ("util.TelnetManhole(1, 'a')", "missing 1 required positional argument: 'password'"),
        (
            "util.PasswordManhole(1, 'a', 'p')",
            "missing 1 required positional argument: 'ssh_hostkey_dir'",
        ),
        ("util.AuthorizedKeysManhole(1, 'k', 'd', x=1)", "unexpected keyword argument 'x'"),
    ],
)
def test_a_wrong_argument_is_a_config_error(
    line: str, message: str, write_config: WriteConfig, basedir: Path
) -> None:
    path = write_config(BASE + f"c['manhole'] = {line}\n")
    with pytest.raises(ConfigErrors) as raised:
        load_master_config(basedir)
    [error] = raised.value.errors
    assert message in str(error)
    assert str(error).startswith(f"{path}:{len(path.read_text().splitlines())}")
