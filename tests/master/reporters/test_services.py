"""c['services']: users' own BuildbotService subclasses and reporters, started, reconfigured
only when their arguments change, and stopped with the master; bad input in master.cfg."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest
import structlog

from buildyard.common.errors import ConfigErrors
from buildyard.master.config.loader import load_master_config
from buildyard.master.model.results import Results
from buildyard.testing.masters import HEADER, running_master
from tests.master.reporters.recording import recording_server

SERVICE = """
import asyncio
from buildbot.util.service import BuildbotService
from buildbot.reporters.base import ReporterBase
from buildbot.reporters.generators.build import BuildStatusGenerator
from buildbot.reporters.message import MessageFormatterFunction, MessageFormatter

class Counter(BuildbotService):
    name = 'counter'
    calls = []

    def checkConfig(self, step, greeting='hi'):
        if step <= 0:
            config.error('Counter: step must be positive')

    async def reconfigService(self, step, greeting='hi'):
        await asyncio.sleep(0)
        self.step, self.greeting = step, greeting
        self.calls.append(('reconfig', step, greeting))

    def startService(self):
        self.calls.append(('start',))

    async def stopService(self):
        self.calls.append(('stop',))

c['builders'] = [
    util.BuilderConfig(name='ok', workernames=['w1'],
                       factory=util.BuildFactory([steps.ShellCommand(command=['true'])])),
]
"""


def _write(basedir: Path, body: str) -> None:
    text = (basedir / "master.cfg").read_text()
    head = text[: text.index("# --services--")] if "# --services--" in text else text
    (basedir / "master.cfg").write_text(head + "# --services--\n" + body)


async def test_a_users_service_is_reconfigured_only_when_its_arguments_change(
    tmp_path: Path,
) -> None:
    body = SERVICE.replace("from buildbot.util", "from buildbot import config\nfrom buildbot.util")
    config = body + "c['services'] = [Counter(2)]\n"
    async with running_master(tmp_path, "# --services--\n" + config) as run:
        master = run.master
        service: Any = master.service_manager.named("counter")
        assert service.master is master
        assert service.calls == [("reconfig", 2, "hi"), ("start",)]
        # the same arguments: nothing happens
        _write(run.basedir, config)
        assert await master.reconfig()
        assert master.service_manager.named("counter") is service
        assert service.calls == [("reconfig", 2, "hi"), ("start",)]
        # other arguments: the running service gets them
        _write(run.basedir, body + "c['services'] = [Counter(3, greeting='yo')]\n")
        assert await master.reconfig()
        assert master.service_manager.named("counter") is service
        assert service.calls[-1] == ("reconfig", 3, "yo")
        assert service.step == 3
        # gone from the configuration: stopped
        _write(run.basedir, body + "c['services'] = []\n")
        assert await master.reconfig()
        assert "counter" not in master.service_manager
        assert service.calls[-1] == ("stop",)


async def test_a_users_reporter_gets_reports_and_a_failing_one_disturbs_nothing(
    tmp_path: Path,
) -> None:
    config = (
        SERVICE
        + """
class Collect(ReporterBase):
    reports = []

    def checkConfig(self, generators):
        super().checkConfig(generators=generators)

    def reconfigService(self, generators):
        super().reconfigService(generators=generators)

    async def sendMessage(self, reports):
        self.reports.extend(reports)

def explode(context):
    raise RuntimeError('formatter bug')

