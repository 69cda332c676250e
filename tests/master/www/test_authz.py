"""Web authorization (c['www']['authz']) on a real master over HTTP: each control action is
refused with a 403 for a logged-in user without the role, changing nothing, and done for a user
with it; the owner of a forced build may stop it and another user may not; builder= filters;
reads under an AnyEndpointMatcher; the configuration errors of Authz and its matchers."""

from __future__ import annotations

import base64
import dataclasses
import json
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import pytest_asyncio

from buildyard.common.errors import ConfigErrors
from buildyard.master.config.loader import load_master_config
from buildyard.master.model.buildrequests import BuildRequest
from buildyard.master.model.results import Results
from buildyard.master.model.sourcestamps import SourceStampSpec
from buildyard.master.www.auth import COOKIE
from buildyard.testing.masters import Running, running_master
from buildyard.testing.postgres import free_port
from buildyard.testing.processes import eventually

MODULE = pytest.mark.asyncio(loop_scope="module")

USERS = ("admin", "dev", "alice", "bob", "ops")
BODY = """
c['workers'].append(worker.Worker("w2", "pw"))  # never connects: its requests wait
c['builders'] = [
    util.BuilderConfig(name="slow", workernames=["w1"], factory=util.BuildFactory([
        steps.ShellCommand(name="sleep", command="sleep 60"),
    ])),
    util.BuilderConfig(name="quick", workernames=["w1"], factory=util.BuildFactory([
        steps.ShellCommand(name="hi", command="echo hi"),
    ])),
    util.BuilderConfig(name="nowhere", workernames=["w2"], factory=util.BuildFactory()),
]
c['schedulers'] = [
    schedulers.ForceScheduler(name="force", builderNames=["slow", "quick"]),
    schedulers.SingleBranchScheduler(name="on", branch="main", builderNames=["quick"]),
]
c['collapseRequests'] = False
c['www'] = {{
    'port': {port},
    'auth': util.UserPasswordAuth({{u: u + "-pw" for u in {users!r}}}),
    'authz': util.Authz(
        allowRules=[
            util.AnyEndpointMatcher(role="admins", defaultDeny=False),
            util.StopBuildEndpointMatcher(role="owner"),
            util.ForceBuildEndpointMatcher(builder="sl*", role="forcers"),
            util.RebuildBuildEndpointMatcher(builder="quick", role="ops"),
            util.EnableSchedulerEndpointMatcher(role="ops"),
            util.AnyControlEndpointMatcher(role="admins"),
        ],
        roleMatchers=[
            util.RolesFromUsername(roles=["admins"], usernames=["admin"]),
            util.RolesFromUsername(roles=["forcers"], usernames=["alice", "bob"]),
            util.RolesFromEmails(ops=["ops"]),  # a password login's email is its username
            util.RolesFromOwner(role="owner"),
        ],
    ),
}}
"""


@dataclasses.dataclass
class Site:
    running: Running
    http: aiohttp.ClientSession
    base: str
    tokens: dict[str, str]
    # what the last action's effect needs to be seen (a stopped build to end)
    settle: Callable[[], Awaitable[None]] | None = None

    async def call(
        self, user: str | None, path: str, method: str, **params: Any
    ) -> tuple[int, dict[str, Any]]:
        body = {"jsonrpc": "2.0", "method": method, "id": 1, "params": params}
        headers = {"Cookie": f"{COOKIE}={self.tokens[user]}"} if user else {}
        async with self.http.post(f"{self.base}/api/v2/{path}", json=body, headers=headers) as r:
            return r.status, json.loads(await r.text())

    async def refused(self, user: str | None, path: str, method: str, **params: Any) -> str:
        status, reply = await self.call(user, path, method, **params)
        assert status == 403, reply
        assert "result" not in reply and reply["error"]["code"] == -32600
        message = str(reply["error"]["message"])
        assert method in message, message
        return message

    async def ok(self, user: str, path: str, method: str, **params: Any) -> Any:
        status, reply = await self.call(user, path, method, **params)
        assert status == 200, reply
        return reply["result"]


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def site(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Site]:
    port = free_port()
    body = BODY.format(port=port, users=USERS)
    tmp = tmp_path_factory.mktemp("authz")
    async with running_master(tmp, body) as running, aiohttp.ClientSession() as http:
        base = f"http://127.0.0.1:{port}"
        tokens = {}
        for user in USERS:
            basic = base64.b64encode(f"{user}:{user}-pw".encode()).decode()
            async with http.get(
                f"{base}/auth/login",
                headers={"Authorization": f"Basic {basic}"},
                allow_redirects=False,
            ) as resp:
                assert resp.status == 302
                tokens[user] = resp.cookies[COOKIE].value
        yield Site(running, http, base, tokens)


