"""Every table of the store, on one MetaData (docs/database.md, "Tables").

Timestamps are INT epoch seconds; booleans are small integers 0/1; ``*_hash`` columns are the sha1
of the name (see :mod:`buildyard.master.db.hashes`).
"""

from __future__ import annotations

import sqlalchemy as sa

metadata = sa.MetaData()


def _fk(target: str, ondelete: str) -> sa.ForeignKey:
    return sa.ForeignKey(target, ondelete=ondelete)


def _id() -> sa.Column[int]:
    return sa.Column("id", sa.Integer, primary_key=True)


masters = sa.Table(
    "masters",
    metadata,
    _id(),
    sa.Column("name", sa.Text, nullable=False),
    sa.Column("name_hash", sa.String(40), nullable=False),
    sa.Column("active", sa.Integer, nullable=False),
    sa.Column("last_active", sa.Integer, nullable=False),
    sa.Index("master_name_hashes", "name_hash", unique=True),
)

objects = sa.Table(
    "objects",
    metadata,
    _id(),
    sa.Column("name", sa.String(128), nullable=False),
    sa.Column("class_name", sa.String(128), nullable=False),
    sa.Index("object_identity", "name", "class_name", unique=True),
)

object_state = sa.Table(
    "object_state",
    metadata,
    sa.Column("objectid", sa.Integer, _fk("objects.id", "CASCADE"), nullable=False),
    sa.Column("name", sa.String(255), nullable=False),
    sa.Column("value_json", sa.Text, nullable=False),
    sa.Index("name_per_object", "objectid", "name", unique=True),
)

users = sa.Table(
    "users",
    metadata,
    sa.Column("uid", sa.Integer, primary_key=True),
    sa.Column("identifier", sa.String(255), nullable=False),
    sa.Column("bb_username", sa.String(128)),
    sa.Column("bb_password", sa.String(128)),
    sa.Index("users_bb_user", "bb_username", unique=True),
    sa.Index("users_identifier", "identifier", unique=True),
)

users_info = sa.Table(
    "users_info",
    metadata,
    sa.Column("uid", sa.Integer, _fk("users.uid", "CASCADE"), nullable=False),
    sa.Column("attr_type", sa.String(128), nullable=False),
    sa.Column("attr_data", sa.String(128), nullable=False),
    sa.Index("users_info_attrs", "attr_type", "attr_data", unique=True),
    sa.Index("users_info_uid", "uid"),
    sa.Index("users_info_uid_attr_type", "uid", "attr_type", unique=True),
)

projects = sa.Table(
    "projects",
    metadata,
    _id(),
    sa.Column("name", sa.Text, nullable=False),
    sa.Column("name_hash", sa.String(40), nullable=False),
    sa.Column("slug", sa.String(50), nullable=False),
    sa.Column("description", sa.Text),
    sa.Column("description_format", sa.Text),
    sa.Column("description_html", sa.Text),
    sa.Index("projects_name_hash", "name_hash", unique=True),
)

codebases = sa.Table(
    "codebases",
    metadata,
    _id(),
    sa.Column("projectid", sa.Integer, _fk("projects.id", "CASCADE"), nullable=False),
    sa.Column("name", sa.Text, nullable=False),
    sa.Column("name_hash", sa.String(40), nullable=False),
    sa.Column("slug", sa.String(50), nullable=False),
    sa.Index("codebases_projects_name_hash", "projectid", "name_hash", unique=True),
)

codebase_commits = sa.Table(
    "codebase_commits",
    metadata,
    _id(),
    sa.Column("codebaseid", sa.Integer, _fk("codebases.id", "CASCADE"), nullable=False),
    sa.Column("author", sa.String(255), nullable=False),
    sa.Column("committer", sa.String(255)),
    sa.Column("comments", sa.Text, nullable=False),
    sa.Column("when_timestamp", sa.Integer, nullable=False),
    sa.Column("revision", sa.String(70), nullable=False),
    sa.Column("parent_commitid", sa.Integer, _fk("codebase_commits.id", "SET NULL")),
    sa.Index("codebase_commits_unique", "codebaseid", "revision", unique=True),
)

