"""The github dialect against a running master: what each event records, and what it refuses."""

from __future__ import annotations

import contextlib
import io
import json
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import structlog
from structlog.processors import format_exc_info
from structlog.testing import capture_logs

from buildyard.common.logging import redact_secrets
from tests.master.changes.hooks import payloads as p
from tests.master.changes.hooks.conftest import hook_master
from tests.master.changes.hooks.fake_github import FakeGitHub

SECRET = "s3cret-hook"


def _dialects(options: Mapping[str, object]) -> str:
    return f"c['www']['change_hook_dialects'] = {{'github': {options!r}}}\n"


def _headers(
    event: str, body: bytes | None = None, extra: Mapping[str, str] | None = None
) -> dict[str, str]:
    headers = {"X-GitHub-Event": event, "Content-Type": "application/json", **(extra or {})}
    if body is not None:
        headers["X-Hub-Signature-256"] = p.sign(body, SECRET)
    return headers


async def test_push_records_one_change_per_commit(tmp_path: Path) -> None:
    options = {"secret": SECRET, "github_property_whitelist": ["github.repository.topics"]}
    async with hook_master(tmp_path, _dialects(options)) as hooks:
        payload = p.gh_push()
        body = p.body(payload)
        answer = await hooks.post("/change_hook/github", data=body, headers=_headers("push", body))
        assert (answer.status, answer.text) == (200, "3 change found")
        changes = await hooks.changes()
    assert [c["revision"] for c in changes] == p.SHA[1:4]
    first = changes[0]
    assert first["author"] == "Mira Kowal <mira@example.org>"
    assert first["committer"] == "GitHub <noreply@github.com>"
    assert sorted(first["files"]) == ["README.md", "src/new_1.py"]
    assert first["comments"] == "Add the lamp driver"
    assert first["branch"] == "main"
    assert first["category"] is None
    assert first["repository"] == "https://github.com/harbor/lighthouse"
    assert first["project"] == "harbor/lighthouse"
    assert first["revlink"] == f"https://github.com/harbor/lighthouse/commit/{p.SHA[1]}"
    # 2004-05-02T10:11:00+02:00
    assert first["when_timestamp"] == 1714637460
    assert first["properties"] == {
        "event": ["push", "Change"],
        "github_distinct": [True, "Change"],
        "github.repository.topics": [["ci", "light"], "Change"],
    }
    assert sorted(changes[2]["files"]) == ["old.c", "rot.c", "rot.h"]


async def test_tags_new_branches_deletions_and_skips(tmp_path: Path) -> None:
    async with hook_master(tmp_path, _dialects({"codebase": "lamp"})) as hooks:
        tag = p.gh_push("refs/tags/v1.2", created=True)
        answer = await hooks.post("/change_hook/github", tag, headers=_headers("push"))
        assert (answer.status, answer.text) == (200, "1 change found")
        # a new branch: only its head commit
        branch = p.gh_push("refs/heads/fog", created=True)
        assert (await hooks.post("/change_hook/github", branch, headers=_headers("push"))).text == (
            "1 change found"
        )
        # a force push records its commits like any push
        forced = p.gh_push("refs/heads/main", [p.gh_commit(5, "Rewrite")], forced=True)
        assert (await hooks.post("/change_hook/github", forced, headers=_headers("push"))).text == (
            "1 change found"
        )
        for nothing in (
            p.gh_push("refs/heads/old", [], deleted=True),
            p.gh_push("refs/notes/commits"),
            p.gh_push(commits=[p.gh_commit(6, "Tweak docs [ci skip]")]),
            p.gh_push(commits=[p.gh_commit(6, "Tweak docs [skip ci]")]),
        ):
            answer = await hooks.post("/change_hook/github", nothing, headers=_headers("push"))
            assert (answer.status, answer.text) == (200, "no change found")
        assert (await hooks.post("/change_hook/github", {}, headers=_headers("ping"))).status == 200
        changes = await hooks.changes()
    assert [(c["branch"], c["category"], c["revision"], c["codebase"]) for c in changes] == [
        ("v1.2", "tag", p.SHA[3], "lamp"),
        ("fog", None, p.SHA[3], "lamp"),
        ("main", None, p.SHA[5], "lamp"),
    ]


