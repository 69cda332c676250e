"""``c['www']['port']`` as Twisted's strports spell it: ``unix:`` and ``ssl:`` besides ``tcp:``.

A real master serves its REST API on a unix socket, then (reconfigured) over TLS with a
certificate made here by openssl, then stops; the socket file is created with its mode, a stale
one left by a killed master is replaced, and it is gone once the master stops.
"""

from __future__ import annotations

import os
import socket
import ssl
import stat
import subprocess
from pathlib import Path

import aiohttp
import pytest

from buildyard.common.ports import Listen, TLSFiles, parse_port
from buildyard.master.config.loader import load_master_config
from buildyard.master.db import migrate
from buildyard.master.master import BuildMaster
from buildyard.testing.postgres import free_port

CONFIG = """\
from buildyard.plugins import *
c = BuildmasterConfig = {{}}
c['workers'] = [worker.Worker("w", "pw")]
c['builders'] = [util.BuilderConfig(name="b", workernames=["w"], factory=util.BuildFactory())]
c['title'] = {title!r}
c['www'] = {{'port': {port!r}}}
c['db'] = {{'db_url': 'sqlite:///state.sqlite'}}
"""


@pytest.mark.parametrize(
    ("spec", "listen"),
    [
        (8010, Listen(host=None, port=8010)),
        ("tcp:8010", Listen(host=None, port=8010)),
        (
            "tcp:port=8010:interface=127.0.0.1:backlog=5",
            Listen(host="127.0.0.1", port=8010, backlog=5),
        ),
        ("unix:/run/bb.sock", Listen(host=None, port=0, unix="/run/bb.sock")),
        (
            "unix:address=/run/bb.sock:mode=660:lockfile=1",
            Listen(host=None, port=0, unix="/run/bb.sock", mode=0o660),
        ),
        (r"unix:/odd\:name.sock", Listen(host=None, port=0, unix="/odd:name.sock")),
        (
            r"ssl:8443:privateKey=k.pem:certKey=c.pem:interface=\:\:1",
            Listen(host="::1", port=8443, tls=TLSFiles(private_key="k.pem", cert="c.pem")),
        ),
        (
            "ssl:8443:privateKey=both.pem",
            Listen(host=None, port=8443, tls=TLSFiles("both.pem", "both.pem")),
        ),
    ],
)
def test_strports_as_buildbot_accepts_them(spec: object, listen: Listen) -> None:
    assert parse_port(spec, allow=("tcp", "ssl", "unix")) == listen


@pytest.mark.parametrize(
    ("spec", "error"),
    [
        ("tcp:8010:interfce=127.0.0.1", r"unknown option 'interfce'"),
        ("ssl:8443", r"'ssl' needs privateKey=FILE"),
        ("unix:", r"a socket path is required"),
        ("unix:/x.sock:mode=rw", r"mode 'rw' is not an octal number"),
        ("udp:53", r"unknown endpoint 'udp'"),
        ("tcp:port=8010:port=8011", r"option 'port' given twice"),
    ],
)
def test_bad_strports_are_refused_by_name(spec: str, error: str) -> None:
    with pytest.raises(ValueError, match=error):
        parse_port(spec, allow=("tcp", "ssl", "unix"))


def test_unix_and_ssl_only_where_the_caller_serves_them() -> None:
    with pytest.raises(ValueError, match=r"'unix' endpoints are not served here"):
        parse_port("unix:/x.sock")


def _certificate(tmp_path: Path) -> tuple[Path, Path]:
    key, cert = tmp_path / "key.pem", tmp_path / "cert.pem"
    subprocess.run(
        [
            "openssl",
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-days",
            "2",
            "-subj",
            "/CN=localhost",
            "-addext",
            "subjectAltName=IP:127.0.0.1",
            "-keyout",
            str(key),
            "-out",
            str(cert),
        ],
        check=True,
        capture_output=True,
        timeout=120,
    )
    return key, cert


async def test_master_serves_on_a_unix_socket_then_over_tls(tmp_path: Path) -> None:
    basedir = tmp_path / "master"
    basedir.mkdir()
    sock_path = tmp_path / "www.sock"
    # a socket file left by a master that was killed: nothing answers on it
    stale = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    stale.bind(str(sock_path))
    stale.close()
    cfg = basedir / "master.cfg"
    cfg.write_text(CONFIG.format(title="on unix", port=f"unix:{sock_path}:mode=600"))
    master = BuildMaster(basedir, config=load_master_config(basedir))
    await migrate.upgrade(master.db)
    await master.start()
    try:
        assert stat.S_IMODE(os.stat(sock_path).st_mode) == 0o600
        connector = aiohttp.UnixConnector(path=str(sock_path))
        async with (
            aiohttp.ClientSession(connector=connector) as http,
            http.get("http://localhost/config") as resp,
        ):
            assert resp.status == 200
            assert (await resp.json())["title"] == "on unix"

        key, cert = _certificate(tmp_path)
        port = free_port()
        cfg.write_text(
            CONFIG.format(
                title="over tls",
                port=f"ssl:{port}:interface=127.0.0.1:privateKey={key}:certKey={cert}",
            )
        )
        assert await master.reconfig() is True
        assert not sock_path.exists()  # the old endpoint's file goes with it
        trusted = ssl.create_default_context(cafile=str(cert))
        async with aiohttp.ClientSession() as http:
            async with http.get(f"https://127.0.0.1:{port}/config", ssl=trusted) as resp:
                assert resp.status == 200
                assert (await resp.json())["title"] == "over tls"
            with pytest.raises(aiohttp.ClientError):  # plain HTTP is not served there
                async with http.get(f"http://127.0.0.1:{port}/config") as resp:
                    await resp.read()
    finally:
        await master.stop()


async def test_a_missing_certificate_fails_the_reconfig_and_keeps_serving(tmp_path: Path) -> None:
    basedir = tmp_path / "master"
    basedir.mkdir()
    port = free_port()
    cfg = basedir / "master.cfg"
    cfg.write_text(CONFIG.format(title="plain", port=f"tcp:{port}:interface=127.0.0.1"))
    master = BuildMaster(basedir, config=load_master_config(basedir))
    await migrate.upgrade(master.db)
    await master.start()
    try:
        missing = tmp_path / "nope.pem"
        cfg.write_text(
            CONFIG.format(title="tls", port=f"ssl:{port}:interface=127.0.0.1:privateKey={missing}")
        )
        assert await master.reconfig() is False
        async with (
            aiohttp.ClientSession() as http,
            http.get(f"http://127.0.0.1:{port}/config") as resp,
        ):
            assert (await resp.json())["title"] == "plain"
    finally:
        await master.stop()
