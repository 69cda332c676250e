"""The OpenAPI description fuzzed with schemathesis against a running master over HTTP.

A master with a real worker runs a few builds (a failing one, one with a patch, one from a
change) in a thread of its own, listening on 127.0.0.1; schemathesis then generates requests for
every operation /api/v2/openapi.json describes and checks each reply: no 5xx, the status is one
the operation documents, and the body matches its schema. Each GET runs with generated path
parameters (which mostly name nothing: 404s), then with ones naming real entities (so the query
arguments are fuzzed over real data), then with bad query arguments (400s, never a 5xx). POSTs
(control actions) on real entities get bad bodies, which must never give a 5xx, then good ones.
It runs on SQLite and on PostgreSQL. Hypothesis is derandomized and examples per operation are
few, so a run is repeatable and takes well under a minute.
"""

from __future__ import annotations

import asyncio
import json
import re
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import hypothesis
import pytest
import requests
import schemathesis
from hypothesis import HealthCheck, Phase
from schemathesis.checks import not_a_server_error
from schemathesis.core.result import Err, Ok
from schemathesis.specs.openapi.checks import (
    response_schema_conformance,
    status_code_conformance,
)

from buildyard.master.model.sourcestamps import SourceStampSpec
from buildyard.testing.masters import running_master
from buildyard.testing.postgres import free_port
from buildyard.testing.processes import eventually

pytestmark = [
    pytest.mark.e2e,
    # schemathesis 4's body strategies draw from ``random`` (its concern, not the server's)
    pytest.mark.filterwarnings("ignore:Do not use the `random` module inside strategies"),
]

BODY = """\
c['www'] = {{'port': 'tcp:{www}:interface=127.0.0.1'}}
fail = util.BuildFactory([
    steps.ShellCommand(name="say", command="echo hello; echo oops >&2"),
    steps.ShellCommand(name="fail", command="exit 2"),
])
ok = util.BuildFactory([steps.ShellCommand(name="pwd", command="pwd")])
c['builders'] = [
    util.BuilderConfig(name="b", workernames=["w1"], factory=fail),
    util.BuilderConfig(name="ok", workernames=["w1"], factory=ok),
]
c['schedulers'] = [
    schedulers.ForceScheduler(name="force", builderNames=["b", "ok"]),
    schedulers.SingleBranchScheduler(name="main", builderNames=["ok"],
                                     change_filter=util.ChangeFilter(branch="main")),
]
"""
# examples per operation: few (there are about a hundred GET operations, and drawing examples
# of their schemas costs more than answering them: the suite's longest test on two cores)
GET_EXAMPLES = 6
BAD_EXAMPLES = 2
POST_EXAMPLES = 5
# a change with a patch (its bytes go out as null)
PATCHED: SourceStampSpec = {
    "branch": "main",
    "revision": "abc123",
    "repository": "repo",
    "project": "p",
    "codebase": "",
    "patch_body": b"--- a\n+++ b\n",
    "patch_level": 1,
    "patch_author": "me",
    "patch_comment": "a patch",
}
CHECKS: list[schemathesis.CheckFunction] = [
    not_a_server_error,
    status_code_conformance,
    response_schema_conformance,
]


@schemathesis.deserializer("text/plain")
def _text(ctx: schemathesis.DeserializationContext, response: schemathesis.Response) -> Any:
    # the REST API sends JSON as text/plain to clients that do not accept application/json
    # (and its errors always), as Buildbot does; raw log downloads are text
    if ctx.operation.path.endswith(("/raw", "/raw_inline")) and response.status_code == 200:
        return response.text
    return json.loads(response.text)


@schemathesis.deserializer("application/octet-stream")
def _bytes(ctx: schemathesis.DeserializationContext, response: schemathesis.Response) -> Any:
    # a build's data value: bytes, described as a binary string
    return response.content.decode("latin-1")