async def test_custom_skips_and_form_encoded_payloads(tmp_path: Path) -> None:
    async with hook_master(tmp_path, _dialects({"skips": [r"\bWIP\b"]})) as hooks:
        wip = p.gh_push(commits=[p.gh_commit(1, "WIP: lamp")])
        assert (await hooks.post("/change_hook/github", wip, headers=_headers("push"))).text == (
            "no change found"
        )
        ci_skip = p.gh_push(commits=[p.gh_commit(2, "Lamp [ci skip]")])
        form = {"payload": p.body(ci_skip).decode()}
        answer = await hooks.post(
            "/change_hook/github", data=form, headers={"X-GitHub-Event": "push"}
        )
        assert (answer.status, answer.text) == (200, "1 change found")
        assert [c["revision"] for c in await hooks.changes()] == [p.SHA[2]]


async def test_pull_request_reads_files_and_message_from_the_api(
    tmp_path: Path, github_api: FakeGitHub
) -> None:
    options = {
        "github_api_endpoint": github_api.url,
        "token": "tok-123",
        "pullrequest_ref": "head",
        "github_property_whitelist": ["github.head.?ef", "github.head.sha", "github.number"],
    }
    async with hook_master(tmp_path, _dialects(options)) as hooks:
        for action in ("opened", "synchronize"):
            answer = await hooks.post(
                "/change_hook/github", p.gh_pull_request(action), headers=_headers("pull_request")
            )
            assert (answer.status, answer.text) == (200, "1 change found")
        for ignored in ("closed", "labeled"):
            answer = await hooks.post(
                "/change_hook/github", p.gh_pull_request(ignored), headers=_headers("pull_request")
            )
            assert (answer.status, answer.text) == (200, "no change found")
        github_api.head_message = "Blink [skip ci]"
        skipped = await hooks.post(
            "/change_hook/github", p.gh_pull_request("reopened"), headers=_headers("pull_request")
        )
        assert skipped.text == "no change found"
        changes = await hooks.changes()
    assert len(changes) == 2
    change = changes[0]
    assert change["branch"] == "refs/pull/42/head"
    assert change["revision"] == p.SHA[7]
    assert change["category"] == "pull"
    assert change["author"] == "oskar-b"
    assert sorted(change["files"]) == ["src/blink.c", "src/flash.c", "src/fog.c"]
    assert change["comments"] == (
        "GitHub Pull Request #42 (3 commits)\nBlink in fog\nFog mode blinks twice a second.\r\n"
        "Closes #7."
    )
    assert change["project"] == "harbor/lighthouse"
    assert change["repository"] == "https://github.com/harbor/lighthouse"
    assert change["revlink"] == "https://github.com/harbor/lighthouse/pull/42"
    assert change["when_timestamp"] == 1718094600  # 2004-06-11T08:30:00Z
    props = {k: v[0] for k, v in change["properties"].items()}
    assert props == {
        "pullrequesturl": "https://github.com/harbor/lighthouse/pull/42",
        "event": "pull_request",
        "basename": "main",
        "github.head.ref": "fog",
        "github.head.sha": p.SHA[7],
        "github.number": 42,
    }
    # each recorded pull request asked for its head commit and its files, with the token
    assert (f"/repos/harbor/lighthouse/commits/{p.SHA[7]}", "token tok-123") in github_api.requests
    assert ("/repos/harbor/lighthouse/pulls/42/files", "token tok-123") in github_api.requests


