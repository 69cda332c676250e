"""HttpStatusPush and GitHubStatusPush on a real master with a real worker, against a
recording HTTP server in the test process."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
import structlog

from buildyard.master.model.results import Results
from buildyard.master.model.sourcestamps import SourceStampSpec
from buildyard.master.reporters.github import GitHubStatusPush
from buildyard.master.reporters.http import HttpStatusPush
from buildyard.testing.masters import running_master
from buildyard.testing.postgres import free_port
from tests.master.reporters.recording import recording_server

SHA = "0123456789abcdef0123456789abcdef01234567"
STAMP: SourceStampSpec = {
    "branch": "main",
    "revision": SHA,
    "repository": "https://github.com/octo/hello.git",
    "project": "",
    "codebase": "",
}


def _config(url: str, extra: str = "") -> str:
    return f"""
c['buildbotURL'] = 'http://ci.example/'
c['builders'] = [
    util.BuilderConfig(name='ok', workernames=['w1'],
                       factory=util.BuildFactory([steps.ShellCommand(command=['true'])])),
    util.BuilderConfig(name='bad', workernames=['w1'],
                       factory=util.BuildFactory([steps.ShellCommand(command=['false'])])),
]
c['secretsProviders'] = []
c['services'] = [
    reporters.GitHubStatusPush(token='t0ken', baseURL={url!r}),
    reporters.HttpStatusPush(serverUrl={url + "/hook"!r}, auth=('u', 'p')),
{extra}]
"""


async def test_github_and_http_push_follow_a_build(tmp_path: Path) -> None:
    async with recording_server() as server, running_master(tmp_path, _config(server.url)) as run:
        result = await run.build("ok", sourcestamps=[STAMP])
        assert result.build.results == Results.SUCCESS
        # GitHub: pending (request), pending (started), success; http: started, finished
        requests = await server.wait_for(5)
    statuses = [r for r in requests if "/statuses/" in r.path]
    hooks = [r for r in requests if r.path == "/hook"]
    assert len(statuses) == 3 and len(hooks) == 2
    for r in statuses:
        assert r.method == "POST"
        assert r.path == f"/repos/octo/hello/statuses/{SHA}"
        assert r.headers["Authorization"] == "token t0ken"
        assert r.headers["Content-Type"] == "application/json"
        assert r.body["context"] == "buildbot/ok"
    assert [(r.body["state"], r.body["description"]) for r in statuses] == [
        ("pending", "Build pending."),
        ("pending", "Build started."),
        ("success", "Build done."),
    ]
    brid = result.build.buildrequestid
    builderid = result.build.builderid
    assert statuses[0].body["target_url"] == f"http://ci.example/#/buildrequests/{brid}"
    build_url = f"http://ci.example/#/builders/{builderid}/builds/{result.build.number}"
    assert statuses[2].body["target_url"] == build_url
    # HttpStatusPush: the build dict, at start and at the end
    assert [h.body["complete"] for h in hooks] == [False, True]
    assert hooks[1].body["results"] == Results.SUCCESS
    assert hooks[1].body["buildid"] == result.build.id
    assert hooks[1].body["url"] == build_url
    assert hooks[1].body["builder"]["name"] == "ok"
    assert hooks[1].body["properties"]["buildername"] == ["ok", "Builder"]
    assert hooks[0].headers["Authorization"] == "Basic dTpw"  # u:p


async def test_a_failing_build_is_a_failure_status(tmp_path: Path) -> None:
    async with recording_server() as server, running_master(tmp_path, _config(server.url)) as run:
        result = await run.build("bad", sourcestamps=[STAMP])
        assert result.build.results == Results.FAILURE
        requests = await server.wait_for(5)
    states = [r.body["state"] for r in requests if "/statuses/" in r.path]
    assert states == ["pending", "pending", "failure"]


async def test_a_refusing_server_is_logged_by_name_and_builds_go_on(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(GitHubStatusPush, "retry_delays", (0.01,))
    monkeypatch.setattr(HttpStatusPush, "retry_delays", (0.01,))
    async with recording_server() as server:
        # the first answers: 401, then 500 twice (one retry), then garbage with a 200
        server.answers = [(401, "bad credentials"), (500, "oops"), (500, "oops"), (200, "<html")]
        async with running_master(tmp_path, _config(server.url)) as run:
            with structlog.testing.capture_logs() as logs:
                result = await run.build("ok", sourcestamps=[STAMP])
                await server.wait_for(6)
                second = await run.build("ok", sourcestamps=[STAMP])
                await server.wait_for(11)
    assert result.build.results == Results.SUCCESS
    assert second.build.results == Results.SUCCESS
    refused = [e for e in logs if e["event"] == "reporter_push_refused"]
    assert refused, logs
    assert {e["reporter"] for e in refused} <= {"GitHubStatusPush", "HttpStatusPush"}
    assert any(e["status"] == 401 and "bad credentials" in e["answer"] for e in refused)
    # each line names the build (or, for "pending" before it starts, the request)
    assert all(e["buildid"] is not None or e["buildrequestid"] is not None for e in refused)


async def test_gitlab_bitbucket_and_github_comments(tmp_path: Path) -> None:
    pull: SourceStampSpec = {**STAMP, "branch": "refs/pull/5/head"}
    async with recording_server() as server:
        config = f"""