# -- helpers -------------------------------------------------------------------------------------


async def _request(running: Running, builder: str) -> int:
    updates = running.master.data.updates
    builderid = await updates.find_builder_id(builder)
    stamp: SourceStampSpec = {
        "branch": None,
        "revision": None,
        "repository": "",
        "project": "",
        "codebase": "",
    }
    ids = await updates.add_buildset(
        scheduler="test", sourcestamps=[stamp], reason="test", properties={}, builderids=[builderid]
    )
    return ids.brids[builderid]


async def _request_of(running: Running, brid: int) -> BuildRequest:
    request = await running.master.db.buildrequests.get_buildrequest(brid)
    assert request is not None
    return request


async def _finished(running: Running, buildid: int) -> None:
    db = running.master.db

    async def done() -> bool:
        build = await db.builds.get_build(buildid)
        return build is not None and build.complete_at is not None

    await eventually(done, within=60)


async def _buildsets(running: Running) -> int:
    return len(await running.master.db.buildsets.get_buildsets())


async def _worker(running: Running) -> tuple[bool, bool]:
    """(paused, graceful) of worker w2."""
    db = running.master.db
    workerid = await db.workers.find_worker_id("w2")
    worker = await db.workers.get_worker(workerid)
    assert worker is not None
    return worker.paused, worker.graceful


async def _set_worker(running: Running, *, paused: bool, graceful: bool = False) -> None:
    workerid = await running.master.db.workers.find_worker_id("w2")
    await running.master.data.updates.set_worker_state(
        workerid=workerid, paused=paused, graceful=graceful, pause_reason=None
    )


async def _scheduler(site: Site) -> tuple[int, bool]:
    async with site.http.get(
        f"{site.base}/api/v2/schedulers?name=on",
        headers={"Cookie": f"{COOKIE}={site.tokens['admin']}"},
    ) as resp:
        [found] = json.loads(await resp.text())["schedulers"]
    return found["schedulerid"], found["enabled"]


# -- each control action -------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class Case:
    """An action: ``prepare`` returns (path, params) and a way to read the state it changes;
    ``before`` is that state before the action, ``after`` once it is done."""

    method: str
    allowed_user: str
    prepare: Callable[[Site], Awaitable[tuple[str, dict[str, Any], Callable[[], Awaitable[Any]]]]]
    before: Any
    after: Any


async def _force(site: Site) -> tuple[str, dict[str, Any], Callable[[], Awaitable[Any]]]:
    async def count() -> int:
        return await _buildsets(site.running)

    start = await count()
    return "forceschedulers/force", {"builderNames": ["quick"]}, lambda: _delta(count, start)


async def _delta(count: Callable[[], Awaitable[int]], start: int) -> int:
    return await count() - start


async def _stop(site: Site) -> tuple[str, dict[str, Any], Callable[[], Awaitable[Any]]]:
    running = site.running
    buildid = await running.started_build(await _request(running, "slow"))

    async def state() -> Any:
        build = await running.master.db.builds.get_build(buildid)
        assert build is not None
        if build.complete_at is None:
            return "running"
        # which stop ended it: the refused one would have left its reason
        assert build.results is not None
        return build.results.name, "allowed" in build.state_string

    site.settle = lambda: _finished(running, buildid)
    return f"builds/{buildid}", {"reason": "allowed"}, state


