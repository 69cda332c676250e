"""GerritVerifyStatusPush on a real master with a real worker, against a recording HTTP server
shaped like Gerrit's verify-status plugin (``POST /a/changes/{change}/revisions/{revision}/
verify-status~verifications``, Basic auth, 204)."""

from __future__ import annotations

import base64
import datetime
import re
from pathlib import Path

import pytest
import structlog

from buildyard.master.model.results import Results
from buildyard.master.reporters.gerrit_verify_status import GerritVerifyStatusPush
from buildyard.testing.masters import running_master
from tests.master.reporters.recording import recording_server

BUILDERS = """
c['buildbotURL'] = 'http://ci.example/'
c['secretsProviders'] = [secrets.SecretInAFile(dirname=SECRETS)]
c['builders'] = [
    util.BuilderConfig(name='ok', workernames=['w1'],
                       factory=util.BuildFactory([steps.ShellCommand(command=['true'])])),
    util.BuilderConfig(name='bad', workernames=['w1'],
                       factory=util.BuildFactory([steps.ShellCommand(command=['false'])])),
]
"""

CHANGE = {"event.change.number": 12345, "event.patchSet.number": 2}


def _path(change: object, revision: object) -> str:
    return f"/a/changes/{change}/revisions/{revision}/verify-status~verifications"


async def test_verifications_follow_builds(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(GerritVerifyStatusPush, "retry_delays", (0.01,))
    secrets_dir = tmp_path / "secrets"
    secrets_dir.mkdir(mode=0o700)
    (secrets_dir / "gerrit_pw").write_text("s3cret")
    (secrets_dir / "gerrit_pw").chmod(0o600)
    async with recording_server() as server:
        config = (
            BUILDERS.replace("SECRETS", repr(str(secrets_dir)))
            + f"""
c['services'] = [
    reporters.GerritVerifyStatusPush({server.url + "/"!r}, auth=('ci', util.Secret('gerrit_pw')),
        verification_name=util.Interpolate('%(prop:buildername)s-check'), abstain=True,
        category='gate', reporter='ci-bot'),
]
"""
        )
        async with running_master(tmp_path, config) as run:
            ok = await run.build("ok", properties=CHANGE)
            await server.wait_for(2)
            # a build of no Gerrit change is not reported
            await run.build("ok")
            # gerrit_changes: every change listed; the answers: one refusal
            server.path_answers = {_path(7, "abc"): [(403, "not permitted")]}
            changes = [
                {"change_id": 7, "revision_id": "abc"},
                {"change_id": "p~main~I1", "revision_id": 1},
            ]
            with structlog.testing.capture_logs() as logs:
                bad = await run.build("bad", properties={"gerrit_changes": changes})
                requests = await server.wait_for(6)
    assert (ok.build.results, bad.build.results) == (Results.SUCCESS, Results.FAILURE)
    auth = "Basic " + base64.b64encode(b"ci:s3cret").decode()
    assert {(r.method, r.headers["Authorization"]) for r in requests} == {("POST", auth)}
    url = f"http://ci.example/#/builders/{ok.build.builderid}/builds/1"
    start, end = requests[:2]
    assert start.path == end.path == _path(12345, 2)
    assert start.body == {
        "name": "ok-check",
        "value": 0,
        "abstain": True,
        "comment": "Build started.",
        "url": url,
        "reporter": "ci-bot",
        "category": "gate",
        "duration": "pending",
    }
    assert {k: v for k, v in end.body.items() if k != "duration"} == {
        **{k: v for k, v in start.body.items() if k != "duration"},
        "value": 1,
        "comment": "Build done.",
    }
    assert re.fullmatch(r"\d+m \d+s", end.body["duration"])
    # the failed build: each listed change, at start (0) and end (-1)
    assert [(r.path, r.body["value"], r.body["name"]) for r in requests[2:]] == [
        (_path(7, "abc"), 0, "bad-check"),
        (_path("p~main~I1", 1), 0, "bad-check"),
        (_path(7, "abc"), -1, "bad-check"),
        (_path("p~main~I1", 1), -1, "bad-check"),
    ]
    [refused] = [e for e in logs if e["event"] == "reporter_push_refused"]
    assert (refused["reporter"], refused["status"], refused["change_id"]) == (
        "GerritVerifyStatusPush",
        403,
        7,
    )
    assert refused["buildid"] == bad.build.id
    assert refused["answer"] == "not permitted"


def test_duration_and_results_table() -> None:
    push = GerritVerifyStatusPush.__new__(GerritVerifyStatusPush)
    fmt = push.formatDuration
    assert fmt(datetime.timedelta(seconds=65)) == "1m 5s"
    assert fmt(datetime.timedelta(hours=2, seconds=7)) == "2h 0m 7s"
    assert fmt(datetime.timedelta(days=1, minutes=3)) == "1 day 0h 3m 0s"
    assert fmt(datetime.timedelta(days=3, hours=1)) == "3 days 1h 0m 0s"
    table = GerritVerifyStatusPush.RESULTS_TABLE
    assert [table[r] for r in Results] == [1, 1, -1, 0, 0, 0, 0]
