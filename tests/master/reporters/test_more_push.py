"""The Bitbucket Server reporters, ZulipStatusPush, PushoverNotifier and PushjetNotifier on a
real master with a real worker, against a recording HTTP server in the test process shaped like
each service's API."""

from __future__ import annotations

from pathlib import Path

import pytest
import structlog
from structlog.processors import format_exc_info

from buildyard.common.logging import redact_secrets
from buildyard.master.model.results import Results
from buildyard.master.model.sourcestamps import SourceStampSpec
from buildyard.master.reporters.bitbucketserver import BitbucketServerStatusPush
from buildyard.master.reporters.httpclient import HttpClient, HttpError
from buildyard.master.reporters.notifiers import PushoverNotifier
from buildyard.master.reporters.zulip import ZulipStatusPush
from buildyard.testing.masters import running_master
from tests.master.reporters.recording import Request, recording_server

SHA = "0123456789abcdef0123456789abcdef01234567"
STAMP: SourceStampSpec = {
    "branch": "feature/x",
    "revision": SHA,
    "repository": "https://bitbucket.example/scm/PRJ/hello.git",
    "project": "hello-project",
    "codebase": "",
}
PR_URL = "https://bitbucket.example/projects/PRJ/repos/hello/pull-requests/7"

BUILDERS = """
c['buildbotURL'] = 'http://ci.example/'
c['builders'] = [
    util.BuilderConfig(name='ok', workernames=['w1'], factory=util.BuildFactory([
        steps.SetProperty(property='pullrequesturl', value=PR_URL),
        steps.SetProperty(property='tests_failed', value=2),
        steps.SetProperty(property='tests_successful', value=40),
        steps.ShellCommand(command=['true']),
    ])),
    util.BuilderConfig(name='bad', workernames=['w1'],
                       factory=util.BuildFactory([steps.ShellCommand(command=['false'])])),
]
""".replace("PR_URL", repr(PR_URL))


def _by_path(requests: list[Request], prefix: str) -> list[Request]:
    return [r for r in requests if r.path.startswith(prefix)]


async def test_bitbucket_server_reporters_follow_a_build(tmp_path: Path) -> None:
    async with recording_server() as server:
        config = (
            BUILDERS
            + f"""
c['services'] = [
    reporters.BitbucketServerStatusPush({server.url!r}, 'alice', 'pw'),
    reporters.BitbucketServerCoreAPIStatusPush({server.url + "/"!r}, token='bb-token'),
    reporters.BitbucketServerPRCommentPush(base_url={server.url!r}, user='bob',
                                           password='pw2'),
]
"""
        )
        async with running_master(tmp_path, config) as run:
            result = await run.build("ok", sourcestamps=[STAMP])
            # build-status: 2; core API: pending, started, done; comment: 1
            requests = await server.wait_for(6)
    assert result.build.results == Results.SUCCESS
    build_url = f"http://ci.example/#/builders/{result.build.builderid}/builds/1"

    statuses = _by_path(requests, "/rest/build-status/")
    assert {(r.method, r.path) for r in statuses} == {
        ("POST", f"/rest/build-status/1.0/commits/{SHA}")
    }
    assert {r.headers["Authorization"] for r in statuses} == {"Basic YWxpY2U6cHc="}  # alice:pw
    assert [r.body for r in statuses] == [
        {"state": "INPROGRESS", "url": build_url, "key": "ok", "description": "Build started."},
        {"state": "SUCCESSFUL", "url": build_url, "key": "ok", "description": "Build done."},
    ]

    core = _by_path(requests, "/rest/api/1.0/projects/PRJ/repos/hello/commits/")
    assert {r.path for r in core} == {
        f"/rest/api/1.0/projects/PRJ/repos/hello/commits/{SHA}/builds"
    }
    assert {r.headers["Authorization"] for r in core} == {"Bearer bb-token"}
    assert [(r.body["state"], r.body["description"]) for r in core] == [
        ("INPROGRESS", "Build pending."),
        ("INPROGRESS", "Build started."),
        ("SUCCESSFUL", "Build done."),
    ]

    pending, started, done = (r.body for r in core)
    assert pending["name"] == "ok #(build request)"
    assert pending["url"] == f"http://ci.example/#/buildrequests/{result.build.buildrequestid}"
    assert started["name"] == done["name"] == "ok #1"
    assert done == {
        "state": "SUCCESSFUL",
        "url": build_url,
        "key": "ok",
        "parent": "ok",
        "ref": "refs/heads/feature/x",
        "buildNumber": "1",
        "description": "Build done.",
        "name": "ok #1",
        "duration": done["duration"],
        "testResults": {"failed": 2, "skipped": 0, "successful": 40},
    }
    assert isinstance(done["duration"], int) and done["duration"] % 1000 == 0
    assert started["duration"] is None and started["testResults"] is None

    [comment] = _by_path(requests, "/rest/api/1.0/projects/PRJ/repos/hello/pull-requests/")
    assert comment.method == "POST"
    assert comment.path == "/rest/api/1.0/projects/PRJ/repos/hello/pull-requests/7/comments"
    assert comment.headers["Authorization"] == "Basic Ym9iOnB3Mg=="  # bob:pw2
    assert set(comment.body) == {"text"}
    assert build_url in comment.body["text"]


