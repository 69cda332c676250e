"""GitHubStatusPush, HttpStatusPush, the Bitbucket Server status reporters, ZulipStatusPush and
MailNotifier side by side with the stock Buildbot 4.3.0: the same
master.cfg and the same forced build on each, each pointed at a recording server in this
process; the requests they send are compared (method, path, body fields, the headers that
matter). Where buildyard differs on purpose, the assertion says why."""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from buildyard.testing.postgres import free_port
from buildyard.testing.processes import end_popen, eventually
from buildyard.testing.stock import buildbot_venv
from buildyard.testing.workers import start_worker
from tests.master.reporters.recording import Request, recording_server
from tests.master.reporters.test_mail import smtp_server

pytestmark = pytest.mark.e2e

SHA = "89abcdef0123456789abcdef0123456789abcdef"

CONFIG = """\
import os
from buildbot.plugins import *

c = BuildmasterConfig = {}
c['workers'] = [worker.Worker('w1', 'pw')]
c['protocols'] = {'msgpack_experimental_v7': {
    'port': int(os.environ['T_WORKER_PORT']), 'interface': '127.0.0.1'}}
c['builders'] = [util.BuilderConfig(
    name='ok', workernames=['w1'],
    factory=util.BuildFactory([steps.ShellCommand(command=['true'])]))]
c['schedulers'] = [schedulers.ForceScheduler(name='force', builderNames=['ok'])]
c['www'] = {'port': 'tcp:%s:interface=127.0.0.1' % os.environ['T_WWW_PORT']}
c['db'] = {'db_url': 'sqlite:///state.sqlite'}
c['buildbotURL'] = 'http://ci.example/'
c['buildbotNetUsageData'] = None
c['services'] = [
    reporters.GitHubStatusPush(token=util.Interpolate('t0ken-%(prop:buildername)s'),
                               baseURL=os.environ['T_RECORDER']),
    reporters.HttpStatusPush(serverUrl=os.environ['T_RECORDER'] + '/hook', auth=('u', 'p')),
    reporters.BitbucketServerStatusPush(os.environ['T_RECORDER'], 'alice', 'pw'),
    reporters.BitbucketServerCoreAPIStatusPush(os.environ['T_RECORDER'], token='bb-token'),
    reporters.ZulipStatusPush(endpoint=os.environ['T_RECORDER'], token='zu-key', stream='ci'),
]
"""

# Buildbot's msgpack listener takes only a port and binds every interface: keep it on loopback
TAC_LOOPBACK = """
from buildbot.worker.protocols.manager import msgpack as _t_msgpack

_t_init = _t_msgpack.Dispatcher.__init__


def _t_loopback_init(self, config_portstr, portstr):
    _t_init(self, config_portstr, portstr)
    self.portstr = portstr + ':interface=127.0.0.1'


_t_msgpack.Dispatcher.__init__ = _t_loopback_init
"""


def _spawn(command: list[str], env: dict[str, str]) -> subprocess.Popen[bytes]:
    with (Path(command[-1]) / "out.log").open("ab") as out:
        return subprocess.Popen(
            command,
            stdout=out,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
            env=env,
        )