c['buildbotURL'] = 'http://ci.example/'
c['builders'] = [
    util.BuilderConfig(name='ok', workernames=['w1'],
                       factory=util.BuildFactory([steps.ShellCommand(command=['true'])])),
]
c['services'] = [
    reporters.GitLabStatusPush(token='gl-tok', baseURL={server.url!r}),
    reporters.BitbucketStatusPush(oauth_key='k', oauth_secret='s',
                                  base_url={server.url + "/2.0/repositories"!r},
                                  oauth_url={server.url + "/oauth"!r}),
    reporters.GitHubCommentPush(token='gh-tok', baseURL={server.url!r}),
]
"""
        async with running_master(tmp_path, config) as run:
            result = await run.build("ok", sourcestamps=[pull])
            # gitlab: project lookup + 3 statuses; bitbucket: 2 x (token + status); comment: 1
            requests = await server.wait_for(9)
    assert result.build.results == Results.SUCCESS
    gitlab = [r for r in requests if r.path.startswith("/api/v4/")]
    assert [r.method for r in gitlab] == ["GET", "POST", "POST", "POST"]
    assert gitlab[0].path == "/api/v4/projects/octo/hello"
    assert all(r.headers["PRIVATE-TOKEN"] == "gl-tok" for r in gitlab)
    assert {r.path for r in gitlab[1:]} == {f"/api/v4/projects/77/statuses/{SHA}"}
    assert [(r.body["state"], r.body["description"]) for r in gitlab[1:]] == [
        ("pending", "Build pending."),
        ("running", "Build started."),
        ("success", "Build done."),
    ]
    assert gitlab[3].body["ref"] == "refs/pull/5/head"
    assert gitlab[3].body["name"] == "buildbot/ok"
    tokens = [r for r in requests if r.path == "/oauth"]
    assert [t.body for t in tokens] == [{"grant_type": "client_credentials"}] * 2
    assert tokens[0].headers["Authorization"] == "Basic azpz"  # k:s
    bitbucket = [r for r in requests if r.path.startswith("/2.0/")]
    assert {r.path for r in bitbucket} == {
        f"/2.0/repositories/octo/hello/commit/{SHA}/statuses/build"
    }
    assert [r.body["state"] for r in bitbucket] == ["INPROGRESS", "SUCCESSFUL"]
    assert all(r.headers["Authorization"] == "Bearer bearer-tok" for r in bitbucket)
    assert bitbucket[1].body["name"] == "ok"
    assert len(bitbucket[1].body["key"]) == 40  # the SHA-1 of the builder name
    [comment] = [r for r in requests if "/comments" in r.path]
    assert comment.path == "/repos/octo/hello/issues/5/comments"
    assert comment.body == {"body": "Build done."}
    assert comment.headers["Authorization"] == "token gh-tok"


async def test_a_slow_server_delays_nothing_else(tmp_path: Path) -> None:
    async with recording_server() as server:
        server.hold_prefix = "/repos/"  # GitHub answers nothing until released
        secrets_dir = tmp_path / "secrets"
        secrets_dir.mkdir(mode=0o700)
        (secrets_dir / "gh").write_text("from-a-secret")
        (secrets_dir / "gh").chmod(0o600)
        config = _config(server.url).replace("token='t0ken'", "token=util.Secret('gh')")
        config += f"c['secretsProviders'] = [secrets.SecretInAFile({str(secrets_dir)!r})]\n"
        async with running_master(tmp_path, config) as run:
            first = await run.build("ok", sourcestamps=[STAMP])
            second = await run.build("bad", sourcestamps=[STAMP])
            # both builds ended and HttpStatusPush reported all four events while GitHub hangs
            hooks = [r for r in await server.wait_for(6) if r.path == "/hook"]
            assert len([r for r in server.requests if r.path == "/hook"]) == 4
            github = run.master.service_manager.child("GitHubStatusPush")
            assert github.statistics()["chains"] == 2  # one held report per build request
            server.release.set()
            requests = await server.wait_for(10)
    assert (first.build.results, second.build.results) == (Results.SUCCESS, Results.FAILURE)
    assert hooks
    statuses = [r for r in requests if "/statuses/" in r.path]
    # each build request's statuses arrive in order
    by_context: dict[str, list[str]] = {}
    for r in statuses:
        by_context.setdefault(r.body["context"], []).append(r.body["state"])
    assert by_context == {
        "buildbot/ok": ["pending", "pending", "success"],
        "buildbot/bad": ["pending", "pending", "failure"],
    }
    assert {r.headers["Authorization"] for r in statuses} == {"token from-a-secret"}


async def test_a_server_that_is_down_is_logged(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(HttpStatusPush, "retry_delays", (0.01, 0.01))
    monkeypatch.setattr(GitHubStatusPush, "retry_delays", (0.01, 0.01))

    config = _config(f"http://127.0.0.1:{free_port()}")  # nothing listens there
    with structlog.testing.capture_logs() as logs:
        async with running_master(tmp_path, config) as run:
            result = await run.build("ok", sourcestamps=[STAMP])
            async with asyncio.timeout(60):
                while (  # noqa: ASYNC110  (only the log says the report was given up)
                    len([e for e in logs if e["event"] == "reporter_report_kept"]) < 5
                ):
                    await asyncio.sleep(0.05)
    assert result.build.results == Results.SUCCESS
    failed = [e for e in logs if e["event"] == "reporter_report_kept"]
    http = [e for e in failed if e["reporter"] == "HttpStatusPush"]
    assert {e["mq_event"] for e in http} == {
        f"builds/{result.build.id}/new",
        f"builds/{result.build.id}/finished",
    }
    assert len([e for e in failed if e["reporter"] == "GitHubStatusPush"]) == 3
    assert all("failed after 3 tries" in e["error"] for e in http)


async def test_reconfig_gives_a_reporter_its_new_arguments(tmp_path: Path) -> None:
    async with recording_server() as server, running_master(tmp_path, _config(server.url)) as run:
        master = run.master
        before = master.service_manager.named("HttpStatusPush")
        await run.build("ok", sourcestamps=[STAMP])
        await server.wait_for(5)
        cfg = run.basedir / "master.cfg"
        # an unchanged reporter keeps running as it is
        with structlog.testing.capture_logs() as logs:
            assert await master.reconfig()
        assert "service_reconfigured" not in [e["event"] for e in logs]
        assert master.service_manager.named("HttpStatusPush") is before
        cfg.write_text(cfg.read_text().replace("auth=('u', 'p')", "auth=('u', 'q')"))
        with structlog.testing.capture_logs() as logs:
            assert await master.reconfig()
        reconfigured = [e["service"] for e in logs if e["event"] == "service_reconfigured"]
        assert reconfigured == ["master/services/HttpStatusPush"]
        assert master.service_manager.named("HttpStatusPush") is before
        await run.build("ok", sourcestamps=[STAMP])
        requests = await server.wait_for(10)
    hooks = [r for r in requests if r.path == "/hook"]
    assert [h.headers["Authorization"] for h in hooks] == ["Basic dTpw"] * 2 + ["Basic dTpx"] * 2


async def test_reports_in_hand_at_stop_are_sent_after_a_restart(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from buildyard.master.reporters import base

    monkeypatch.setattr(base, "STOP_GRACE", 0.2)
    db_url = f"sqlite:///{tmp_path / 'shared.sqlite'}"
    config = """
