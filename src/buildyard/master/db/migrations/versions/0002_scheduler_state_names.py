"""Schedulers keep their state under Buildbot's object names: the bare class name.

Revision ID: 0002
Revises: 0001
Create Date: 2026-12-07

Buildbot keys a scheduler's saved state (a Nightly's ``last_build``, a scheduler's
``lastCodebases``) by ``objects(name, class_name)`` with the bare class name (``Nightly``);
buildyard used the qualified one (``buildbot.schedulers.timed.Nightly``), which Buildbot gives
the scheduler's service object, without state. A database adopted from Buildbot has both rows;
one made by buildyard had its state under the qualified name. The exception is Dependent, whose
``upstream_bsids`` Buildbot keeps under that service object, ``buildbot.schedulers.dependent.
Dependent`` (buildyard named its module ``basic``). Data only, no schema change: the state
moves, and where the object it moves to already exists (an adopted database) its own values win.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | None = None
depends_on: str | None = None

# the class names buildyard kept schedulers' state under, and Buildbot's
_MOVES = {
    "buildbot.schedulers.basic.SingleBranchScheduler": "SingleBranchScheduler",
    "buildbot.schedulers.basic.AnyBranchScheduler": "AnyBranchScheduler",
    "buildbot.schedulers.basic.Dependent": "buildbot.schedulers.dependent.Dependent",
    "buildbot.schedulers.timed.Periodic": "Periodic",
    "buildbot.schedulers.timed.Nightly": "Nightly",
    "buildbot.schedulers.timed.NightlyTriggerable": "NightlyTriggerable",
    "buildbot.schedulers.triggerable.Triggerable": "Triggerable",
    "buildbot.schedulers.forcesched.ForceScheduler": "ForceScheduler",
}

_objects = sa.table(
    "objects", sa.column("id", sa.Integer), sa.column("name"), sa.column("class_name")
)
_state = sa.table("object_state", sa.column("objectid", sa.Integer), sa.column("name"))


def upgrade() -> None:
    conn = op.get_bind()
    old_rows = conn.execute(
        sa.select(_objects.c.id, _objects.c.name, _objects.c.class_name).where(
            _objects.c.class_name.in_(list(_MOVES))
        )
    ).all()
    for old_id, name, old_class in old_rows:
        new_class = _MOVES[old_class]
        new_id = conn.execute(
            sa.select(_objects.c.id).where(
                _objects.c.name == name, _objects.c.class_name == new_class
            )
        ).scalar()
        if new_id is None:
            conn.execute(
                _objects.update().where(_objects.c.id == old_id).values(class_name=new_class)
            )
            continue
        taken = sa.select(_state.c.name).where(_state.c.objectid == new_id)
        conn.execute(
            _state.update()
            .where(_state.c.objectid == old_id, _state.c.name.not_in(taken))
            .values(objectid=new_id)
        )


def downgrade() -> None:
    """Nothing to undo in the schema; the state stays under the bare names (which the code of
    revision 0001 does not read: its schedulers start without saved state)."""
