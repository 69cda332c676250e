"""Two partial indexes for the housekeeping: the builds still running, by master
(``builds_running_masterid``), and the logs whose lines are kept (``logs_kept``).

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-07

When a master stops or is expired, its unfinished builds are finished RETRY
(``MastersRepository.deactivation_cleanup``). They were found through Buildbot's
``builds_masterid`` index, which holds every build the master ever ran: with a long history
the cleanup read 100,000 rows to find the two still running. This index is partial, on
``masterid`` where ``complete_at IS NULL`` (SQLite and PostgreSQL both have partial indexes), so
it holds the running builds only: the cleanup reads as many rows as there are running builds,
and the index costs one entry while a build runs.

The janitor (``util.JanitorConfigurator``'s ``logHorizon``) deletes the lines of old logs and
marks them deleted (type ``d``); the logs stay. It found the logs to delete from every step
older than the horizon, which is the whole history again. ``logs_kept`` holds the ids of the
logs not yet deleted (partial, ``type != 'd'``), so a run reads the logs whose lines are kept
and each one's step.

Buildbot 4.3 has neither; they are the indexes buildyard adds to Buildbot's schema (an adopted
Buildbot database gets them here, after :mod:`buildyard.master.db.adopt` has compared its
tables with revision 0001's).
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | None = None
depends_on: str | None = None

_RUNNING = sa.text("complete_at IS NULL")
_KEPT = sa.text("type != 'd'")


def upgrade() -> None:
    op.create_index(
        "builds_running_masterid",
        "builds",
        ["masterid"],
        sqlite_where=_RUNNING,
        postgresql_where=_RUNNING,
    )
    op.create_index("logs_kept", "logs", ["id"], sqlite_where=_KEPT, postgresql_where=_KEPT)


def downgrade() -> None:
    op.drop_index("logs_kept", table_name="logs")
    op.drop_index("builds_running_masterid", table_name="builds")