c['builders'] = [
    util.BuilderConfig(name='ok', workernames=['w1'],
                       factory=util.BuildFactory([steps.ShellCommand(command=['true'])])),
]
c['services'] = [reporters.HttpStatusPush(serverUrl=URL)]
"""
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    async with recording_server() as server:
        config = config.replace("URL", repr(server.url + "/hook"))
        server.hold_prefix = "/hook"  # the first report hangs; the second waits behind it
        with structlog.testing.capture_logs() as logs:
            async with running_master(tmp_path / "a", config, db_url=db_url) as run:
                result = await run.build("ok")
                await server.wait_for(1)
        [kept] = [e for e in logs if e["event"] == "reporter_reports_kept"]
        assert (kept["reporter"], kept["events"]) == ("HttpStatusPush", 2)
        server.release.set()
        del server.requests[:]
        async with running_master(tmp_path / "b", config, db_url=db_url):
            replayed = await server.wait_for(2)
    assert [(r.body["buildid"], r.body["complete"]) for r in replayed] == [
        (result.build.id, False),
        (result.build.id, True),
    ]


async def test_reports_given_up_are_kept_listed_dropped_and_sent_after_a_restart(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """A report whose retries ran out is kept in the database; ``buildyard reports`` lists it
    and drops it; the next master of the site sends the ones left."""
    from buildyard.cli.main import build_parser

    monkeypatch.setattr(HttpStatusPush, "retry_delays", (0.01, 0.01))
    db_url = f"sqlite:///{tmp_path / 'shared.sqlite'}"
    config = """