def _serve(
    tmp_path: Path, db_url: str, www: int, ready: threading.Event, stop: threading.Event
) -> None:
    """Run a master with a few builds' data until ``stop`` is set (in a thread of its own)."""

    async def main() -> None:
        async with running_master(tmp_path, BODY.format(www=www), db_url=db_url) as running:
            db = running.master.db
            await running.build("b", properties={"colour": "red", "n": 3})
            await running.build("ok", sourcestamps=[PATCHED])
            await running.master.data.updates.add_change(
                author="someone <s@example.org>",
                files=["a.py"],
                comments="a change",
                revision="def456",
                branch="main",
                repository="repo",
                properties={"who": ("me", "Change")},
            )

            async def change_built() -> bool:  # by the SingleBranchScheduler
                builds = await db.builds.get_builds()
                return len(builds) == 3 and all(b.complete_at is not None for b in builds)

            await eventually(change_built, within=60)
            # a build's data and a step's test results (what custom steps record), and a
            # project; the data is named as the force scheduler, the one ``name`` parameter
            updates = running.master.data.updates
            [first, *_] = await db.builds.get_builds()
            [step, *_] = await db.steps.get_steps(buildid=first.id)
            await updates.set_build_data(first.id, "force", b"\x00\xffbytes", "fuzz")
            setid = await updates.add_test_result_set(
                builderid=first.builderid,
                buildid=first.id,
                stepid=step.id,
                description="unit",
                category="pass_fail",
                value_unit="boolean",
            )
            await updates.add_test_results(
                first.builderid,
                setid,
                [
                    {"test_name": "t1", "line": 3, "value": "1"},
                    {"test_code_path": "a.py", "value": "0"},
                ],
            )
            await updates.complete_test_result_set(setid, tests_passed=1, tests_failed=1)
            project = await db.projects.find_project_id("proj")
            await db.builders.update_builder_info(
                first.builderid,
                description="d",
                description_format=None,
                description_html=None,
                projectid=project,
                tags=["t1", "t2"],
            )
            # a codebase of the project: a commit at the patched build's revision, a child of
            # it and a branch on each
            codebaseid = await updates.find_codebase_id(projectid=project, name="cb")
            assert codebaseid is not None
            parent = None
            for n, revision in enumerate(("abc123", "abc124")):
                parent = await updates.add_commit(
                    codebaseid=codebaseid,
                    author="me",
                    committer="you" if n else None,
                    comments=f"commit {n}",
                    when_timestamp=100 + n,
                    revision=revision,
                    parent_commitid=parent,
                )
                branch = "main" if n else "old"
                await updates.update_branch(
                    codebaseid=codebaseid, name=branch, commitid=parent, last_timestamp=100 + n
                )
            ready.set()
            await asyncio.to_thread(stop.wait)

    asyncio.run(main())


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
def api(tmp_path_factory: pytest.TempPathFactory, request: pytest.FixtureRequest) -> Iterator[str]:
    """The base URL (``http://127.0.0.1:PORT/api/v2``) of a master with data to read, on
    each backend (PostgreSQL's stricter types and text found bugs SQLite hides)."""
    db_url = "sqlite:///state.sqlite"
    if request.param == "postgresql":
        db_url = request.getfixturevalue("postgres_server").create_database()
    www = free_port()
    ready, stop = threading.Event(), threading.Event()
    failure: list[BaseException] = []

    def run() -> None:
        try:
            _serve(tmp_path_factory.mktemp("fuzz"), db_url, www, ready, stop)
        except BaseException as exc:
            failure.append(exc)
            ready.set()

    thread = threading.Thread(target=run, name="fuzzed-master")
    thread.start()
    try:
        assert ready.wait(180), "the master did not come up"
        if failure:
            raise failure[0]
        yield f"http://127.0.0.1:{www}/api/v2"
    finally:
        stop.set()
        thread.join(60)
    if failure:
        raise failure[0]


def _known(api: str) -> dict[str, Any]:
    """Path parameter values that name real entities, by parameter name."""

    def first(path: str) -> dict[str, Any]:
        body = requests.get(f"{api}/{path}", timeout=10).json()
        [plural] = [k for k in body if k != "meta"]
        return dict(body[plural][0]) if body[plural] else {}

    build = first("builds?order=buildid&limit=1")
    step = first(f"builds/{build['buildid']}/steps?order=number&limit=1")
    log = first(f"steps/{step['stepid']}/logs?limit=1")
    worker = first("workers")
    builder = first(f"builders/{build['builderid']}")
    request = first(f"buildrequests/{build['buildrequestid']}")
    buildset = first(f"buildsets/{request['buildsetid']}")
    change = first("changes")
    known = {
        "buildid": build["buildid"],
        "builderid": build["builderid"],
        "builderid_or_name": build["builderid"],
        "builderid_or_buildername": builder["name"],
        "build_number": build["number"],
        "stepid": step["stepid"],
        "step_number_or_step_name": step["name"],
        "logid": log["logid"],
        "log_slug": log["slug"],
        "workerid": worker["workerid"],
        "workerid_or_name": worker["name"],
        "masterid": build["masterid"],
        "buildrequestid": build["buildrequestid"],
        "bsid": buildset["bsid"],
        "ssid": buildset["sourcestamps"][0]["ssid"],
        "changeid": change["changeid"],
        "schedulerid": first("schedulers")["schedulerid"],
        "changesourceid": first("changesources").get("changesourceid"),
        "name": first("forceschedulers")["name"],
        "test_result_setid": first("test_result_sets")["test_result_setid"],
        "projectid": first("projects")["projectid"],
        "projectid_or_projectname": first("projects")["name"],
    }
    codebase = first("codebases")
    commits = requests.get(
        f"{api}/codebases/{codebase['codebaseid']}/commits?order=commitid", timeout=10
    ).json()["commits"]
    known |= {
        "codebaseid": codebase["codebaseid"],
        "codebasename": codebase["name"],
        "branchid": first(f"codebases/{codebase['codebaseid']}/branches")["branchid"],
        "commitid": commits[-1]["commitid"],
        "commitid1": commits[0]["commitid"],
        "commitid2": commits[-1]["commitid"],
        "revision": commits[-1]["revision"],
    }
    return {name: value for name, value in known.items() if value is not None}


