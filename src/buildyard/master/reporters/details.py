"""A build's (or buildset's) details as the formatters see them, read through the data API.

The shapes are Buildbot's (``getDetailsForBuild``): the build dict of the data API with
``builder``, ``buildrequest``, ``buildset`` (with its ``sourcestamps``), ``parentbuild``,
``parentbuilder`` and ``url`` added, and on request ``properties`` (``{name: [value,
source]}``), ``steps`` (each with ``logs``, each log with ``stepname``, ``url``, ``url_raw``,
``url_raw_inline`` and, when asked, ``content``) and ``prev_build`` (the latest earlier build of
the builder that did not end RETRY).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from buildyard.master.data.errors import NotFound
from buildyard.master.data.resultspec import FieldFilter, ResultSpec
from buildyard.master.model.properties import Properties, RenderError
from buildyard.master.model.results import Results
from buildyard.master.reporters.service import DataReader, ReporterEnvironment
from buildyard.master.secrets.providers import lookup

Item = dict[str, Any]


async def get_item(data: DataReader, path: Sequence[object]) -> Item | None:
    try:
        found = await data.get(path)
    except NotFound:
        return None
    return found if isinstance(found, dict) else None


async def get_list(
    data: DataReader, path: Sequence[object], spec: ResultSpec | None = None
) -> list[Item]:
    try:
        found = await data.get(path, spec)
    except NotFound:
        return []
    return list(found) if isinstance(found, list) else []


def url_for_build(env: ReporterEnvironment, builderid: int, number: int) -> str:
    return f"{env.buildbot_url}#/builders/{builderid}/builds/{number}"


def url_for_buildrequest(env: ReporterEnvironment, brid: int) -> str:
    return f"{env.buildbot_url}#/buildrequests/{brid}"


def url_for_log(env: ReporterEnvironment, build: Item, step: Item, slug: str) -> str:
    return (
        f"{env.buildbot_url}#/builders/{build['builderid']}/builds/{build['number']}"
        f"/steps/{step['number']}/logs/{slug}"
    )


async def previous_build(env: ReporterEnvironment, build: Item) -> Item | None:
    """The builder's latest finished build before ``build`` that did not end RETRY (Buildbot
    also takes one still running)."""
    spec = ResultSpec(
        filters=(
            FieldFilter(field="number", op="lt", values=(build["number"],)),
            FieldFilter(field="results", op="ne", values=(int(Results.RETRY),)),
        ),
        order=("-number",),
        limit=1,
    )
    builds = await get_list(env.data, ("builders", build["builderid"], "builds"), spec)
    return builds[0] if builds else None


def _attach_log(logs_config: object, lg: Item) -> bool:
    if isinstance(logs_config, bool):
        return logs_config
    if not isinstance(logs_config, list | tuple | set):
        return False
    return lg["name"] in logs_config or f"{lg['stepname']}.{lg['name']}" in logs_config


async def log_text(data: DataReader, logid: int) -> str:
    chunks = await get_list(data, ("logs", logid, "contents"))
    return "".join(str(c.get("content", "")) for c in chunks)


async def details_for_builds(
    env: ReporterEnvironment,
    buildset: Item,
    builds: Sequence[Item],
    *,
    want_properties: bool = False,
    want_steps: bool = False,
    want_previous_build: bool = False,
    want_logs: bool = False,
    add_logs: object = None,
    want_logs_content: object = False,
) -> None:
    """Add the details to each build dict of ``builds`` (all of ``buildset``), in place."""
    logs_config = add_logs if add_logs is not None else want_logs_content
    want_logs = want_logs or logs_config not in (False, None)
    want_steps = want_steps or want_logs
    for build in builds:
        build["builder"] = await get_item(env.data, ("builders", build["builderid"])) or {
            "builderid": build["builderid"],
            "name": str(build["builderid"]),
            "tags": [],
        }
        build["buildset"] = buildset
        build["url"] = url_for_build(env, build["builderid"], build["number"])
        if want_properties:
            build["properties"] = (
                await get_item(env.data, ("builds", build["buildid"], "properties")) or {}
            )
        if want_steps:
            steps = await get_list(env.data, ("builds", build["buildid"], "steps"))
            if want_logs:
                for step in steps:
                    step["logs"] = await get_list(env.data, ("steps", step["stepid"], "logs"))
                    for lg in step["logs"]:
                        lg["stepname"] = step["name"]
                        lg["url"] = url_for_log(env, build, step, lg["slug"])
                        raw = f"{env.buildbot_url}api/v2/logs/{lg['logid']}"
                        lg["url_raw"], lg["url_raw_inline"] = f"{raw}/raw", f"{raw}/raw_inline"
                        if _attach_log(logs_config, lg):
                            lg["content"] = {"content": await log_text(env.data, lg["logid"])}
            build["steps"] = steps
        if want_previous_build:
            build["prev_build"] = await previous_build(env, build)


async def details_for_build(env: ReporterEnvironment, build: Item, **wants: Any) -> None:
    """Buildbot's ``getDetailsForBuild``: ``build`` (a data API build dict) with its request,
    buildset, parent build and the details ``wants`` asks for, in place."""
    request = await get_item(env.data, ("buildrequests", build["buildrequestid"])) or {}
    buildset = await get_item(env.data, ("buildsets", request.get("buildsetid", 0))) or {
        "sourcestamps": [],
        "parent_buildid": None,
    }
    build["buildrequest"] = request
    build["buildset"] = buildset
    parent = parent_builder = None
    if buildset.get("parent_buildid"):
        parent = await get_item(env.data, ("builds", buildset["parent_buildid"]))
        if parent is not None:
            parent_builder = await get_item(env.data, ("builders", parent["builderid"]))
    build["parentbuild"], build["parentbuilder"] = parent, parent_builder
    await details_for_builds(env, buildset, [build], **wants)


async def details_for_buildset(env: ReporterEnvironment, bsid: int, **wants: Any) -> Item:
    """``{"buildset": ..., "builds": [...]}``: the buildset and every build of its requests,
    with details."""
    buildset = await get_item(env.data, ("buildsets", bsid)) or {"bsid": bsid, "sourcestamps": []}
    requests = [
        r for r in await get_list(env.data, ("buildrequests",)) if r.get("buildsetid") == bsid
    ]
    builds: list[Item] = []
    for request in requests:
        builds += await get_list(env.data, ("buildrequests", request["buildrequestid"], "builds"))
    if builds:
        await details_for_builds(env, buildset, builds, **wants)
    return {"buildset": buildset, "builds": builds}


async def responsible_users_for_build(env: ReporterEnvironment, buildid: int) -> list[str]:
    """Authors of the build's changes, and its ``owner``/``owners`` properties, sorted."""
    users: set[str] = set()
    for change in await get_list(env.data, ("builds", buildid, "changes")):
        if change.get("author"):
            users.add(str(change["author"]))
    props = await get_item(env.data, ("builds", buildid, "properties")) or {}
    owner = props.get("owner", [None])[0]
    if isinstance(owner, str):
        users.add(owner)
    elif isinstance(owner, list):
        users.update(str(o) for o in owner)
    owners = props.get("owners", [None])[0]
    if isinstance(owners, list):
        users.update(str(o) for o in owners)
    return sorted(users)