c['builders'] = [
    util.BuilderConfig(name='ok', workernames=['w1'],
                       factory=util.BuildFactory([steps.ShellCommand(command=['true'])])),
]
c['services'] = [reporters.HttpStatusPush(serverUrl=URL)]
"""
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    down = config.replace("URL", repr(f"http://127.0.0.1:{free_port()}/hook"))  # nothing there
    with structlog.testing.capture_logs() as logs:
        async with running_master(tmp_path / "a", down, db_url=db_url) as run:
            result = await run.build("ok")
            async with asyncio.timeout(60):
                while (  # noqa: ASYNC110  (only the log says the report was given up)
                    len([e for e in logs if e["event"] == "reporter_report_kept"]) < 2
                ):
                    await asyncio.sleep(0.05)
    kept = [e for e in logs if e["event"] == "reporter_report_kept"]
    assert {e["buildid"] for e in kept} == {result.build.id}
    assert all("failed after 3 tries" in e["error"] for e in kept)

    async def cli(*argv: str) -> tuple[int, str]:
        args = build_parser().parse_args(["reports", str(tmp_path / "a" / "master"), *argv])
        capsys.readouterr()  # the stopped masters' logs
        code = int(await asyncio.to_thread(args.func, args))  # the command runs its own loop
        out = capsys.readouterr()
        return code, out.out + out.err

    code, listed = await cli()
    assert code == 0
    lines = listed.splitlines()
    assert lines[-1] == "2 report(s) given up"
    started = [ln for ln in lines if f"builds/{result.build.id}/new" in ln]
    finished = [ln for ln in lines if f"builds/{result.build.id}/finished" in ln]
    assert len(started) == len(finished) == 1
    assert started[0].startswith("HttpStatusPush #") and "failed after 3 tries" in started[0]
    number = started[0].split()[1].lstrip("#")
    code, out = await cli("--drop", "99")
    assert code == 1 and "no given-up report #99" in out
    assert await cli("--drop", number) == (0, "HttpStatusPush: dropped 1 report(s)\n")
    code, listed = await cli()
    assert "1 report(s) given up" in listed and f"builds/{result.build.id}/finished" in listed

    async with recording_server() as server:
        up = config.replace("URL", repr(server.url + "/hook"))
        async with running_master(tmp_path / "b", up, db_url=db_url):
            [sent] = await server.wait_for(1)
            assert (sent.body["buildid"], sent.body["complete"]) == (result.build.id, True)
    assert len(server.requests) == 1  # the dropped report was not sent
    assert await cli() == (0, "no report given up\n")