@contextlib.asynccontextmanager
async def _master(
    kind: str, root: Path, settings: dict[str, str], config: str = CONFIG
) -> AsyncIterator[str]:
    """A master of ``kind`` ("buildyard" or "buildbot") with a worker, its master.cfg
    ``config`` reading ``settings`` from the environment; yields its API URL."""
    basedir = root / kind / "master"
    basedir.parent.mkdir(parents=True)
    worker_port, www_port = free_port(), free_port()
    env = {
        **os.environ,
        "T_WORKER_PORT": str(worker_port),
        "T_WWW_PORT": str(www_port),
        **settings,
    }
    if kind == "buildbot":
        exe = [str(buildbot_venv() / "bin" / "buildbot")]
        worker_kind = "stock"
    else:
        exe = [sys.executable, "-m", "buildyard.cli.main"]
        worker_kind = "buildyard"
    await asyncio.to_thread(
        subprocess.run,
        [*exe, "create-master", "-q", str(basedir)],
        check=True,
        capture_output=True,
        timeout=300,
        env=env,
    )
    (basedir / "master.cfg").write_text(config)
    if kind == "buildbot":
        with (basedir / "buildbot.tac").open("a") as tac:
            tac.write(TAC_LOOPBACK)
    proc = await asyncio.to_thread(_spawn, [*exe, "start", "--nodaemon", str(basedir)], env)
    worker = None
    api = f"http://127.0.0.1:{www_port}/api/v2"
    try:
        async with aiohttp.ClientSession() as http:

            async def answers() -> bool:
                assert proc.poll() is None, (basedir / "out.log").read_text(errors="replace")
                twistd_log = basedir / "twistd.log"
                # the stock master is asked only once it says it runs, and each answer is read
                # to its end: a probe dropped half-way during its start-up has been seen to
                # leave Twisted's epoll reactor resetting the next connection (the force)
                if kind == "buildbot" and (
                    not twistd_log.exists()
                    or "BuildMaster is running" not in twistd_log.read_text(errors="replace")
                ):
                    return False
                try:
                    async with http.get(f"{api}/builders") as resp:
                        await resp.read()
                        return resp.status == 200
                except aiohttp.ClientError:
                    return False

            await eventually(answers, within=240, interval=0.2)
        worker = await asyncio.to_thread(
            start_worker, worker_kind, root / kind / "worker", worker_port, "w1", "pw"
        )
        # ready once its worker is connected: Buildbot answers REST while it still starts
        # (a force sent then was once reset), and is done starting by the time a worker is in
        async with aiohttp.ClientSession() as http:

            async def worker_connected() -> bool:
                assert proc.poll() is None, (basedir / "out.log").read_text(errors="replace")
                try:
                    async with http.get(f"{api}/workers") as resp:
                        workers = (await resp.json(content_type=None))["workers"]
                except (aiohttp.ClientError, ValueError, KeyError):
                    return False
                return any(w["name"] == "w1" and w["connected_to"] for w in workers)

            await eventually(worker_connected, within=240, interval=0.2)
        yield api
    finally:
        if worker is not None:
            end_popen(worker)
        end_popen(proc)


async def _force(api: str) -> None:
    body = {
        "jsonrpc": "2.0",
        "method": "force",
        "id": 1,
        "params": {
            "builderid": 1,
            "reason": "side by side",
            "branch": "main",
            "revision": SHA,
            "repository": "https://github.com/octo/hello.git",
            "project": "",
        },
    }
    async with (
        aiohttp.ClientSession() as http,
        http.post(f"{api}/forceschedulers/force", json=body) as resp,
    ):
        reply = await resp.json(content_type=None)
    assert "result" in reply, reply


async def _requests(kind: str, root: Path) -> list[Request]:
    async with (
        recording_server() as recorder,
        _master(kind, root, {"T_RECORDER": recorder.url}) as api,
    ):
        await _force(api)
        # GitHub: pending (requested), pending (started), success; http: started, finished;
        # Bitbucket Server: started, finished; its Core API: pending, started, finished;
        # Zulip: new, finished
        return await recorder.wait_for(12, within=240)


def _statuses(requests: list[Request]) -> list[Request]:
    return [r for r in requests if "/statuses/" in r.path]


def _hooks(requests: list[Request]) -> list[Request]:
    return [r for r in requests if r.path == "/hook"]


def _headers(r: Request) -> dict[str, str | None]:
    return {h: r.headers.get(h) for h in ("Authorization", "Content-Type", "User-Agent")}