async def _rebuild(site: Site) -> tuple[str, dict[str, Any], Callable[[], Awaitable[Any]]]:
    result = await site.running.build("quick")

    async def rebuilt() -> int:
        sets = await site.running.master.db.buildsets.get_buildsets()
        return sum(1 for bs in sets if bs.rebuilt_buildid == result.build.id)

    return f"builds/{result.build.id}", {}, rebuilt


async def _cancel(site: Site) -> tuple[str, dict[str, Any], Callable[[], Awaitable[Any]]]:
    brid = await _request(site.running, "nowhere")

    async def state() -> tuple[bool, int | None]:
        request = await _request_of(site.running, brid)
        return request.complete, request.results

    return f"buildrequests/{brid}", {"reason": "no"}, state


async def _priority(site: Site) -> tuple[str, dict[str, Any], Callable[[], Awaitable[Any]]]:
    brid = await _request(site.running, "nowhere")

    async def priority() -> int:
        return (await _request_of(site.running, brid)).priority

    return f"buildrequests/{brid}", {"priority": 7}, priority


def _worker_case(paused: bool) -> Callable[[Site], Awaitable[Any]]:
    async def prepare(site: Site) -> tuple[str, dict[str, Any], Callable[[], Awaitable[Any]]]:
        await _set_worker(site.running, paused=paused)
        return "workers/w2", {}, lambda: _worker(site.running)

    return prepare


def _scheduler_case(enabled: bool) -> Callable[[Site], Awaitable[Any]]:
    async def prepare(site: Site) -> tuple[str, dict[str, Any], Callable[[], Awaitable[Any]]]:
        schedulerid, _ = await _scheduler(site)
        await site.running.master.data.updates.set_scheduler_enabled(schedulerid, enabled)

        async def state() -> bool:
            return (await _scheduler(site))[1]

        return f"schedulers/{schedulerid}", {"enabled": not enabled}, state

    return prepare


CASES = {
    "force": Case("force", "admin", _force, 0, 1),
    "stop": Case("stop", "admin", _stop, "running", ("CANCELLED", True)),
    "rebuild": Case("rebuild", "ops", _rebuild, 0, 1),
    "cancel": Case("cancel", "admin", _cancel, (False, None), (True, int(Results.CANCELLED))),
    "set_priority": Case("set_priority", "admin", _priority, 0, 7),
    "pause": Case("pause", "admin", _worker_case(False), (False, False), (True, False)),
    "unpause": Case("unpause", "admin", _worker_case(True), (True, False), (False, False)),
    "graceful": Case("stop", "admin", _worker_case(False), (False, False), (False, True)),
    "disable": Case("enable", "ops", _scheduler_case(True), True, False),
    "enable": Case("enable", "ops", _scheduler_case(False), False, True),
}


@MODULE
@pytest.mark.parametrize("name", list(CASES))
async def test_an_action_needs_its_role(site: Site, name: str) -> None:
    case = CASES[name]
    path, params, state = await case.prepare(site)
    assert await state() == case.before
    refused = {**params, "reason": "refused"} if "reason" in params else params
    # a logged-in user without the role, and an anonymous one: refused, and nothing changed
    message = await site.refused("dev", path, case.method, **refused)
    assert "you need to have role '" in message
    await site.refused(None, path, case.method, **refused)
    assert await state() == case.before
    # the user with the role: done
    await site.ok(case.allowed_user, path, case.method, **params)
    if site.settle is not None:
        await site.settle()
        site.settle = None
    assert await state() == case.after