codebase_branches = sa.Table(
    "codebase_branches",
    metadata,
    _id(),
    sa.Column("codebaseid", sa.Integer, _fk("codebases.id", "CASCADE"), nullable=False),
    sa.Column("name", sa.String(255), nullable=False),
    sa.Column("name_hash", sa.String(40), nullable=False),
    sa.Column("commitid", sa.Integer, _fk("codebase_commits.id", "SET NULL")),
    sa.Column("last_timestamp", sa.Integer, nullable=False),
    sa.Index("codebase_branches_unique", "codebaseid", "name_hash", unique=True),
)

builders = sa.Table(
    "builders",
    metadata,
    _id(),
    sa.Column("name", sa.Text, nullable=False),
    sa.Column("description", sa.Text),
    sa.Column("description_format", sa.Text),
    sa.Column("description_html", sa.Text),
    sa.Column("projectid", sa.Integer, _fk("projects.id", "SET NULL")),
    sa.Column("name_hash", sa.String(40), nullable=False),
    sa.Index("builder_name_hash", "name_hash", unique=True),
    sa.Index("builders_projectid", "projectid"),
)

builder_masters = sa.Table(
    "builder_masters",
    metadata,
    _id(),
    sa.Column("builderid", sa.Integer, _fk("builders.id", "CASCADE"), nullable=False),
    sa.Column("masterid", sa.Integer, _fk("masters.id", "CASCADE"), nullable=False),
    sa.Index("builder_masters_builderid", "builderid"),
    sa.Index("builder_masters_identity", "builderid", "masterid", unique=True),
    sa.Index("builder_masters_masterid", "masterid"),
)

tags = sa.Table(
    "tags",
    metadata,
    _id(),
    sa.Column("name", sa.Text, nullable=False),
    sa.Column("name_hash", sa.String(40), nullable=False),
    sa.Index("tag_name_hash", "name_hash", unique=True),
)

builders_tags = sa.Table(
    "builders_tags",
    metadata,
    _id(),
    sa.Column("builderid", sa.Integer, _fk("builders.id", "CASCADE"), nullable=False),
    sa.Column("tagid", sa.Integer, _fk("tags.id", "CASCADE"), nullable=False),
    sa.Index("builders_tags_builderid", "builderid"),
    sa.Index("builders_tags_unique", "builderid", "tagid", unique=True),
)

workers = sa.Table(
    "workers",
    metadata,
    _id(),
    sa.Column("name", sa.String(50), nullable=False),
    sa.Column("info", sa.Text, nullable=False),
    sa.Column("paused", sa.SmallInteger, nullable=False, server_default="0"),
    sa.Column("pause_reason", sa.Text),
    sa.Column("graceful", sa.SmallInteger, nullable=False, server_default="0"),
    sa.Index("workers_name", "name", unique=True),
)

configured_workers = sa.Table(
    "configured_workers",
    metadata,
    _id(),
    sa.Column("buildermasterid", sa.Integer, _fk("builder_masters.id", "CASCADE"), nullable=False),
    sa.Column("workerid", sa.Integer, _fk("workers.id", "CASCADE"), nullable=False),
    sa.Index("configured_workers_buildmasterid", "buildermasterid"),
    sa.Index("configured_workers_identity", "buildermasterid", "workerid", unique=True),
    sa.Index("configured_workers_workers", "workerid"),
)

connected_workers = sa.Table(
    "connected_workers",
    metadata,
    _id(),
    sa.Column("masterid", sa.Integer, _fk("masters.id", "CASCADE"), nullable=False),
    sa.Column("workerid", sa.Integer, _fk("workers.id", "CASCADE"), nullable=False),
    sa.Index("connected_workers_identity", "masterid", "workerid", unique=True),
    sa.Index("connected_workers_masterid", "masterid"),
    sa.Index("connected_workers_workers", "workerid"),
)

