"""The other dialects, users' own handlers, change_hook_auth and the poller hook, against a
running master; and the configuration checks of change_hook_dialects."""

from __future__ import annotations

import base64
import json
from pathlib import Path

import aiohttp
import pytest
import structlog

from buildyard.common.errors import ConfigErrors
from buildyard.master.config.loader import load_master_config
from buildyard.testing.processes import eventually
from tests.master.changes.conftest import Upstream
from tests.master.changes.hooks import payloads as p
from tests.master.changes.hooks.conftest import CONFIG, hook_master


async def test_gitlab_push_and_merge_request_with_codebase_and_project(tmp_path: Path) -> None:
    body = "c['www']['change_hook_dialects'] = {'gitlab': {'secret': 'tok'}}\n"
    async with hook_master(tmp_path, body) as hooks:
        token = {"X-Gitlab-Token": "tok"}
        answer = await hooks.post(
            "/change_hook/gitlab?codebase=cb&project=tides", p.gl_push(), headers=token
        )
        assert (answer.status, answer.text) == (200, "2 change found")
        answer = await hooks.post("/change_hook/gitlab", p.gl_merge_request(), headers=token)
        assert (answer.status, answer.text) == (200, "1 change found")
        refused = await hooks.post(
            "/change_hook/gitlab", p.gl_push(), headers={"X-Gitlab-Token": "x"}
        )
        assert (refused.status, refused.text) == (400, "Invalid secret")
        changes = await hooks.changes()
    assert [(c["codebase"], c["project"], c["category"]) for c in changes] == [
        ("cb", "tides", "push"),
        ("cb", "tides", "push"),
        ("", "tidewatch", "merge_request"),
    ]
    mr = changes[2]
    assert mr["branch"] == "main"
    assert mr["revision"] == p.SHA[9]
    assert mr["comments"] == "MR#9: Neap tide warnings\n\nWarn a day ahead."
    assert mr["properties"]["source_repository"] == [
        "https://gitlab.example.com/ines/tidewatch.git",
        "Change",
    ]
    assert mr["properties"]["target_branch"] == ["main", "Change"]


async def test_base_dialect_takes_query_urlencoded_and_multipart_arguments(tmp_path: Path) -> None:
    body = "c['www']['change_hook_dialects'] = {'base': True}\n"
    async with hook_master(tmp_path, body) as hooks:
        # the query's escapes are undone once, as Twisted does: %2541 is "%41", not "A"
        assert (await hooks.post("/change_hook?author=a&revision=r%2541", data=b"")).text == (
            "1 change found"
        )
        form = aiohttp.FormData()
        form.add_field("who", "b")
        form.add_field("revision", "r2")
        form.add_field("files", json.dumps(["x.c"]))
        form.add_field("properties", json.dumps({"n": 1}))
        async with hooks.http.post(hooks.url + "/change_hook/base", data=form) as response:
            assert (response.status, await response.text()) == (200, "1 change found")
        form = aiohttp.FormData({"author": "c", "revision": "r3"})
        assert (
            await hooks.post("/change_hook/base", data={"author": "c", "revision": "r3"})
        ).status == 200
        missing = await hooks.post("/change_hook/base", data={"revision": "r4"})
        assert (missing.status, missing.text) == (
            400,
            "the base hook needs an 'author' (or 'who') argument",
        )
        bad = await hooks.post("/change_hook/base", data={"author": "d", "files": "[1"})
        assert bad.status == 400 and bad.text.startswith("the 'files' argument is not valid JSON")
        # a time the database cannot hold (its column is 32 bits on PostgreSQL) or no number
        # at all is the client's mistake, not a 500 with the database's traceback
        for when in ("1e300", "inf", "nan", "99999999999999999999", "-2147483649"):
            bad = await hooks.post("/change_hook/base", data={"author": "e", "when": when})
            assert (bad.status, bad.text) == (
                400,
                f"'when_timestamp' must be epoch seconds from -2147483648 to 2147483647,"
                f" not {when!r}",
            )
        changes = await hooks.changes()
    assert [(c["author"], c["revision"], c["files"]) for c in changes] == [
        ("a", "r%41", []),
        ("b", "r2", ["x.c"]),
        ("c", "r3", []),
    ]
    assert changes[1]["properties"] == {"n": [1, "Change"]}


CUSTOM = """
from buildbot.plugins import webhooks
from buildbot.www.hooks.github import GitHubEventHandler


class Seen(webhooks.base):
    def getChanges(self, request):
        args = request.args
        return ([{
            "author": request.getHeader(b"X-Who").decode(),
            "revision": args[b"rev"][0].decode(),
            "comments": request.content.read().decode(),
            "branch": request.method.decode(),
            "repository": request.uri.decode(),
            "project": self.options["project"],
        }], "git")


class Later(webhooks.base):
    async def getChanges(self, request):
        return ([{"author": "later", "revision": "r9", "properties": {"k": "v"}}], None)


class Releases(GitHubEventHandler):
    def handle_release(self, payload, event):
        return ([{"author": payload["sender"]["login"], "revision": payload["release"]["tag_name"],
                  "category": "release"}], "git")


c['www']['change_hook_dialects'] = {
    'seen': {'custom_class': Seen, 'project': 'mine'},
    'later': {'custom_class': Later},
    'github': {'class': Releases},
}
"""


