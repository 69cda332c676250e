"""The API shape of each entity (docs/rest-api.md, "Resources"), shared by events and REST reads.

Buildbot's events carry the same dict the REST API returns for the entity, so consumers (the web
UI, reporters) can use either. Properties are left out here: the API adds them only on request.
"""

from __future__ import annotations

from typing import Any

from buildyard.master.model.buildrequests import BuildRequest
from buildyard.master.model.builds import Build
from buildyard.master.model.buildsets import Buildset
from buildyard.master.model.changes import Change
from buildyard.master.model.codebases import Codebase, CodebaseBranch, CodebaseCommit
from buildyard.master.model.logs import Log
from buildyard.master.model.sourcestamps import SourceStamp
from buildyard.master.model.steps import Step
from buildyard.master.model.test_results import TestResultSet

Item = dict[str, Any]


def _results(value: int | None) -> int | None:
    return None if value is None else int(value)


def sourcestamp(ss: SourceStamp) -> Item:
    patch = None
    if ss.patch is not None:
        p = ss.patch
        patch = {
            "patchid": p.id,
            "body": p.body,
            "level": p.level,
            "subdir": p.subdir,
            "author": p.author,
            "comment": p.comment,
        }
    return {
        "ssid": ss.id,
        "branch": ss.branch,
        "revision": ss.revision,
        "repository": ss.repository,
        "project": ss.project,
        "codebase": ss.codebase,
        "patch": patch,
        "created_at": ss.created_at,
    }


def change(ch: Change, stamp: SourceStamp | None) -> Item:
    return {
        "changeid": ch.id,
        "parent_changeids": list(ch.parent_changeids),
        "author": ch.author,
        "committer": ch.committer,
        "files": list(ch.files),
        "comments": ch.comments,
        "revision": ch.revision,
        "when_timestamp": ch.when_timestamp,
        "branch": ch.branch,
        "category": ch.category,
        "revlink": ch.revlink,
        "properties": {k: list(v) for k, v in ch.properties.items()},
        "repository": ch.repository,
        "project": ch.project,
        "codebase": ch.codebase,
        "sourcestamp": sourcestamp(stamp) if stamp is not None else None,
    }


def buildset(bs: Buildset, stamps: list[SourceStamp]) -> Item:
    return {
        "bsid": bs.id,
        "external_idstring": bs.external_idstring,
        "reason": bs.reason,
        "rebuilt_buildid": bs.rebuilt_buildid,
        "submitted_at": bs.submitted_at,
        "complete": bs.complete,
        "complete_at": bs.complete_at,
        "results": _results(bs.results),
        "sourcestamps": [sourcestamp(s) for s in stamps],
        "parent_buildid": bs.parent_buildid,
        "parent_relationship": bs.parent_relationship,
    }


def buildrequest(br: BuildRequest) -> Item:
    return {
        "buildrequestid": br.id,
        "buildsetid": br.buildsetid,
        "builderid": br.builderid,
        "priority": br.priority,
        "claimed": br.claimed,
        "claimed_at": br.claimed_at,
        "claimed_by_masterid": br.claimed_by_masterid,
        "complete": br.complete,
        "results": _results(br.results),
        "submitted_at": br.submitted_at,
        "complete_at": br.complete_at,
        "waited_for": br.waited_for,
        "properties": None,
    }


def build(b: Build) -> Item:
    return {
        "buildid": b.id,
        "number": b.number,
        "builderid": b.builderid,
        "buildrequestid": b.buildrequestid,
        "workerid": b.workerid,
        "masterid": b.masterid,
        "started_at": b.started_at,
        "complete": b.complete_at is not None,
        "complete_at": b.complete_at,
        "locks_duration_s": b.locks_duration_s,
        "results": _results(b.results),
        "state_string": b.state_string,
        "properties": {},
    }


def step(s: Step) -> Item:
    return {
        "stepid": s.id,
        "number": s.number,
        "name": s.name,
        "buildid": s.buildid,
        "started_at": s.started_at,
        "locks_acquired_at": s.locks_acquired_at,
        "complete": s.complete_at is not None,
        "complete_at": s.complete_at,
        "results": _results(s.results),
        "state_string": s.state_string,
        "urls": [{"name": u.name, "url": u.url} for u in s.urls],
        "hidden": s.hidden,
    }


def log(lg: Log) -> Item:
    return {
        "logid": lg.id,
        "name": lg.name,
        "slug": lg.slug,
        "stepid": lg.stepid,
        "complete": lg.complete,
        "num_lines": lg.num_lines,
        "type": str(lg.type),
    }


def test_result_set(s: TestResultSet) -> Item:
    return {
        "test_result_setid": s.id,
        "builderid": s.builderid,
        "buildid": s.buildid,
        "stepid": s.stepid,
        "description": s.description,
        "category": s.category,
        "value_unit": s.value_unit,
        "tests_passed": s.tests_passed,
        "tests_failed": s.tests_failed,
        "complete": s.complete,
    }


def codebase(cb: Codebase) -> Item:
    return {"codebaseid": cb.id, "projectid": cb.projectid, "name": cb.name, "slug": cb.slug}


def branch(br: CodebaseBranch) -> Item:
    return {
        "branchid": br.id,
        "codebaseid": br.codebaseid,
        "name": br.name,
        "commitid": br.commitid,
        "last_timestamp": br.last_timestamp,
    }


def commit(co: CodebaseCommit) -> Item:
    return {
        "commitid": co.id,
        "codebaseid": co.codebaseid,
        "author": co.author,
        "committer": co.committer,
        "comments": co.comments,
        "when_timestamp": co.when_timestamp,
        "revision": co.revision,
        "parent_commitid": co.parent_commitid,
    }
