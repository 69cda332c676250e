"""Initial schema: the 42 tables of Buildbot 4.3.0 (docs/database.md, "Tables").

Revision ID: 0001
Revises:
Create Date: 2026-11-22

Drafted with ``alembic revision --autogenerate`` against an empty database, then reordered to
follow docs/database.md and reviewed. Written out table by table on purpose: ``schema.py``
moves on with later revisions, this file must keep creating the schema as it was at 0001.

``buildsets`` and ``builds`` refer to each other (``builds -> buildrequests -> buildsets`` and
``buildsets.parent_buildid/rebuilt_buildid -> builds``). PostgreSQL gets the two back-references
with ALTER TABLE once ``builds`` exists; SQLite cannot add a constraint to an existing table, but
it accepts a REFERENCES clause to a table that does not exist yet, so there they are inline.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision: str = "0001"
down_revision: str | None = None
branch_labels: str | None = None
depends_on: str | None = None

CASCADE = "CASCADE"
SET_NULL = "SET NULL"

# creation order: every foreign key's target comes first, except buildsets -> builds
_TABLES = (
    "masters", "objects", "object_state", "users", "users_info", "projects", "codebases",
    "codebase_commits", "codebase_branches", "builders", "builder_masters", "tags",
    "builders_tags", "workers", "configured_workers", "connected_workers", "buildsets",
    "buildset_properties", "patches", "sourcestamps", "buildset_sourcestamps", "buildrequests",
    "buildrequest_claims", "builds", "build_properties", "build_data", "steps", "logs",
    "logchunks", "changes", "change_files", "change_properties", "change_users", "schedulers",
    "scheduler_masters", "scheduler_changes", "changesources", "changesource_masters",
    "test_result_sets", "test_names", "test_code_paths", "test_results",
)  # fmt: skip

# (constraint name, column) of buildsets' references to builds
_BUILDSET_BUILD_FKS = (
    ("buildsets_parent_buildid_fkey", "parent_buildid"),
    ("buildsets_rebuilt_buildid_fkey", "rebuilt_buildid"),
)


def _id(name: str = "id") -> sa.Column[int]:
    return sa.Column(name, sa.Integer(), primary_key=True)


def _ref(name: str, target: str, ondelete: str, *, nullable: bool = False) -> sa.Column[int]:
    return sa.Column(
        name, sa.Integer(), sa.ForeignKey(target, ondelete=ondelete), nullable=nullable
    )


def _int(name: str, *, nullable: bool = False) -> sa.Column[int]:
    return sa.Column(name, sa.Integer(), nullable=nullable)


def _flag(name: str, default: str | None = None, *, nullable: bool = False) -> sa.Column[int]:
    return sa.Column(name, sa.SmallInteger(), server_default=default, nullable=nullable)


def _str(
    name: str, length: int, *, nullable: bool = False, default: str | None = None
) -> sa.Column[str]:
    return sa.Column(name, sa.String(length), server_default=default, nullable=nullable)


def _text(name: str, *, nullable: bool = False) -> sa.Column[str]:
    return sa.Column(name, sa.Text(), nullable=nullable)


def _index(table: str, name: str, *columns: str, unique: bool = False) -> None:
    op.create_index(name, table, list(columns), unique=unique)


def _is_sqlite() -> bool:
    return op.get_context().dialect.name == "sqlite"


def upgrade() -> None:  # noqa: PLR0915 - one statement per table and index, in the docs' order
    op.create_table(
        "masters",
        _id(),
        _text("name"),
        _str("name_hash", 40),
        _int("active"),
        _int("last_active"),
    )
    _index("masters", "master_name_hashes", "name_hash", unique=True)

    op.create_table(
        "objects",
        _id(),
        _str("name", 128),
        _str("class_name", 128),
    )
    _index("objects", "object_identity", "name", "class_name", unique=True)

    op.create_table(
        "object_state",
        _ref("objectid", "objects.id", CASCADE),
        _str("name", 255),
        _text("value_json"),
    )
    _index("object_state", "name_per_object", "objectid", "name", unique=True)

    op.create_table(
        "users",
        _id("uid"),
        _str("identifier", 255),
        _str("bb_username", 128, nullable=True),
        _str("bb_password", 128, nullable=True),
    )
    _index("users", "users_bb_user", "bb_username", unique=True)
    _index("users", "users_identifier", "identifier", unique=True)

    op.create_table(
        "users_info",
        _ref("uid", "users.uid", CASCADE),
        _str("attr_type", 128),
        _str("attr_data", 128),
    )
    _index("users_info", "users_info_attrs", "attr_type", "attr_data", unique=True)
    _index("users_info", "users_info_uid", "uid")
    _index("users_info", "users_info_uid_attr_type", "uid", "attr_type", unique=True)

    op.create_table(
        "projects",
        _id(),
        _text("name"),
        _str("name_hash", 40),
        _str("slug", 50),
        _text("description", nullable=True),
        _text("description_format", nullable=True),
        _text("description_html", nullable=True),
    )
    _index("projects", "projects_name_hash", "name_hash", unique=True)

    op.create_table(
        "codebases",
        _id(),
        _ref("projectid", "projects.id", CASCADE),
        _text("name"),
        _str("name_hash", 40),
        _str("slug", 50),
    )
    _index("codebases", "codebases_projects_name_hash", "projectid", "name_hash", unique=True)

    op.create_table(
        "codebase_commits",
        _id(),
        _ref("codebaseid", "codebases.id", CASCADE),
        _str("author", 255),
        _str("committer", 255, nullable=True),
        _text("comments"),
        _int("when_timestamp"),
        _str("revision", 70),
        _ref("parent_commitid", "codebase_commits.id", SET_NULL, nullable=True),
    )
    _index("codebase_commits", "codebase_commits_unique", "codebaseid", "revision", unique=True)

    op.create_table(
        "codebase_branches",
        _id(),
        _ref("codebaseid", "codebases.id", CASCADE),
        _str("name", 255),
        _str("name_hash", 40),
        _ref("commitid", "codebase_commits.id", SET_NULL, nullable=True),
        _int("last_timestamp"),
    )
    _index("codebase_branches", "codebase_branches_unique", "codebaseid", "name_hash", unique=True)

    op.create_table(
        "builders",
        _id(),
        _text("name"),
        _text("description", nullable=True),
        _text("description_format", nullable=True),
        _text("description_html", nullable=True),
        _ref("projectid", "projects.id", SET_NULL, nullable=True),
        _str("name_hash", 40),
    )
    _index("builders", "builder_name_hash", "name_hash", unique=True)
    _index("builders", "builders_projectid", "projectid")

    op.create_table(
        "builder_masters",
        _id(),
        _ref("builderid", "builders.id", CASCADE),
        _ref("masterid", "masters.id", CASCADE),
    )
    _index("builder_masters", "builder_masters_builderid", "builderid")
    _index("builder_masters", "builder_masters_identity", "builderid", "masterid", unique=True)
    _index("builder_masters", "builder_masters_masterid", "masterid")

    op.create_table(
        "tags",
        _id(),
        _text("name"),
        _str("name_hash", 40),
    )
    _index("tags", "tag_name_hash", "name_hash", unique=True)

    op.create_table(
        "builders_tags",
        _id(),
        _ref("builderid", "builders.id", CASCADE),
        _ref("tagid", "tags.id", CASCADE),
    )
    _index("builders_tags", "builders_tags_builderid", "builderid")
    _index("builders_tags", "builders_tags_unique", "builderid", "tagid", unique=True)

    op.create_table(
        "workers",
        _id(),
        _str("name", 50),
        _text("info"),
        _flag("paused", "0"),
        _text("pause_reason", nullable=True),
        _flag("graceful", "0"),
    )
    _index("workers", "workers_name", "name", unique=True)

    op.create_table(
        "configured_workers",
        _id(),
        _ref("buildermasterid", "builder_masters.id", CASCADE),
        _ref("workerid", "workers.id", CASCADE),
    )
    _index("configured_workers", "configured_workers_buildmasterid", "buildermasterid")
    _index(
        "configured_workers", "configured_workers_identity", "buildermasterid", "workerid",
        unique=True,
    )  # fmt: skip
    _index("configured_workers", "configured_workers_workers", "workerid")

    op.create_table(
        "connected_workers",
        _id(),
        _ref("masterid", "masters.id", CASCADE),
        _ref("workerid", "workers.id", CASCADE),
    )
    _index("connected_workers", "connected_workers_identity", "masterid", "workerid", unique=True)
    _index("connected_workers", "connected_workers_masterid", "masterid")
    _index("connected_workers", "connected_workers_workers", "workerid")

    buildset_build_fks = [
        sa.ForeignKeyConstraint([column], ["builds.id"], name=name, ondelete=SET_NULL)
        for name, column in _BUILDSET_BUILD_FKS
        if _is_sqlite()
    ]
    op.create_table(
        "buildsets",
        _id(),
        _str("external_idstring", 256, nullable=True),
        _str("reason", 256, nullable=True),
        _int("submitted_at"),
        _flag("complete", "0"),
        _int("complete_at", nullable=True),
        _flag("results", nullable=True),
        _int("parent_buildid", nullable=True),
        _text("parent_relationship", nullable=True),
        _int("rebuilt_buildid", nullable=True),
        *buildset_build_fks,
    )
    _index("buildsets", "buildsets_complete", "complete")
    _index("buildsets", "buildsets_submitted_at", "submitted_at")

    op.create_table(
        "buildset_properties",
        _ref("buildsetid", "buildsets.id", CASCADE),
        _str("property_name", 256),
        _text("property_value"),
    )
    _index("buildset_properties", "buildset_properties_buildsetid", "buildsetid")

    op.create_table(
        "patches",
        _id(),
        _int("patchlevel"),
        _text("patch_base64"),
        _text("patch_author"),
        _text("patch_comment"),
        _text("subdir", nullable=True),
    )

    op.create_table(
        "sourcestamps",
        _id(),
        _str("ss_hash", 40),
        _str("branch", 256, nullable=True),
        _str("revision", 256, nullable=True),
        _ref("patchid", "patches.id", CASCADE, nullable=True),
        _str("repository", 512, default=""),
        _str("codebase", 256, default=""),
        _str("project", 512, default=""),
        _int("created_at"),
    )
    _index("sourcestamps", "sourcestamps_ss_hash_key", "ss_hash", unique=True)

    op.create_table(
        "buildset_sourcestamps",
        _id(),
        _ref("buildsetid", "buildsets.id", CASCADE),
        _ref("sourcestampid", "sourcestamps.id", CASCADE),
    )
    _index("buildset_sourcestamps", "buildset_sourcestamps_buildsetid", "buildsetid")
    _index(
        "buildset_sourcestamps", "buildset_sourcestamps_unique", "buildsetid", "sourcestampid",
        unique=True,
    )  # fmt: skip

    op.create_table(
        "buildrequests",
        _id(),
        _ref("buildsetid", "buildsets.id", CASCADE),
        _ref("builderid", "builders.id", CASCADE),
        sa.Column("priority", sa.Integer(), server_default="0", nullable=False),
        sa.Column("complete", sa.Integer(), server_default="0", nullable=True),
        _flag("results", nullable=True),
        _int("submitted_at"),
        _int("complete_at", nullable=True),
        _flag("waited_for", "0", nullable=True),
    )
    _index("buildrequests", "buildrequests_builderid", "builderid")
    _index("buildrequests", "buildrequests_buildsetid", "buildsetid")
    _index("buildrequests", "buildrequests_complete", "complete")

    op.create_table(
        "buildrequest_claims",
        _ref("brid", "buildrequests.id", CASCADE),
        _ref("masterid", "masters.id", CASCADE),
        _int("claimed_at"),
    )
    _index("buildrequest_claims", "buildrequest_claims_brids", "brid", unique=True)
    _index("buildrequest_claims", "ix_buildrequest_claims_masterid", "masterid")

    op.create_table(
        "builds",
        _id(),
        _int("number"),
        _ref("builderid", "builders.id", CASCADE),
        _ref("buildrequestid", "buildrequests.id", CASCADE),
        _ref("workerid", "workers.id", SET_NULL, nullable=True),
        _ref("masterid", "masters.id", CASCADE),
        _int("started_at"),
        _int("complete_at", nullable=True),
        _int("locks_duration_s"),
        _text("state_string"),
        _int("results", nullable=True),
    )
    _index("builds", "builds_buildrequestid", "buildrequestid")
    _index("builds", "builds_masterid", "masterid")
    _index("builds", "builds_number", "builderid", "number", unique=True)
    _index("builds", "builds_workerid", "workerid")
    if not _is_sqlite():
        for name, column in _BUILDSET_BUILD_FKS:
            op.create_foreign_key(name, "buildsets", "builds", [column], ["id"], ondelete=SET_NULL)

    op.create_table(
        "build_properties",
        _ref("buildid", "builds.id", CASCADE),
        _str("name", 256),
        _text("value"),
        _str("source", 256),
    )
    _index("build_properties", "build_properties_buildid", "buildid")

    op.create_table(
        "build_data",
        _id(),
        _ref("buildid", "builds.id", CASCADE),
        _str("name", 256),
        sa.Column("value", sa.LargeBinary(), nullable=False),
        _int("length"),
        _str("source", 256),
    )
    _index("build_data", "build_data_buildid_name", "buildid", "name", unique=True)

    op.create_table(
        "steps",
        _id(),
        _int("number"),
        _str("name", 50),
        _ref("buildid", "builds.id", CASCADE),
        _int("started_at", nullable=True),
        _int("locks_acquired_at", nullable=True),
        _int("complete_at", nullable=True),
        _text("state_string"),
        _int("results", nullable=True),
        _text("urls_json"),
        _flag("hidden", "0"),
    )
    _index("steps", "steps_name", "buildid", "name", unique=True)
    _index("steps", "steps_number", "buildid", "number", unique=True)
    _index("steps", "steps_started_at", "started_at")

    op.create_table(
        "logs",
        _id(),
        _text("name"),
        _str("slug", 50),
        _ref("stepid", "steps.id", CASCADE),
        _flag("complete"),
        _int("num_lines"),
        _str("type", 1),
    )
    _index("logs", "logs_slug", "stepid", "slug", unique=True)

    op.create_table(
        "logchunks",
        _ref("logid", "logs.id", CASCADE),
        _int("first_line"),
        _int("last_line"),
        sa.Column("content", sa.LargeBinary(65536), nullable=True),
        _flag("compressed"),
    )
    _index("logchunks", "logchunks_firstline", "logid", "first_line")
    _index("logchunks", "logchunks_lastline", "logid", "last_line")

    op.create_table(
        "changes",
        _id("changeid"),
        _str("author", 255),
        _str("committer", 255, nullable=True),
        _text("comments"),
        _str("branch", 255, nullable=True),
        _str("revision", 255, nullable=True),
        _str("revlink", 256, nullable=True),
        _int("when_timestamp"),
        _str("category", 255, nullable=True),
        _str("repository", 512, default=""),
        _str("codebase", 256, default=""),
        _str("project", 512, default=""),
        _ref("sourcestampid", "sourcestamps.id", CASCADE),
        _ref("parent_changeids", "changes.changeid", SET_NULL, nullable=True),
    )
    for column in ("author", "branch", "category", "revision", "sourcestampid", "when_timestamp"):
        _index("changes", f"changes_{column}", column)

    op.create_table(
        "change_files",
        _ref("changeid", "changes.changeid", CASCADE),
        _str("filename", 1024),
    )
    _index("change_files", "change_files_changeid", "changeid")

    op.create_table(
        "change_properties",
        _ref("changeid", "changes.changeid", CASCADE),
        _str("property_name", 256),
        _text("property_value"),
    )
    _index("change_properties", "change_properties_changeid", "changeid")

    op.create_table(
        "change_users",
        _ref("changeid", "changes.changeid", CASCADE),
        _ref("uid", "users.uid", CASCADE),
    )
    _index("change_users", "change_users_changeid", "changeid")

    op.create_table(
        "schedulers",
        _id(),
        _text("name"),
        _str("name_hash", 40),
        _flag("enabled", "1", nullable=True),
    )
    _index("schedulers", "scheduler_name_hash", "name_hash", unique=True)

    op.create_table(
        "scheduler_masters",
        sa.Column(
            "schedulerid",
            sa.Integer(),
            sa.ForeignKey("schedulers.id", ondelete=CASCADE),
            primary_key=True,
        ),
        _ref("masterid", "masters.id", CASCADE),
    )

    op.create_table(
        "scheduler_changes",
        _ref("schedulerid", "schedulers.id", CASCADE),
        _ref("changeid", "changes.changeid", CASCADE),
        _int("important", nullable=True),
    )
    _index("scheduler_changes", "scheduler_changes_changeid", "changeid")
    _index("scheduler_changes", "scheduler_changes_schedulerid", "schedulerid")
    _index("scheduler_changes", "scheduler_changes_unique", "schedulerid", "changeid", unique=True)

    op.create_table(
        "changesources",
        _id(),
        _text("name"),
        _str("name_hash", 40),
    )
    _index("changesources", "changesource_name_hash", "name_hash", unique=True)

    op.create_table(
        "changesource_masters",
        sa.Column(
            "changesourceid",
            sa.Integer(),
            sa.ForeignKey("changesources.id", ondelete=CASCADE),
            primary_key=True,
        ),
        _ref("masterid", "masters.id", CASCADE),
    )

    op.create_table(
        "test_result_sets",
        _id(),
        _ref("builderid", "builders.id", CASCADE),
        _ref("buildid", "builds.id", CASCADE),
        _ref("stepid", "steps.id", CASCADE),
        _text("description", nullable=True),
        _text("category"),
        _text("value_unit"),
        _int("tests_passed", nullable=True),
        _int("tests_failed", nullable=True),
        _flag("complete"),
    )

    op.create_table(
        "test_names",
        _id(),
        _ref("builderid", "builders.id", CASCADE),
        _text("name"),
    )
    _index("test_names", "test_names_name", "builderid", "name")

    op.create_table(
        "test_code_paths",
        _id(),
        _ref("builderid", "builders.id", CASCADE),
        _text("path"),
    )
    _index("test_code_paths", "test_code_paths_path", "builderid", "path")

    op.create_table(
        "test_results",
        _id(),
        _ref("builderid", "builders.id", CASCADE),
        _ref("test_result_setid", "test_result_sets.id", CASCADE),
        _ref("test_nameid", "test_names.id", CASCADE, nullable=True),
        _ref("test_code_pathid", "test_code_paths.id", CASCADE, nullable=True),
        _int("line", nullable=True),
        _int("duration_ns", nullable=True),
        _text("value"),
    )


def downgrade() -> None:
    """Drop every table (and with it its indexes), children first."""
    if not _is_sqlite():
        for name, _column in _BUILDSET_BUILD_FKS:
            op.drop_constraint(name, "buildsets", type_="foreignkey")
    for table in reversed(_TABLES):
        op.drop_table(table)