async def test_users_handlers(tmp_path: Path) -> None:
    async with hook_master(tmp_path, CUSTOM) as hooks:
        answer = await hooks.post(
            "/change_hook/seen?rev=r1", data=b"hello", headers={"X-Who": "me"}
        )
        assert (answer.status, answer.text) == (200, "1 change found")
        assert (await hooks.post("/change_hook/later", data=b"")).text == "1 change found"
        release = {"action": "published", "release": {"tag_name": "v9"}, "sender": {"login": "rel"}}
        answer = await hooks.post(
            "/change_hook/github", release, headers={"X-GitHub-Event": "release"}
        )
        assert (answer.status, answer.text) == (200, "1 change found")
        # the default events still work in the subclass
        pushed = await hooks.post(
            "/change_hook/github", p.gh_push(), headers={"X-GitHub-Event": "push"}
        )
        assert pushed.text == "3 change found"
        changes = await hooks.changes()
    assert [
        (c["author"], c["revision"], c["comments"], c["branch"], c["project"]) for c in changes[:2]
    ] == [
        ("me", "r1", "hello", "POST", "mine"),
        ("later", "r9", "", None, ""),
    ]
    assert changes[0]["repository"] == "/change_hook/seen?rev=r1"
    assert changes[1]["properties"] == {"k": ["v", "Change"]}
    assert (changes[2]["revision"], changes[2]["category"]) == ("v9", "release")


AUTH = """
from twisted.cred import strcred
from twisted.cred.checkers import InMemoryUsernamePasswordDatabaseDontUse
c['www']['change_hook_dialects'] = {'base': True}
c['www']['change_hook_auth'] = [
    strcred.makeChecker("file:changehook.passwd"),
    InMemoryUsernamePasswordDatabaseDontUse(robot="beep"),
]
"""