async def test_signatures(tmp_path: Path) -> None:
    async with hook_master(tmp_path, _dialects({"secret": SECRET, "strict": True})) as hooks:
        body = p.body(p.gh_push())
        sha1 = {"X-Hub-Signature": p.sign(body, SECRET, "sha1")}
        answer = await hooks.post(
            "/change_hook/github", data=body, headers=_headers("push", extra=sha1)
        )
        assert answer.status == 200
        with structlog.testing.capture_logs() as logs:
            refused = [
                await hooks.post("/change_hook/github", data=body, headers=_headers("push")),
                await hooks.post(
                    "/change_hook/github",
                    data=body,
                    headers=_headers("push", extra={"X-Hub-Signature-256": p.sign(body, "wrong")}),
                ),
                await hooks.post(
                    "/change_hook/github",
                    data=body + b" ",
                    headers=_headers("push", extra={"X-Hub-Signature-256": p.sign(body, SECRET)}),
                ),
                await hooks.post(
                    "/change_hook/github",
                    data=body,
                    headers=_headers("push", extra={"X-Hub-Signature": "md5=abc"}),
                ),
            ]
        assert [(a.status, a.text) for a in refused] == [
            (400, "Request has no required signature"),
            (400, "Hash mismatch"),
            (400, "Hash mismatch"),
            (400, "Unknown hash type: md5"),
        ]
        assert [
            (e["event"], e["hook"], e["status"]) for e in logs if e["log_level"] == "warning"
        ] == [("change_hook_refused", "github", 400)] * 4
        assert len(await hooks.changes()) == 3


async def test_bad_requests_store_nothing(tmp_path: Path) -> None:
    async with hook_master(tmp_path, _dialects({})) as hooks:
        cases = [
            (p.gh_push(), {"X-GitHub-Event": "deployment"}, "Unknown event: deployment"),
            # GitLab's push, posted to the GitHub hook: no X-GitHub-Event
            (p.gl_push(), {"X-Gitlab-Event": "Push Hook"}, "Unknown event: None"),
        ]
        for payload, headers, message in cases:
            answer = await hooks.post("/change_hook/github", payload, headers=headers)
            assert (answer.status, answer.text) == (400, message)
        # GitLab's push with GitHub's event header: it lacks what a GitHub push has
        answer = await hooks.post("/change_hook/github", p.gl_push(), headers=_headers("push"))
        assert (answer.status, answer.text) == (400, "the payload has no 'repository.html_url'")
        answer = await hooks.post(
            "/change_hook/github", data=b"{not json", headers=_headers("push")
        )
        assert answer.status == 400 and answer.text.startswith("the payload is not valid JSON")
        answer = await hooks.post(
            "/change_hook/github",
            data=b"x",
            headers={"X-GitHub-Event": "push", "Content-Type": "text/plain"},
        )
        assert (answer.status, answer.text) == (400, "Unknown content type: text/plain")
        huge = b"[" + b"0," * (13 * 1024 * 1024) + b"0]"
        answer = await hooks.post(
            "/change_hook/github", data=io.BytesIO(huge), headers=_headers("push")
        )
        assert answer.status == 413
        # the master serves on
        assert await hooks.changes() == []
        assert (
            await hooks.post("/change_hook/github", p.gh_push(), headers=_headers("push"))
        ).text == ("3 change found")


async def test_a_commit_dated_past_2038_is_stamped_now_not_a_400(tmp_path: Path) -> None:
    """The database holds 32-bit epoch seconds; one commit dated outside them is stored with
    the time it arrives (and a warning naming the hook and the value), and the rest of the
    push as sent, rather than the whole push refused."""
    payload = p.gh_push()
    payload["commits"][1]["timestamp"] = "2040-01-01T00:00:00Z"
    async with hook_master(tmp_path, _dialects({})) as hooks:
        before = int(time.time())
        with capture_logs() as logs:
            answer = await hooks.post("/change_hook/github", payload, headers=_headers("push"))
        after = int(time.time()) + 1
        assert (answer.status, answer.text) == (200, "3 change found")
        changes = await hooks.changes()
    assert [c["revision"] for c in changes] == p.SHA[1:4]
    assert changes[0]["when_timestamp"] == 1714637460
    assert before <= changes[1]["when_timestamp"] <= after
    assert [(e["hook"], e["value"]) for e in logs if e["event"] == "change_time_out_of_range"] == [
        ("github", "2040-01-01T00:00:00Z")
    ]