@MODULE
async def test_the_owner_of_a_forced_build_may_stop_it(site: Site) -> None:
    bsid, brids = await site.ok("alice", "forceschedulers/force", "force", builderNames=["slow"])
    props = await site.running.master.db.buildsets.get_buildset_properties(bsid)
    assert props["owner"][0] == "alice"
    [brid] = brids.values()
    buildid = await site.running.started_build(brid)

    message = await site.refused("bob", f"builds/{buildid}", "stop", reason="bob's")
    assert "'owner'" in message  # the role StopBuildEndpointMatcher asks for
    build = await site.running.master.db.builds.get_build(buildid)
    assert build is not None and build.complete_at is None
    await site.ok("alice", f"builds/{buildid}", "stop", reason="alice's")
    await _finished(site.running, buildid)
    build = await site.running.master.db.builds.get_build(buildid)
    assert build is not None and build.results == Results.CANCELLED
    assert "alice's" in build.state_string and "bob's" not in build.state_string


@MODULE
async def test_the_owner_of_a_waiting_request_may_cancel_it(site: Site) -> None:
    # alice may not force "nowhere" (not a force scheduler's builder), so her request is
    # made as the force form would make it: with her as owner
    updates = site.running.master.data.updates
    builderid = await updates.find_builder_id("nowhere")
    stamp: SourceStampSpec = {
        "branch": None,
        "revision": None,
        "repository": "",
        "project": "",
        "codebase": "",
    }
    ids = await updates.add_buildset(
        scheduler="force",
        sourcestamps=[stamp],
        reason="mine",
        properties={"owner": ("alice", "Force Build Form")},
        builderids=[builderid],
    )
    brid = ids.brids[builderid]
    await site.refused("bob", f"buildrequests/{brid}", "cancel")
    assert (await _request_of(site.running, brid)).complete is False
    await site.ok("alice", f"buildrequests/{brid}", "cancel")
    assert (await _request_of(site.running, brid)).results == Results.CANCELLED


@MODULE
async def test_force_builder_filter(site: Site) -> None:
    before = await _buildsets(site.running)
    # alice is a forcer of "sl*" builders only: "quick" falls through to AnyControl (admins)
    message = await site.refused("alice", "forceschedulers/force", "force", builderNames=["quick"])
    assert "'admins'" in message
    assert await _buildsets(site.running) == before
    # forced through the builder's id, as the UI does, the filter sees the same builder
    quick = await site.running.master.data.updates.find_builder_id("quick")
    await site.refused("alice", "forceschedulers/force", "force", builderid=quick)
    assert await _buildsets(site.running) == before
    # builder names of another shape are refused before the check, which could read them
    # otherwise than the scheduler does ({"quick": 1} named "quick" to one, everything to the
    # other)
    slow = await site.running.master.data.updates.find_builder_id("slow")
    for odd in (
        {"builderNames": {"quick": 1}},
        {"builderNames": {"quick": 1}, "builderid": slow},
        {"builderNames": "quick"},
        {"builderNames": ["quick", 1]},
        {"builderid": "quick"},
        {"builderid": True},
    ):
        status, reply = await site.call("alice", "forceschedulers/force", "force", **odd)
        assert (status, reply["error"]["code"]) == (400, -32602), (odd, reply)
    assert await _buildsets(site.running) == before
    # ops may rebuild "quick" builds, not "slow" ones (RebuildBuildEndpointMatcher's builder)
    brid = await _request(site.running, "slow")
    buildid = await site.running.started_build(brid)
    await site.refused("ops", f"builds/{buildid}", "rebuild")
    assert await _buildsets(site.running) == before + 1
    await site.ok("admin", f"builds/{buildid}", "stop")
    await _finished(site.running, buildid)


@MODULE
async def test_reads_are_open_without_a_read_rule(site: Site) -> None:
    async with site.http.get(f"{site.base}/api/v2/builders") as resp:
        assert resp.status == 200