# buildsets and builds refer to each other; use_alter lets either be created first.
buildsets = sa.Table(
    "buildsets",
    metadata,
    _id(),
    sa.Column("external_idstring", sa.String(256)),
    sa.Column("reason", sa.String(256)),
    sa.Column("submitted_at", sa.Integer, nullable=False),
    sa.Column("complete", sa.SmallInteger, nullable=False, server_default="0"),
    sa.Column("complete_at", sa.Integer),
    sa.Column("results", sa.SmallInteger),
    sa.Column(
        "parent_buildid",
        sa.Integer,
        sa.ForeignKey(
            "builds.id", ondelete="SET NULL", use_alter=True, name="buildsets_parent_buildid_fkey"
        ),
    ),
    sa.Column("parent_relationship", sa.Text),
    sa.Column(
        "rebuilt_buildid",
        sa.Integer,
        sa.ForeignKey(
            "builds.id", ondelete="SET NULL", use_alter=True, name="buildsets_rebuilt_buildid_fkey"
        ),
    ),
    sa.Index("buildsets_complete", "complete"),
    sa.Index("buildsets_submitted_at", "submitted_at"),
)

buildset_properties = sa.Table(
    "buildset_properties",
    metadata,
    sa.Column("buildsetid", sa.Integer, _fk("buildsets.id", "CASCADE"), nullable=False),
    sa.Column("property_name", sa.String(256), nullable=False),
    sa.Column("property_value", sa.Text, nullable=False),
    sa.Index("buildset_properties_buildsetid", "buildsetid"),
)

patches = sa.Table(
    "patches",
    metadata,
    _id(),
    sa.Column("patchlevel", sa.Integer, nullable=False),
    sa.Column("patch_base64", sa.Text, nullable=False),
    sa.Column("patch_author", sa.Text, nullable=False),
    sa.Column("patch_comment", sa.Text, nullable=False),
    sa.Column("subdir", sa.Text),
)

sourcestamps = sa.Table(
    "sourcestamps",
    metadata,
    _id(),
    sa.Column("ss_hash", sa.String(40), nullable=False),
    sa.Column("branch", sa.String(256)),
    sa.Column("revision", sa.String(256)),
    sa.Column("patchid", sa.Integer, _fk("patches.id", "CASCADE")),
    sa.Column("repository", sa.String(512), nullable=False, server_default=""),
    sa.Column("codebase", sa.String(256), nullable=False, server_default=""),
    sa.Column("project", sa.String(512), nullable=False, server_default=""),
    sa.Column("created_at", sa.Integer, nullable=False),
    sa.Index("sourcestamps_ss_hash_key", "ss_hash", unique=True),
)

buildset_sourcestamps = sa.Table(
    "buildset_sourcestamps",
    metadata,
    _id(),
    sa.Column("buildsetid", sa.Integer, _fk("buildsets.id", "CASCADE"), nullable=False),
    sa.Column("sourcestampid", sa.Integer, _fk("sourcestamps.id", "CASCADE"), nullable=False),
    sa.Index("buildset_sourcestamps_buildsetid", "buildsetid"),
    sa.Index("buildset_sourcestamps_unique", "buildsetid", "sourcestampid", unique=True),
)

buildrequests = sa.Table(
    "buildrequests",
    metadata,
    _id(),
    sa.Column("buildsetid", sa.Integer, _fk("buildsets.id", "CASCADE"), nullable=False),
    sa.Column("builderid", sa.Integer, _fk("builders.id", "CASCADE"), nullable=False),
    sa.Column("priority", sa.Integer, nullable=False, server_default="0"),
    sa.Column("complete", sa.Integer, server_default="0"),
    sa.Column("results", sa.SmallInteger),
    sa.Column("submitted_at", sa.Integer, nullable=False),
    sa.Column("complete_at", sa.Integer),
    sa.Column("waited_for", sa.SmallInteger, server_default="0"),
    sa.Index("buildrequests_builderid", "builderid"),
    sa.Index("buildrequests_buildsetid", "buildsetid"),
    sa.Index("buildrequests_complete", "complete"),
)