def _fuzz(
    operation: Any,
    *,
    mode: schemathesis.GenerationMode,
    examples: int,
    path_parameters: dict[str, Any] | None,
    failures: list[str],
) -> None:
    strategy = operation.as_strategy(generation_mode=mode, path_parameters=path_parameters)
    checks: list[schemathesis.CheckFunction] = [not_a_server_error]
    if mode is schemathesis.GenerationMode.POSITIVE:
        checks = CHECKS

    @hypothesis.given(case=strategy)
    @hypothesis.settings(
        max_examples=examples,
        derandomize=True,
        database=None,
        deadline=None,
        phases=[Phase.explicit, Phase.generate, Phase.shrink],
        suppress_health_check=list(HealthCheck),
    )
    def run(case: schemathesis.Case[Any]) -> None:
        case.call_and_validate(checks=checks, timeout=30)

    try:
        run()
    except Exception as exc:
        # a flaky failure (state changed under a replay) shows what failed first
        inner = getattr(exc, "exceptions", ())
        detail = "\n".join([str(exc), *(f"{type(e).__name__}: {e}" for e in inner)])
        failures.append(f"{operation.label} ({mode.value}, path {path_parameters}):\n{detail}")


def _operations(api: str) -> list[Any]:
    # 501 is how a control action the entity has not is answered (Buildbot's JSON-RPC, and the
    # description documents it); 5xx are failures otherwise
    config = schemathesis.Config.from_dict(
        {"checks": {"not_a_server_error": {"expected-statuses": ["2xx", "3xx", "4xx", "501"]}}}
    )
    schema = schemathesis.openapi.from_url(f"{api}/openapi.json", config=config)
    results = list(schema.get_all_operations())
    errors = [r.err() for r in results if isinstance(r, Err)]
    assert not errors, errors
    return [r.ok() for r in results if isinstance(r, Ok)]


def test_every_get_conforms(api: str) -> None:
    known = _known(api)
    failures: list[str] = []
    gets = [op for op in _operations(api) if op.method.upper() == "GET"]
    for op in gets:
        params = [p.name for p in op.path_parameters]
        _fuzz(
            op,
            mode=schemathesis.GenerationMode.POSITIVE,
            examples=3,
            path_parameters=None,
            failures=failures,
        )
        if all(p in known for p in params):
            real = {p: known[p] for p in params}
            _fuzz(
                op,
                mode=schemathesis.GenerationMode.POSITIVE,
                examples=GET_EXAMPLES,
                path_parameters=real,
                failures=failures,
            )
            if len(op.query):  # bad query arguments: a 400, never a 5xx
                _fuzz(
                    op,
                    mode=schemathesis.GenerationMode.NEGATIVE,
                    examples=BAD_EXAMPLES,
                    path_parameters=real,
                    failures=failures,
                )
    assert not failures, "\n\n".join(failures)


def test_control_actions_never_fail_on_bad_bodies(api: str) -> None:
    known = _known(api)
    failures: list[str] = []
    posts = [op for op in _operations(api) if op.method.upper() == "POST"]
    assert posts
    for op in posts:
        real = {p.name: known[p.name] for p in op.path_parameters}
        for mode in (schemathesis.GenerationMode.NEGATIVE, schemathesis.GenerationMode.POSITIVE):
            _fuzz(op, mode=mode, examples=POST_EXAMPLES, path_parameters=real, failures=failures)
    assert not failures, "\n\n".join(failures)


def test_entities_have_every_field(api: str) -> None:
    """The description requires no field (``field=`` selects some); without it, every item of
    every path that names real entities has all of its type's fields and no other."""
    doc = requests.get(f"{api}/openapi.json", timeout=10).json()
    schemas = doc["components"]["schemas"]
    fields = {
        plural: set(schemas[entity["items"]["$ref"].rpartition("/")[2]].get("properties", ()))
        for name, envelope in schemas.items()
        if name.endswith(("Collection", "Item"))
        for plural, entity in envelope["properties"].items()
        if plural != "meta"
    }
    known = _known(api)
    seen: set[str] = set()
    for template in doc["paths"]:
        names = re.findall(r"{(\w+)}", template)
        downloads = ("/raw", "/raw_inline", "/value")
        if template.endswith(downloads) or not set(names) <= set(known):
            continue
        url = api + template.format(**{n: known[n] for n in names})
        reply = requests.get(url, headers={"Accept": "application/json"}, timeout=10)
        if reply.status_code == 404:  # e.g. a collection under the first step, which has none
            continue
        assert reply.status_code == 200, (url, reply.text)
        body = reply.json()
        [plural] = [k for k in body if k != "meta"]
        for item in body[plural]:
            if fields[plural]:  # not a properties map
                assert set(item) == fields[plural], url
            seen.add(plural)
    assert seen >= {
        "builders",
        "builds",
        "steps",
        "logs",
        "logchunks",
        "workers",
        "masters",
        "properties",
        "buildrequests",
        "buildsets",
        "sourcestamps",
        "changes",
        "schedulers",
        "forceschedulers",
        "build_data",
        "test_result_sets",
        "test_results",
        "projects",
        "codebases",
        "branches",
        "commits",
        "commit_graphs",
        "specs",
    }