async def test_zulip_pushover_and_pushjet_follow_builds(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    async with recording_server() as server:
        monkeypatch.setattr(PushoverNotifier, "api_url", server.url)
        config = (
            BUILDERS
            + f"""
c['services'] = [
    reporters.ZulipStatusPush(endpoint={server.url!r}, token='zu-key', stream='ci'),
    reporters.PushoverNotifier(user_key='u-key', api_token='a-tok',
                               priorities={{'failing': 1, 'passing': -1}},
                               otherParams={{'sound': 'siren'}}),
    reporters.PushjetNotifier(secret='pj-secret', levels={{'failing': 5}},
                              base_url={server.url!r}),
]
"""
        )
        async with running_master(tmp_path, config) as run:
            ok = await run.build("ok", sourcestamps=[STAMP])
            bad = await run.build("bad", sourcestamps=[STAMP])
            # zulip: 2 per build; pushover and pushjet: 1 per build
            requests = await server.wait_for(8)
    assert (ok.build.results, bad.build.results) == (Results.SUCCESS, Results.FAILURE)

    zulip = _by_path(requests, "/api/v1/external/buildbot")
    assert {r.method for r in zulip} == {"POST"}
    assert all(r.query == {"api_key": "zu-key", "stream": "ci"} for r in zulip)
    assert all(r.headers["Content-Type"] == "application/json" for r in zulip)
    events = {(r.body["buildid"], r.body["event"]): r.body for r in zulip}
    assert set(events) == {(b.build.id, e) for b in (ok, bad) for e in ("new", "finished")}
    finished = events[(bad.build.id, "finished")]
    assert set(finished) == {
        "event",
        "buildid",
        "buildername",
        "url",
        "project",
        "timestamp",
        "results",
    }
    assert finished["buildername"] == "bad"
    assert finished["results"] == Results.FAILURE
    assert finished["project"] == "hello-project"
    assert finished["url"] == f"http://ci.example/#/builders/{bad.build.builderid}/builds/1"
    new = events[(ok.build.id, "new")]
    assert "results" not in new
    assert isinstance(new["timestamp"], int)
    assert new["timestamp"] <= events[(ok.build.id, "finished")]["timestamp"]

    pushover = _by_path(requests, "/1/messages.json")
    assert len(pushover) == 2 and {r.method for r in pushover} == {"POST"}
    assert all(not r.body for r in pushover)  # Buildbot sends the fields in the query string
    by_priority = {r.query["priority"]: r.query for r in pushover}
    assert set(by_priority) == {"1", "-1"}
    failing = by_priority["1"]
    assert (failing["user"], failing["token"], failing["sound"], failing["html"]) == (
        "u-key",
        "a-tok",
        "siren",
        "1",
    )
    assert f"/builders/{bad.build.builderid}/builds/1" in failing["message"]
    assert "bad" in failing["title"]

    pushjet = _by_path(requests, "/message")
    assert len(pushjet) == 2
    assert {r.headers["Content-Type"] for r in pushjet} == {"application/x-www-form-urlencoded"}
    assert all(r.body["secret"] == "pj-secret" for r in pushjet)
    [failing_jet] = [r.body for r in pushjet if "level" in r.body]
    assert failing_jet["level"] == "5"
    assert "bad" in failing_jet["title"] and "bad" in failing_jet["message"]


async def test_refusals_are_one_line_naming_the_reporter_and_the_build(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(BitbucketServerStatusPush, "retry_delays", (0.01,))
    monkeypatch.setattr(ZulipStatusPush, "retry_delays", (0.01,))
    async with recording_server() as server:
        server.path_answers = {
            # the first build: 401 at its start, 500 retried into a 502 at its end; the second
            # build's start: garbage with a 200 where Bitbucket answers 204
            "/rest/build-status/": [
                (401, "unauthorized"),
                (500, "oops"),
                (502, "down"),
                (200, "<html"),
            ],
            "/api/v1/external/": [(404, '{"result": "error", "msg": "Stream does not exist"}')],
        }
        config = (
            BUILDERS
            + f"""
c['services'] = [
    reporters.BitbucketServerStatusPush({server.url!r}, 'alice', 'pw'),
    reporters.ZulipStatusPush(endpoint={server.url!r}, token='zu-key'),
]
"""
        )
        async with running_master(tmp_path, config) as run:
            with structlog.testing.capture_logs() as logs:
                first = await run.build("bad", sourcestamps=[STAMP])
                await server.wait_for(5)
                second = await run.build("bad", sourcestamps=[STAMP])
                await server.wait_for(9)
    assert (first.build.results, second.build.results) == (Results.FAILURE, Results.FAILURE)
    refused = [e for e in logs if e["event"] == "reporter_push_refused"]
    assert sorted((e["reporter"], e["status"], e["buildid"]) for e in refused) == [
        ("BitbucketServerStatusPush", 200, second.build.id),
        ("BitbucketServerStatusPush", 401, first.build.id),
        ("ZulipStatusPush", 404, first.build.id),
    ], [e for e in logs if "reporter" in e]
    assert any("Stream does not exist" in e["answer"] for e in refused)
    # a 5xx still there after the retries: the report is given up and kept, not refused
    [kept] = [e for e in logs if e["event"] == "reporter_report_kept"]
    assert (kept["reporter"], kept["buildid"]) == ("BitbucketServerStatusPush", first.build.id)
    assert "http 502: down" in kept["error"]
    # nothing else went wrong
    errors = [e for e in logs if e["log_level"] == "error"]
    assert sorted(map(repr, errors)) == sorted(map(repr, [*refused, kept]))


ZULIP_KEY = "zu-Key-93xqPLm"


async def test_http_client_logs_addresses_without_their_query_string() -> None:
    path = f"/api/v1/external/buildbot?api_key={ZULIP_KEY}"
    with structlog.testing.capture_logs() as logs:
        async with recording_server() as server:
            server.answers = [(500, "oops"), (500, "oops")]
            client = HttpClient(server.url, debug=True, retry_delays=(0.01,), who="t")
            try:
                # the reporters' client: a 5xx after the retries is an error (the report kept)
                with pytest.raises(HttpError) as exhausted:
                    await client.post(path, json={})
            finally:
                await client.close()
        # the server is gone: the request fails, with an HttpError naming the address
        client = HttpClient(server.url, retry_delays=(0.01,), who="t")
        try:
            with pytest.raises(HttpError) as failed:
                await client.post(path, json={})
        finally:
            await client.close()
    assert "failed after 2 tries: http 500: oops" in str(exhausted.value)
    assert ZULIP_KEY not in str(exhausted.value)
    assert server.requests[0].query["api_key"] == ZULIP_KEY
    assert "/api/v1/external/buildbot" in str(failed.value)
    assert ZULIP_KEY not in str(failed.value)
    events = {e["event"] for e in logs}
    assert {"http_request", "reporter_http_retry"} <= events, logs
    assert ZULIP_KEY not in repr(logs)


async def test_zulip_secret_token_never_reaches_the_master_log(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(ZulipStatusPush, "retry_delays", (0.01,))
    secrets_dir = tmp_path / "secrets"
    secrets_dir.mkdir()
    (secrets_dir / "zulip").write_text(ZULIP_KEY + "\n")
    (secrets_dir / "zulip").chmod(0o600)
    async with recording_server() as server:
        server.answers = [(500, f"no such key {ZULIP_KEY}")] * 4
        config = (
            BUILDERS
            + f"""
c['secretsProviders'] = [secrets.SecretInAFile({str(secrets_dir)!r})]
c['services'] = [
    reporters.ZulipStatusPush(endpoint={server.url!r}, token=util.Secret('zulip'), debug=True),
]
"""
        )
        with structlog.testing.capture_logs(processors=[format_exc_info, redact_secrets]) as logs:
            async with running_master(tmp_path, config) as run:
                await run.build("bad", sourcestamps=[STAMP])
                await server.wait_for(4)
    # the token was rendered and sent; the server answered 500 and the client retried
    assert all(r.query["api_key"] == ZULIP_KEY for r in server.requests)
    events = {e["event"] for e in logs}
    assert {"http_request", "reporter_http_retry"} <= events, logs
    assert ZULIP_KEY not in repr(logs)
    assert "<zulip>" in repr(logs)  # the answer echoing the key is logged, redacted