buildrequest_claims = sa.Table(
    "buildrequest_claims",
    metadata,
    sa.Column("brid", sa.Integer, _fk("buildrequests.id", "CASCADE"), nullable=False),
    sa.Column("masterid", sa.Integer, _fk("masters.id", "CASCADE"), nullable=False),
    sa.Column("claimed_at", sa.Integer, nullable=False),
    sa.Index("buildrequest_claims_brids", "brid", unique=True),
    sa.Index("ix_buildrequest_claims_masterid", "masterid"),
)

builds = sa.Table(
    "builds",
    metadata,
    _id(),
    sa.Column("number", sa.Integer, nullable=False),
    sa.Column("builderid", sa.Integer, _fk("builders.id", "CASCADE"), nullable=False),
    sa.Column("buildrequestid", sa.Integer, _fk("buildrequests.id", "CASCADE"), nullable=False),
    sa.Column("workerid", sa.Integer, _fk("workers.id", "SET NULL")),
    sa.Column("masterid", sa.Integer, _fk("masters.id", "CASCADE"), nullable=False),
    sa.Column("started_at", sa.Integer, nullable=False),
    sa.Column("complete_at", sa.Integer),
    sa.Column("locks_duration_s", sa.Integer, nullable=False),
    sa.Column("state_string", sa.Text, nullable=False),
    sa.Column("results", sa.Integer),
    sa.Index("builds_buildrequestid", "buildrequestid"),
    sa.Index("builds_masterid", "masterid"),
    sa.Index("builds_number", "builderid", "number", unique=True),
    sa.Index("builds_workerid", "workerid"),
    # buildyard's own (revision 0003): the running builds of a master, which its cleanup finishes
    sa.Index(
        "builds_running_masterid",
        "masterid",
        sqlite_where=sa.text("complete_at IS NULL"),
        postgresql_where=sa.text("complete_at IS NULL"),
    ),
)

build_properties = sa.Table(
    "build_properties",
    metadata,
    sa.Column("buildid", sa.Integer, _fk("builds.id", "CASCADE"), nullable=False),
    sa.Column("name", sa.String(256), nullable=False),
    sa.Column("value", sa.Text, nullable=False),
    sa.Column("source", sa.String(256), nullable=False),
    sa.Index("build_properties_buildid", "buildid"),
)

build_data = sa.Table(
    "build_data",
    metadata,
    _id(),
    sa.Column("buildid", sa.Integer, _fk("builds.id", "CASCADE"), nullable=False),
    sa.Column("name", sa.String(256), nullable=False),
    sa.Column("value", sa.LargeBinary, nullable=False),
    sa.Column("length", sa.Integer, nullable=False),
    sa.Column("source", sa.String(256), nullable=False),
    sa.Index("build_data_buildid_name", "buildid", "name", unique=True),
)

steps = sa.Table(
    "steps",
    metadata,
    _id(),
    sa.Column("number", sa.Integer, nullable=False),
    sa.Column("name", sa.String(50), nullable=False),
    sa.Column("buildid", sa.Integer, _fk("builds.id", "CASCADE"), nullable=False),
    sa.Column("started_at", sa.Integer),
    sa.Column("locks_acquired_at", sa.Integer),
    sa.Column("complete_at", sa.Integer),
    sa.Column("state_string", sa.Text, nullable=False),
    sa.Column("results", sa.Integer),
    sa.Column("urls_json", sa.Text, nullable=False),
    sa.Column("hidden", sa.SmallInteger, nullable=False, server_default="0"),
    sa.Index("steps_name", "buildid", "name", unique=True),
    sa.Index("steps_number", "buildid", "number", unique=True),
    sa.Index("steps_started_at", "started_at"),
)