async def test_payloads_of_the_wrong_shape_are_refused_by_name(tmp_path: Path) -> None:
    """A push whose commits, head commit or file lists have the wrong JSON type gets a 400
    naming the part, not a 500 with a traceback (nor a dict's keys taken as file names)."""
    commit = p.gh_commit(1, "Add the lamp driver")
    cases: list[tuple[dict[str, Any], str]] = [
        ({"commits": {"a": 1}}, "the payload's 'commits' is not a list of objects"),
        ({"commits": ["a"]}, "the payload's 'commits' is not a list of objects"),
        ({"head_commit": "x"}, "the payload's 'head_commit' is not an object"),
        (
            {"head_commit": {**commit, "message": 5}},
            "the payload's 'head_commit.message' is not a string",
        ),
        (
            {"commits": [{**commit, "added": {"x.c": 1}}]},
            "the payload's 'commits[0].added' is not a list of file names",
        ),
        (
            {"commits": [commit, {**commit, "modified": ["a.c", 5]}]},
            "the payload's 'commits[1].modified' is not a list of file names",
        ),
        # a value the dialect copies into the change as it comes: the sender's mistake too (a
        # user's own handler giving such a change stays a 500: test_dialects)
        (
            {"commits": [{**commit, "message": {"a": 1}}]},
            "the payload gave a bad change: its 'comments' is dict, not a string",
        ),
        (
            {"repository": {**p.GH_REPO, "html_url": ["u"]}},
            "the payload gave a bad change: its 'repository' is list, not a string",
        ),
    ]
    async with hook_master(tmp_path, _dialects({})) as hooks:
        with capture_logs() as logs:
            for change, message in cases:
                payload = {**p.gh_push(), **change}
                answer = await hooks.post("/change_hook/github", payload, headers=_headers("push"))
                assert (answer.status, answer.text) == (400, message)
        # nesting deeper than Python's parser can go
        deep = b"[" * 100_000 + b"]" * 100_000
        answer = await hooks.post("/change_hook/github", data=deep, headers=_headers("push", deep))
        assert (answer.status, answer.text) == (
            400,
            "the payload is not valid JSON: nested too deeply",
        )
        assert [e["event"] for e in logs if e["log_level"] == "error"] == []
        assert await hooks.changes() == []
        answer = await hooks.post("/change_hook/github", p.gh_push(), headers=_headers("push"))
        assert answer.text == "3 change found"


async def test_a_lone_surrogate_is_replaced_and_the_push_stored(tmp_path: Path) -> None:
    """JSON may escape half a UTF-16 pair (a sender cutting text mid-pair), which no database
    can store: it becomes U+FFFD, with a warning naming the hook and where, and the push is
    stored (Buildbot takes it) rather than refused. Deep but valid nesting in a field
    buildyard does not read is no error either."""
    payload = {**p.gh_push(), "deep": "DEEP"}
    surrogate = json.dumps(payload).replace("Add the lamp", "Add the \\ud800 lamp")
    surrogate = surrogate.replace('"deep": "DEEP"', '"d\\udc00eep": ' + "[" * 500 + "]" * 500)
    body = surrogate.encode()
    async with hook_master(tmp_path, _dialects({})) as hooks:
        with capture_logs() as logs:
            answer = await hooks.post(
                "/change_hook/github", data=body, headers=_headers("push", body)
            )
        assert (answer.status, answer.text) == (200, "3 change found")
        changes = await hooks.changes()
    assert changes[0]["comments"] == "Add the \ufffd lamp driver"
    [warning] = [e for e in logs if e["event"] == "change_hook_lone_surrogates_replaced"]
    assert (warning["log_level"], warning["hook"], sorted(warning["where"])) == (
        "warning",
        "github",
        ["<key>", "commits[0].message"],
    )