async def test_push_reporters_send_what_buildbot_sends(tmp_path: Path) -> None:
    ours = await _requests("buildyard", tmp_path)
    theirs = await _requests("buildbot", tmp_path)

    # GitHub statuses: the same requests, in the same order
    def status(r: Request) -> tuple[Any, ...]:
        return (r.method, r.path, r.body, _headers(r))

    assert [status(r) for r in _statuses(ours)] == [status(r) for r in _statuses(theirs)]
    assert len(_statuses(ours)) == 3
    assert _statuses(ours)[0].body == {
        "state": "pending",
        "description": "Build pending.",
        "target_url": "http://ci.example/#/buildrequests/1",
        "context": "buildbot/ok",
    }
    assert _statuses(ours)[0].headers["Authorization"] == "token t0ken-ok"

    # HttpStatusPush: the build dict, when the build starts and when it ends
    our_hooks, their_hooks = _hooks(ours), _hooks(theirs)
    assert len(our_hooks) == len(their_hooks) == 2
    for mine, stock in zip(our_hooks, their_hooks, strict=True):
        assert (mine.method, _headers(mine)["Authorization"]) == (
            stock.method,
            _headers(stock)["Authorization"],
        )
        assert mine.headers["Content-Type"] == stock.headers["Content-Type"]
        assert set(mine.body) == set(stock.body), (sorted(mine.body), sorted(stock.body))
        same = ("buildid", "number", "builderid", "buildrequestid", "complete", "results", "url")
        assert {k: mine.body[k] for k in same} == {k: stock.body[k] for k in same}
        assert mine.body["builder"]["name"] == stock.body["builder"]["name"] == "ok"
        assert mine.body["buildset"]["sourcestamps"][0]["revision"] == SHA
        assert stock.body["buildset"]["sourcestamps"][0]["revision"] == SHA
        # The build's properties are the build pipeline's, not the reporter's; where the
        # pipelines differ (when builddir/workerbuilddir are set, the worker's basedir, and
        # Buildbot's force adding "owners"), only the shape is compared.
        pipeline = {"builddir", "workerbuilddir", "basedir", "owners"}
        differ = set(mine.body["properties"]) ^ set(stock.body["properties"])
        assert differ <= pipeline, (mine.body["complete"], differ)
        for name in set(mine.body["properties"]) & set(stock.body["properties"]):
            _value, source = mine.body["properties"][name]
            assert source == stock.body["properties"][name][1], name

    _compare_bitbucket_server(ours, theirs)
    _compare_zulip(ours, theirs)


def _auth(r: Request) -> dict[str, str | None]:
    """The headers that matter to Bitbucket Server and Zulip. The User-Agent differs on
    purpose: Buildbot's HTTP client sends none there, ours aiohttp's; neither API needs one."""
    return {h: r.headers.get(h) for h in ("Authorization", "Content-Type")}


def _paths(requests: list[Request], prefix: str) -> list[Request]:
    return [r for r in requests if r.path.startswith(prefix)]


def _compare_bitbucket_server(ours: list[Request], theirs: list[Request]) -> None:
    # build-status API: the same requests, in the same order
    def status(r: Request) -> tuple[Any, ...]:
        return (r.method, r.path, r.body, _auth(r))

    mine, stock = _paths(ours, "/rest/build-status/"), _paths(theirs, "/rest/build-status/")
    assert [status(r) for r in mine] == [status(r) for r in stock]
    assert [r.body["state"] for r in mine] == ["INPROGRESS", "SUCCESSFUL"]
    assert mine[0].path == f"/rest/build-status/1.0/commits/{SHA}"
    assert mine[0].headers["Authorization"] == "Basic YWxpY2U6cHc="  # alice:pw

    # Core API: the same requests but for the build's duration, which is each build's own
    core = "/rest/api/1.0/projects/octo/repos/hello/commits/"
    mine, stock = _paths(ours, core), _paths(theirs, core)
    assert len(mine) == len(stock) == 3

    def core_status(r: Request) -> tuple[Any, ...]:
        body = {k: v for k, v in r.body.items() if k != "duration"}
        return (r.method, r.path, body, _auth(r))

    assert [core_status(r) for r in mine] == [core_status(r) for r in stock]
    assert [r.body["duration"] is None for r in mine] == [True, True, False]
    assert [type(r.body["duration"]) for r in mine] == [type(r.body["duration"]) for r in stock]
    assert mine[0].body["name"] == "ok #(build request)"
    assert mine[2].body["ref"] == "refs/heads/main"
    assert mine[2].headers["Authorization"] == "Bearer bb-token"


def _compare_zulip(ours: list[Request], theirs: list[Request]) -> None:
    mine, stock = _paths(ours, "/api/v1/external/"), _paths(theirs, "/api/v1/external/")
    assert len(mine) == len(stock) == 2
    for a, b in zip(mine, stock, strict=True):
        assert (a.method, a.path, a.query, _auth(a)) == (b.method, b.path, b.query, _auth(b))
        # the timestamps are each build's own
        assert {k: v for k, v in a.body.items() if k != "timestamp"} == {
            k: v for k, v in b.body.items() if k != "timestamp"
        }
        assert isinstance(a.body["timestamp"], int) and isinstance(b.body["timestamp"], int)
    assert mine[0].query == {"api_key": "zu-key", "stream": "ci"}
    assert [r.body["event"] for r in mine] == ["new", "finished"]
    assert mine[1].body["results"] == 0