logs = sa.Table(
    "logs",
    metadata,
    _id(),
    sa.Column("name", sa.Text, nullable=False),
    sa.Column("slug", sa.String(50), nullable=False),
    sa.Column("stepid", sa.Integer, _fk("steps.id", "CASCADE"), nullable=False),
    sa.Column("complete", sa.SmallInteger, nullable=False),
    sa.Column("num_lines", sa.Integer, nullable=False),
    sa.Column("type", sa.String(1), nullable=False),
    sa.Index("logs_slug", "stepid", "slug", unique=True),
    # buildyard's own (revision 0003): the logs whose lines are kept, which the janitor reads
    sa.Index(
        "logs_kept",
        "id",
        sqlite_where=sa.text("type != 'd'"),
        postgresql_where=sa.text("type != 'd'"),
    ),
)

logchunks = sa.Table(
    "logchunks",
    metadata,
    sa.Column("logid", sa.Integer, _fk("logs.id", "CASCADE"), nullable=False),
    sa.Column("first_line", sa.Integer, nullable=False),
    sa.Column("last_line", sa.Integer, nullable=False),
    sa.Column("content", sa.LargeBinary(65536)),
    sa.Column("compressed", sa.SmallInteger, nullable=False),
    sa.Index("logchunks_firstline", "logid", "first_line"),
    sa.Index("logchunks_lastline", "logid", "last_line"),
)

changes = sa.Table(
    "changes",
    metadata,
    sa.Column("changeid", sa.Integer, primary_key=True),
    sa.Column("author", sa.String(255), nullable=False),
    sa.Column("committer", sa.String(255)),
    sa.Column("comments", sa.Text, nullable=False),
    sa.Column("branch", sa.String(255)),
    sa.Column("revision", sa.String(255)),
    sa.Column("revlink", sa.String(256)),
    sa.Column("when_timestamp", sa.Integer, nullable=False),
    sa.Column("category", sa.String(255)),
    sa.Column("repository", sa.String(512), nullable=False, server_default=""),
    sa.Column("codebase", sa.String(256), nullable=False, server_default=""),
    sa.Column("project", sa.String(512), nullable=False, server_default=""),
    sa.Column("sourcestampid", sa.Integer, _fk("sourcestamps.id", "CASCADE"), nullable=False),
    sa.Column("parent_changeids", sa.Integer, _fk("changes.changeid", "SET NULL")),
    sa.Index("changes_author", "author"),
    sa.Index("changes_branch", "branch"),
    sa.Index("changes_category", "category"),
    sa.Index("changes_revision", "revision"),
    sa.Index("changes_sourcestampid", "sourcestampid"),
    sa.Index("changes_when_timestamp", "when_timestamp"),
)

change_files = sa.Table(
    "change_files",
    metadata,
    sa.Column("changeid", sa.Integer, _fk("changes.changeid", "CASCADE"), nullable=False),
    sa.Column("filename", sa.String(1024), nullable=False),
    sa.Index("change_files_changeid", "changeid"),
)

change_properties = sa.Table(
    "change_properties",
    metadata,
    sa.Column("changeid", sa.Integer, _fk("changes.changeid", "CASCADE"), nullable=False),
    sa.Column("property_name", sa.String(256), nullable=False),
    sa.Column("property_value", sa.Text, nullable=False),
    sa.Index("change_properties_changeid", "changeid"),
)

change_users = sa.Table(
    "change_users",
    metadata,
    sa.Column("changeid", sa.Integer, _fk("changes.changeid", "CASCADE"), nullable=False),
    sa.Column("uid", sa.Integer, _fk("users.uid", "CASCADE"), nullable=False),
    sa.Index("change_users_changeid", "changeid"),
)