async def test_reads_under_any_endpoint_matcher(tmp_path: Path) -> None:
    """``AnyEndpointMatcher`` covers reads too (Buildbot checks them as the action "get")."""
    port = free_port()
    body = f"""
c['builders'] = [util.BuilderConfig(name="b", workernames=["w1"], factory=util.BuildFactory())]
c['www'] = {{
    'port': {port},
    'auth': util.UserPasswordAuth([("root", "r"), ("guest", "g")]),
    'authz': util.Authz(
        allowRules=[util.AnyEndpointMatcher(role="a*")],
        roleMatchers=[util.RolesFromUsername(roles=["admins"], usernames=["root"])],
    ),
}}
"""
    async with running_master(tmp_path, body), aiohttp.ClientSession() as http:
        base = f"http://127.0.0.1:{port}"

        async def token(user: str, password: str) -> str:
            basic = base64.b64encode(f"{user}:{password}".encode()).decode()
            async with http.get(
                f"{base}/auth/login",
                headers={"Authorization": f"Basic {basic}"},
                allow_redirects=False,
            ) as resp:
                return resp.cookies[COOKIE].value

        async def read(path: str, user_token: str | None) -> tuple[int, Any]:
            headers = {"Cookie": f"{COOKIE}={user_token}"} if user_token else {}
            async with http.get(f"{base}/api/v2/{path}", headers=headers) as resp:
                return resp.status, json.loads(await resp.text())

        guest, root = await token("guest", "g"), await token("root", "r")
        for user_token in (None, guest):
            status, body_ = await read("builders", user_token)
            assert status == 403
            assert body_ == {"error": "you need to have role 'a*' to get builders"}
            assert (await read("nothing/here", user_token))[0] == 403
        status, found = await read("builders", root)
        assert status == 200 and [b["name"] for b in found["builders"]] == ["b"]
        assert (await read("nothing/here", root))[0] == 404


# -- configuration errors ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("authz", "message"),
    [
        ("util.Authz(allowRules=[util.AnyEndpointMatcher(rol='x')])", "unknown argument 'rol'"),
        ("util.Authz(allowRules=[util.AnyEndpointMatcher(rol='x')])", "did you mean 'role'?"),
        ("util.Authz(allowRules=[util.AnyEndpointMatcher()])", "role must be a string"),
        ("util.Authz(allowRules=[util.AnyEndpointMatcher(role=['a'])])", "role must be a string"),
        (
            "util.Authz(allowRules=[util.StopBuildEndpointMatcher(role='a', builder=3)])",
            "builder must be a string",
        ),
        (
            "util.Authz(allowRules=[util.AnyEndpointMatcher(role='a', defaultDeny='no')])",
            "defaultDeny must be True or False",
        ),
        ("util.Authz(allowRules=util.AnyEndpointMatcher(role='a'))", "allowRules must be a list"),
        ("util.Authz(allowRules=['admins'])", "allowRules must hold endpoint matchers"),
        ("util.Authz(roleMatchers=[util.AnyEndpointMatcher(role='a')])", "must hold role"),
        ("util.Authz(roleMatchers=[util.RolesFromEmails(admins='a@b')])", "list of strings"),
        (
            "util.Authz(roleMatchers=[util.RolesFromUsername(roles=['a'], usernames={'u': 1})])",
            "usernames must be a list of strings",
        ),
        (
            "util.Authz(roleMatchers=[util.RolesFromUsername(roles=['a'], usernames=[None])])",
            "usernames cannot be None",
        ),
        ("util.Authz(roleMatchers=[util.RolesFromGroups(prefix='x')])", "unknown argument"),
        ("util.Authz(stringsMatcher='fnmatch')", "stringsMatcher must be a function"),
        ("util.Authz(rules=[])", "Authz: unknown argument 'rules'"),
        ("[util.AnyEndpointMatcher(role='a')]", "c['www']['authz'] must be a util.Authz"),
    ],
)
def test_authz_config_errors(tmp_path: Path, authz: str, message: str) -> None:
    (tmp_path / "master.cfg").write_text(
        "from buildyard.plugins import *\n"
        "c = BuildmasterConfig = {}\n"
        "c['workers'] = [worker.Worker('w1', 'pw')]\n"
        "c['protocols'] = {'msgpack_experimental_v7': {'port': 0}}\n"
        "c['builders'] = [util.BuilderConfig(name='b', workernames=['w1'], "
        "factory=util.BuildFactory())]\n"
        f"c['www'] = {{'port': 0, 'authz': {authz}}}\n"
    )
    with pytest.raises(ConfigErrors) as caught:
        load_master_config(tmp_path)
    assert any(message in e.message for e in caught.value.errors), caught.value.errors
    assert all(e.location is not None for e in caught.value.errors)