MAIL_CONFIG = (
    CONFIG[: CONFIG.index("c['services']")]
    + """\
c['title'] = 'Hello CI'
c['services'] = [
    reporters.MailNotifier(fromaddr='CI <ci@example.org>', relayhost='127.0.0.1',
                           smtpPort=int(os.environ['T_SMTP_PORT']), lookup='example.org',
                           extraRecipients=['team@example.org']),
]
"""
)


async def _mails(kind: str, root: Path) -> list[Any]:
    async with (
        smtp_server() as box,
        _master(kind, root, {"T_SMTP_PORT": str(box.port)}, MAIL_CONFIG) as api,
    ):
        await _force(api)
        await box.wait_for(1, within=240)
        return list(box.mails)


async def test_mail_notifier_sends_what_buildbot_sends(tmp_path: Path) -> None:
    [(our_rcpt, ours, our_tls, _)] = await _mails("buildyard", tmp_path)
    [(their_rcpt, theirs, their_tls, _)] = await _mails("buildbot", tmp_path)
    # the forced build's owner is nobody (no login): the extra recipients get the mail
    assert our_rcpt == their_rcpt == ["team@example.org"]
    assert not our_tls and not their_tls
    for header in ("From", "To", "Cc"):
        assert ours[header] == theirs[header], header
    assert ours.get_content_type() == theirs.get_content_type() == "text/html"
    # The subject and body templates are buildyard's own wording (Buildbot's are its prose);
    # both name the title, the builder and the result, and link to the build.
    for message in (ours, theirs):
        subject = str(message["Subject"])
        assert "Hello CI" in subject and "ok" in subject
        assert "http://ci.example/#/builders/1/builds/1" in message.get_content()
    assert "success" in str(ours["Subject"])


GERRIT_VERIFY_CONFIG = (
    CONFIG[: CONFIG.index("c['builders']")]
    + """\
c['builders'] = [util.BuilderConfig(
    name='ok', workernames=['w1'],
    properties={'event.change.number': 12345, 'event.patchSet.number': 2},
    factory=util.BuildFactory([steps.ShellCommand(command=['true'])]))]
c['schedulers'] = [schedulers.ForceScheduler(name='force', builderNames=['ok'])]
c['www'] = {'port': 'tcp:%s:interface=127.0.0.1' % os.environ['T_WWW_PORT']}
c['db'] = {'db_url': 'sqlite:///state.sqlite'}
c['buildbotURL'] = 'http://ci.example/'
c['buildbotNetUsageData'] = None
c['services'] = [
    reporters.GerritVerifyStatusPush(os.environ['T_RECORDER'], auth=('ci', 'pw'),
                                     abstain=True, category='gate'),
]
"""
)


async def _verifications(kind: str, root: Path) -> list[Request]:
    async with (
        recording_server() as recorder,
        _master(kind, root, {"T_RECORDER": recorder.url}, GERRIT_VERIFY_CONFIG) as api,
    ):
        await _force(api)
        return await recorder.wait_for(2, within=240)


async def test_gerrit_verify_status_push_sends_what_buildbot_sends(tmp_path: Path) -> None:
    ours = await _verifications("buildyard", tmp_path)
    theirs = await _verifications("buildbot", tmp_path)
    assert len(ours) == len(theirs) == 2
    path = "/a/changes/12345/revisions/2/verify-status~verifications"
    for mine, stock in zip(ours, theirs, strict=True):
        assert (mine.method, mine.path, _auth(mine)) == (stock.method, stock.path, _auth(stock))
        assert mine.path == path
        # the duration is each build's own: compared by its form only
        assert {k: v for k, v in mine.body.items() if k != "duration"} == {
            k: v for k, v in stock.body.items() if k != "duration"
        }
    assert [r.body["duration"] for r in ours[:1]] == [r.body["duration"] for r in theirs[:1]]
    assert ours[0].body == {
        "name": "ok",
        "value": 0,
        "abstain": True,
        "comment": "Build started.",
        "url": "http://ci.example/#/builders/1/builds/1",
        "reporter": "buildbot",
        "category": "gate",
        "duration": "pending",
    }
    assert ours[1].body["value"] == 1
    assert all(re.fullmatch(r"\d+m \d+s", r.body["duration"]) for r in (ours[1], theirs[1]))
    assert ours[0].headers["Authorization"] == "Basic Y2k6cHc="  # ci:pw