schedulers = sa.Table(
    "schedulers",
    metadata,
    _id(),
    sa.Column("name", sa.Text, nullable=False),
    sa.Column("name_hash", sa.String(40), nullable=False),
    sa.Column("enabled", sa.SmallInteger, server_default="1"),
    sa.Index("scheduler_name_hash", "name_hash", unique=True),
)

scheduler_masters = sa.Table(
    "scheduler_masters",
    metadata,
    sa.Column("schedulerid", sa.Integer, _fk("schedulers.id", "CASCADE"), primary_key=True),
    sa.Column("masterid", sa.Integer, _fk("masters.id", "CASCADE"), nullable=False),
)

scheduler_changes = sa.Table(
    "scheduler_changes",
    metadata,
    sa.Column("schedulerid", sa.Integer, _fk("schedulers.id", "CASCADE"), nullable=False),
    sa.Column("changeid", sa.Integer, _fk("changes.changeid", "CASCADE"), nullable=False),
    sa.Column("important", sa.Integer),
    sa.Index("scheduler_changes_changeid", "changeid"),
    sa.Index("scheduler_changes_schedulerid", "schedulerid"),
    sa.Index("scheduler_changes_unique", "schedulerid", "changeid", unique=True),
)

changesources = sa.Table(
    "changesources",
    metadata,
    _id(),
    sa.Column("name", sa.Text, nullable=False),
    sa.Column("name_hash", sa.String(40), nullable=False),
    sa.Index("changesource_name_hash", "name_hash", unique=True),
)

changesource_masters = sa.Table(
    "changesource_masters",
    metadata,
    sa.Column("changesourceid", sa.Integer, _fk("changesources.id", "CASCADE"), primary_key=True),
    sa.Column("masterid", sa.Integer, _fk("masters.id", "CASCADE"), nullable=False),
)

test_result_sets = sa.Table(
    "test_result_sets",
    metadata,
    _id(),
    sa.Column("builderid", sa.Integer, _fk("builders.id", "CASCADE"), nullable=False),
    sa.Column("buildid", sa.Integer, _fk("builds.id", "CASCADE"), nullable=False),
    sa.Column("stepid", sa.Integer, _fk("steps.id", "CASCADE"), nullable=False),
    sa.Column("description", sa.Text),
    sa.Column("category", sa.Text, nullable=False),
    sa.Column("value_unit", sa.Text, nullable=False),
    sa.Column("tests_passed", sa.Integer),
    sa.Column("tests_failed", sa.Integer),
    sa.Column("complete", sa.SmallInteger, nullable=False),
)

test_names = sa.Table(
    "test_names",
    metadata,
    _id(),
    sa.Column("builderid", sa.Integer, _fk("builders.id", "CASCADE"), nullable=False),
    sa.Column("name", sa.Text, nullable=False),
    sa.Index("test_names_name", "builderid", "name"),
)

test_code_paths = sa.Table(
    "test_code_paths",
    metadata,
    _id(),
    sa.Column("builderid", sa.Integer, _fk("builders.id", "CASCADE"), nullable=False),
    sa.Column("path", sa.Text, nullable=False),
    sa.Index("test_code_paths_path", "builderid", "path"),
)

test_results = sa.Table(
    "test_results",
    metadata,
    _id(),
    sa.Column("builderid", sa.Integer, _fk("builders.id", "CASCADE"), nullable=False),
    sa.Column(
        "test_result_setid", sa.Integer, _fk("test_result_sets.id", "CASCADE"), nullable=False
    ),
    sa.Column("test_nameid", sa.Integer, _fk("test_names.id", "CASCADE")),
    sa.Column("test_code_pathid", sa.Integer, _fk("test_code_paths.id", "CASCADE")),
    sa.Column("line", sa.Integer),
    sa.Column("duration_ns", sa.Integer),
    sa.Column("value", sa.Text, nullable=False),
)