async def test_secret_and_token_from_the_secret_providers(
    tmp_path: Path, github_api: FakeGitHub
) -> None:
    secrets_dir = tmp_path / "secrets"
    secrets_dir.mkdir()
    for name, value in {"gh-hook": SECRET, "gh-token": "tok-from-file"}.items():
        (secrets_dir / name).write_text(value + "\n")
        (secrets_dir / name).chmod(0o600)
    body = (
        f"c['secretsProviders'] = [secrets.SecretInAFile({str(secrets_dir)!r})]\n"
        "c['www']['change_hook_dialects'] = {'github': {\n"
        "    'secret': util.Secret('gh-hook'), 'strict': True,\n"
        f"    'github_api_endpoint': {github_api.url!r},\n"
        "    'token': util.Interpolate('%(secret:gh-token)s-%(prop:full_name)s'),\n"
        "}}\n"
    )
    async with hook_master(tmp_path, body) as hooks:
        data = p.body(p.gh_pull_request())
        answer = await hooks.post(
            "/change_hook/github", data=data, headers=_headers("pull_request", data)
        )
        assert (answer.status, answer.text) == (200, "1 change found")
        wrong = {"X-Hub-Signature-256": p.sign(data, "gh-hook")}
        refused = await hooks.post(
            "/change_hook/github", data=data, headers=_headers("pull_request", extra=wrong)
        )
        assert (refused.status, refused.text) == (400, "Hash mismatch")
    # the token rendered with the repository's full name, as Buildbot renders it
    assert ("/repos/harbor/lighthouse/pulls/42/files", "token tok-from-file-harbor/lighthouse") in (
        github_api.requests
    )


async def test_secrets_of_hooks_and_pollers_are_hidden_in_the_master_log(
    tmp_path: Path, github_api: FakeGitHub
) -> None:
    secrets_dir = tmp_path / "secrets"
    secrets_dir.mkdir()
    git_pw = "git-Pw-7c1Zq"
    for name, value in {"gh-hook": SECRET, "git-pw": git_pw}.items():
        (secrets_dir / name).write_text(value + "\n")
        (secrets_dir / name).chmod(0o600)
    body = (
        f"c['secretsProviders'] = [secrets.SecretInAFile({str(secrets_dir)!r})]\n"
        "c['www']['change_hook_dialects'] = {'github': {\n"
        "    'secret': util.Secret('gh-hook'), 'strict': True,\n"
        f"    'github_api_endpoint': {github_api.url!r},\n"
        "}}\n"
        "c['change_source'] = [changes.GitPoller(\n"
        f"    repourl='http://127.0.0.1:9/nowhere.git', workdir={str(tmp_path / 'gp')!r},\n"
        "    auth_credentials=('alice', util.Secret('git-pw')), pollInterval=3600)]\n"
    )
    log = structlog.get_logger("test")
    with capture_logs(processors=[format_exc_info, redact_secrets]) as master_log:
        async with hook_master(tmp_path, body) as hooks:
            data = p.body(p.gh_pull_request())
            answer = await hooks.post(
                "/change_hook/github", data=data, headers=_headers("pull_request", data)
            )
            assert (answer.status, answer.text) == (200, "1 change found")
            [poller] = list[Any](hooks.master.change_svc)
            with contextlib.suppress(Exception):
                await poller.poll()
            # an error path that shows the values it was given (a user's hook, a poller's
            # failure quoting its command line)
            log.error("failed", reason=f"bad {SECRET}", command=["git", f"-p{git_pw}"])
    [failed] = [e for e in master_log if e["event"] == "failed"]
    assert failed["reason"] == "bad <gh-hook>"
    assert failed["command"] == ["git", "-p<git-pw>"]
    assert SECRET not in repr(master_log) and git_pw not in repr(master_log)