def _basic(user: str, password: str) -> dict[str, str]:
    return {"Authorization": "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()}


async def test_change_hook_auth(tmp_path: Path) -> None:
    (tmp_path / "master").mkdir()
    (tmp_path / "master" / "changehook.passwd").write_text("# hooks\nhook:pass-1\n")
    body = AUTH
    async with hook_master(tmp_path, body, exist_ok=True) as hooks:
        url = "/change_hook/base?author=a&revision=r"
        refused = [
            await hooks.post(url, data=b""),
            await hooks.post(url, data=b"", headers=_basic("hook", "wrong")),
            await hooks.post(url, data=b"", headers={"Authorization": "Basic !!"}),
        ]
        assert [a.status for a in refused] == [401, 401, 401]
        assert await hooks.changes() == []
        assert (await hooks.post(url, data=b"", headers=_basic("hook", "pass-1"))).status == 200
        assert (await hooks.post(url, data=b"", headers=_basic("robot", "beep"))).status == 200
        async with hooks.http.post(hooks.url + url) as response:
            assert response.headers["WWW-Authenticate"] == 'Basic realm="Protected area"'
        assert len(await hooks.changes()) == 2


async def test_poller_hook_polls_named_change_sources(tmp_path: Path, upstream: Upstream) -> None:
    body = f"""
c['change_source'] = [
    changes.GitPoller({str(upstream.path)!r}, name='gp', branches=['main'], pollInterval=3600),
]
c['www']['change_hook_dialects'] = {{'poller': {{'allowed': ['gp']}}}}
"""
    upstream.commit("first")
    async with hook_master(tmp_path, body) as hooks:
        poller = hooks.master.change_svc.child("gp")

        def polled(times: int) -> bool:
            # counted when a poll starts; done once it no longer holds the poll lock
            lock = poller._poll_lock  # type: ignore[attr-defined]
            return bool(poller.statistics()["polls"] == times and not lock.locked())

        await eventually(lambda: getattr(poller, "active", False), within=60)
        answer = await hooks.post("/change_hook/poller?poller=gp", data=b"")
        assert (answer.status, answer.text) == (200, "no change found")
        await eventually(lambda: polled(1), within=60)
        assert await hooks.changes() == []  # a first poll only notes where the branch is
        revision = upstream.commit("second")
        assert (await hooks.post("/change_hook/poller", data=b"", method="GET")).status == 200
        await eventually(lambda: polled(2), within=60)
        assert [c["revision"] for c in await hooks.changes()] == [revision]
        unknown = await hooks.post("/change_hook/poller?poller=gp&poller=other", data=b"")
        assert (unknown.status, unknown.text) == (400, "Could not find pollers: other")


async def test_dialects_not_configured_are_refused(tmp_path: Path) -> None:
    async with hook_master(
        tmp_path, "c['www']['change_hook_dialects'] = {'base': True}\n"
    ) as hooks:
        answer = await hooks.post(
            "/change_hook/github", p.gh_push(), headers={"X-GitHub-Event": "push"}
        )
        assert (answer.status, answer.text) == (
            400,
            "The dialect specified, 'github', wasn't whitelisted in change_hook",
        )
        assert await hooks.changes() == []


@pytest.mark.parametrize(
    ("setting", "message"),
    [
        ("{'gitea': {}}", "buildyard has no change hook dialect 'gitea'"),
        ("{'githbu': {}}", "did you mean 'github'?"),
        ("{'github': {'secert': 'x'}}", "unknown option 'secert' (it takes: class, codebase,"),
        ("{'github': {'strict': True}}", "'strict' is requested while no 'secret' is provided"),
        ("{'github': {'class': 3}}", "['class'] must be a subclass of GitHubEventHandler"),
        ("{'base': {'custom_class': 'nope'}}", "must be a class with a getChanges method"),
        ("{'gitlab': 'yes'}", "must be True or a dictionary of options, not 'yes'"),
        ("['github']", "must be a dictionary of dialect names, not list"),
        ("{'poller': {'allowed': 'gp'}}", "['allowed'] must be a list of change source names"),
    ],
)
def test_config_errors(tmp_path: Path, setting: str, message: str) -> None:
    (tmp_path / "master.cfg").write_text(
        CONFIG.format(port=8010) + f"c['www']['change_hook_dialects'] = {setting}\n"
    )
    with pytest.raises(ConfigErrors) as raised:
        load_master_config(tmp_path)
    assert message in str(raised.value)


def test_change_hook_auth_config_errors(tmp_path: Path) -> None:
    (tmp_path / "master.cfg").write_text(
        CONFIG.format(port=8010)
        + "from twisted.cred import strcred\n"
        + "c['www']['change_hook_auth'] = [strcred.makeChecker('file:missing.passwd'), 'x']\n"
    )
    with pytest.raises(ConfigErrors) as raised:
        load_master_config(tmp_path)
    text = str(raised.value)
    assert "missing.passwd' is not a file" in text
    assert "c['www']['change_hook_auth'] contains 'x'" in text


BROKEN = """
class Broken(object):
    def __init__(self, master, options):
        pass

    def getChanges(self, request):
        if request.args.get(b"crash"):
            raise RuntimeError("boom")
        return ([{"who": "old-style key"}], None)


c['www']['change_hook_dialects'] = {'broken': {'custom_class': Broken}}
"""


async def test_a_failing_handler_is_a_500_and_stores_nothing(tmp_path: Path) -> None:
    async with hook_master(tmp_path, BROKEN) as hooks:
        with structlog.testing.capture_logs() as logs:
            bad_change = await hooks.post("/change_hook/broken", data=b"")
            crash = await hooks.post("/change_hook/broken?crash=1", data=b"")
        assert [(a.status, a.text) for a in (bad_change, crash)] == [
            (500, "Error processing changes."),
        ] * 2
        failures = [e for e in logs if e["event"] == "change_hook_failed"]
        assert [e["hook"] for e in failures] == ["broken", "broken"]
        assert "addChange does not take: who" in failures[0]["reason"]
        assert await hooks.changes() == []


async def test_reconfig_applies_new_dialects(tmp_path: Path) -> None:
    async with hook_master(
        tmp_path, "c['www']['change_hook_dialects'] = {'base': True}\n"
    ) as hooks:
        url = "/change_hook/gitorious"
        form = {"payload": json.dumps(p.gitorious_push())}
        assert (await hooks.post(url, data=form)).status == 400
        cfg = hooks.master.basedir / "master.cfg"
        cfg.write_text(cfg.read_text() + "c['www']['change_hook_dialects']['gitorious'] = True\n")
        assert await hooks.master.reconfig()
        answer = await hooks.post(url, data=form)
        assert (answer.status, answer.text) == (200, "2 change found")
        # a bad new value leaves the running hooks as they were
        cfg.write_text(cfg.read_text() + "c['www']['change_hook_dialects']['gitea'] = True\n")
        assert not await hooks.master.reconfig()
        assert (await hooks.post(url, data=form)).status == 200


def test_dialects_without_a_web_port_are_warned_about(tmp_path: Path) -> None:
    config = CONFIG.format(port=8010)
    with_port = "c['www'] = {'port': 'tcp:8010:interface=127.0.0.1'}"
    assert with_port in config
    (tmp_path / "master.cfg").write_text(
        config.replace(with_port, "c['www'] = {}")
        + "c['www']['change_hook_dialects'] = {'github': {}}\n"
    )
    loaded = load_master_config(tmp_path)
    assert any("no change hook can be reached" in w for w in loaded.warnings)


def test_a_dialect_set_to_false_is_served_with_a_warning(tmp_path: Path) -> None:
    (tmp_path / "master.cfg").write_text(
        CONFIG.format(port=8010) + "c['www']['change_hook_dialects'] = {'base': False}\n"
    )
    loaded = load_master_config(tmp_path)
    assert any(
        "['base'] is False, which does not turn the dialect off" in w for w in loaded.warnings
    )