def test_buildbot_names_and_import_paths(tmp_path: Path) -> None:
    (tmp_path / "master.cfg").write_text(
        "from buildbot.plugins import util as bb\n"
        "from buildbot.www.authz import Authz\n"
        "from buildbot.www.authz.roles import RolesFromOwner\n"
        "from buildbot.www.authz.endpointmatchers import ViewBuildsEndpointMatcher\n"
        "from buildyard.plugins import *\n"
        "c = BuildmasterConfig = {}\n"
        "c['workers'] = [worker.Worker('w1', 'pw')]\n"
        "c['protocols'] = {'msgpack_experimental_v7': {'port': 0}}\n"
        "c['builders'] = [util.BuilderConfig(name='b', workernames=['w1'], "
        "factory=util.BuildFactory())]\n"
        "c['www'] = {'port': 0, 'authz': Authz(\n"
        "    stringsMatcher=bb.reStrMatcher,\n"
        "    allowRules=[ViewBuildsEndpointMatcher(branch='x', role='r'),\n"
        "                bb.BranchEndpointMatcher(branch='x', role='r')],\n"
        "    roleMatchers=[RolesFromOwner(role='owner'), bb.RolesFromDomain(d=['x.org'])])}\n"
    )
    authz = load_master_config(tmp_path).www["authz"]
    assert type(authz).__name__ == "Authz"
    assert [type(r).__name__ for r in authz.allowRules] == [  # type: ignore[attr-defined]
        "ViewBuildsEndpointMatcher",
        "BranchEndpointMatcher",
    ]


def test_role_matchers_read_what_authentication_said_of_the_user() -> None:
    from buildyard.master.www import authz

    groups = authz.RolesFromGroups(groupPrefix="bb-")
    assert groups.roles({"groups": ["bb-admins", "users", "bb-ops", 3]}) == ["admins", "ops"]
    assert groups.roles({"groups": "bb-admins"}) == []  # not a list: no group
    assert groups.roles({"username": "x"}) == []
    emails = authz.RolesFromEmails(admins=["a@x.org"], ops=["a@x.org", "b@y.org"])
    assert emails.roles({"email": "a@x.org"}) == ["admins", "ops"]
    assert emails.roles({"email": "c@x.org"}) == []
    domain = authz.RolesFromDomain(devs=["x.org"])
    assert domain.roles({"email": "c@x.org"}) == ["devs"]
    assert domain.roles({"email": "c@y.org"}) == []
    names = authz.RolesFromUsername(roles=["admins"], usernames=["alice"])
    assert names.roles({"username": "alice"}) == ["admins"]
    assert names.roles({"username": "bob"}) == []
    # any collection of names, as Buildbot only asks whether a name is in it: a real
    # master.cfg passes the keys of its users dict
    from_keys = authz.RolesFromUsername(roles=["admins"], usernames={"alice": "pw"}.keys())
    assert from_keys.roles({"username": "alice"}) == ["admins"]
    owner = authz.RolesFromOwner(role="owner")
    assert owner.owner_roles({"email": "a@x.org"}, "a@x.org") == ["owner"]
    assert owner.owner_roles({"email": "a@x.org"}, "b@x.org") == []