class _ReportRenderContext:
    """What rendering a reporter's renderables offers: the build's source stamps and the
    master's secrets (there is no worker to ask)."""

    def __init__(self, env: ReporterEnvironment, stamps: Sequence[Mapping[str, Any]]) -> None:
        self._env = env
        self._stamps = list(stamps)

    def sourcestamp(self, codebase: str) -> Mapping[str, Any] | None:
        return next((s for s in self._stamps if (s.get("codebase") or "") == codebase), None)

    @property
    def worker_info(self) -> Mapping[str, Any]:
        return {}

    @property
    def buildbot_url(self) -> str:
        return self._env.buildbot_url

    async def secret(self, name: str) -> str | None:
        if self._env.secret is not None:
            return await self._env.secret(name)
        return await lookup(self._env.secrets_providers, name)


def render_context(
    env: ReporterEnvironment, stamps: Sequence[Mapping[str, Any]]
) -> _ReportRenderContext:
    return _ReportRenderContext(env, stamps)


def properties_of(env: ReporterEnvironment, build: Mapping[str, Any]) -> Properties:
    """The build dict's properties as :class:`Properties`, able to render ``secret:`` and
    ``src:`` (from its buildset's source stamps)."""
    props = Properties()
    for name, entry in (build.get("properties") or {}).items():
        value, source = (entry[0], entry[1]) if isinstance(entry, list | tuple) else (entry, "")
        props.set_property(name, value, source)
    stamps = (build.get("buildset") or {}).get("sourcestamps") or []
    props.build = _ReportRenderContext(env, stamps)
    return props


class _URLForBuild:
    """``util.URLForBuild``: the web UI's URL of the build being reported on."""

    def getRenderingFor(self, props: Properties) -> str:
        base = getattr(props.build, "buildbot_url", None)
        builderid, number = props.get_property("builderid"), props.get_property("buildnumber")
        if base is None or builderid is None or number is None:
            raise RenderError(
                "util.URLForBuild renders only in a reporter (for a build, with the master's "
                "buildbotURL); use it in a reporter's renderables"
            )
        return f"{base}#/builders/{builderid}/builds/{number}"

    def __repr__(self) -> str:
        return "URLForBuild"


URLForBuild = _URLForBuild()