c['services'] = [
    Collect(name='collect', generators=[
        BuildStatusGenerator(mode='all', message_formatter=MessageFormatter(
            template='{{ buildername }} {{ summary }} {{ build_url }}',
            subject='{{ buildbot_title }}: {{ result_names[results] }}'))]),
    Collect(name='broken', generators=[
        BuildStatusGenerator(message_formatter=MessageFormatterFunction(explode, 'plain'))]),
    reporters.HttpStatusPush(serverUrl=URL),
]
"""
    )
    async with recording_server() as server:
        config = config.replace("serverUrl=URL", f"serverUrl={server.url + '/hook'!r}")
        with structlog.testing.capture_logs() as logs:
            async with running_master(tmp_path, config) as run:
                result = await run.build("ok")
                assert "service_task_failed" not in [e["event"] for e in logs]
                collect: Any = run.master.service_manager.named("collect")
                await server.wait_for(2)  # the http reporter got both of its reports
                for _ in range(1200):  # bounded: the reports of one finished build
                    if collect.reports and any(
                        e["event"] == "reporter_generator_failed" for e in logs
                    ):
                        break
                    await asyncio.sleep(0.05)
    assert result.build.results == Results.SUCCESS
    [report] = collect.reports
    url = f"http://localhost:8080/#/builders/{result.build.builderid}/builds/{result.build.number}"
    assert report["body"] == f"ok Build succeeded! {url}"
    assert report["subject"] == "Buildbot: success"
    assert report["results"] == Results.SUCCESS
    assert [b["buildid"] for b in report["builds"]] == [result.build.id]
    [failed] = [e for e in logs if e["event"] == "reporter_generator_failed"]
    assert failed["reporter"] == "broken"
    assert failed["mq_event"] == f"builds/{result.build.id}/finished"
    assert failed["buildid"] == result.build.id
    assert "formatter bug" in failed["error"]


@pytest.mark.parametrize(
    ("services", "message"),
    [
        ("[reporters.HttpStatusPush(serverUrl='ftp://x')]", "serverUrl must be an http"),
        ("[reporters.GitHubStatusPush(token='')]", "token is required"),
        (
            "[reporters.HttpStatusPush(serverUrl='http://a'), "
            "reporters.HttpStatusPush(serverUrl='http://b')]",
            "two services named 'HttpStatusPush'",
        ),
        (
            "[reporters.HttpStatusPush(serverUrl='http://a', generators=["
            "reporters.BuildStatusGenerator(mode=('failing', 'all'))])]",
            "mode 'all' must be given alone",
        ),
        (
            "[reporters.HttpStatusPush(serverUrl='http://a', generators=["
            "reporters.BuildStatusGenerator(mode='sometimes')])]",
            "mode 'sometimes' is not a valid mode",
        ),
        (
            "[reporters.HttpStatusPush(serverUrl='http://a', generators=["
            "reporters.BuildStatusGenerator(builders=['a'], tags=['t'])])]",
            "not both",
        ),
        (
            "[reporters.MailNotifier(fromaddr='nobody')]",
            "fromaddr 'nobody' is not a valid email address",
        ),
        (
            "[reporters.MailNotifier(fromaddr='a@b.org', generators=["
            "reporters.BuildStatusGenerator(message_formatter="
            "reporters.MessageFormatter(template='{% if %}'))])]",
            "template is not a valid Jinja2 template",
        ),
        ("[reporters.IRC('host', 'nick', '#ci')]", "IRC: channels must be a list"),
        (
            "[reporters.IRC('host', 'nick', [], allowForce=True, authz={})]",
            "IRC: if you specify authz, you must not use allowForce anymore",
        ),
        ("[reporters.IRC('host', 'nick', [], authz={'force': 'alice'})]", "authz values must be"),
        ("[reporters.ZulipStatusPush(endpoint=1, token='t')]", "endpoint must be a string"),
        (
            "[reporters.PushoverNotifier('u', 'a', otherParams={'colour': 'red'})]",
            "otherParams can be only",
        ),
        (
            "[reporters.BitbucketServerCoreAPIStatusPush('http://b', token='t', auth=('u', 'p'))]",
            "(token or auth), not both",
        ),
        ("[reporters.GerritStatusPush('', 'user')]", "server and username are required"),
        ("['not a service']", "must be a list of services"),
    ],
)
def test_bad_services_are_config_errors(tmp_path: Path, services: str, message: str) -> None:
    (tmp_path / "master.cfg").write_text(
        HEADER.format(port=0, db_url="sqlite://") + f"c['services'] = {services}\n"
    )
    with pytest.raises(ConfigErrors) as info:
        load_master_config(tmp_path)
    assert any(message in str(e) for e in info.value.errors), info.value.errors
