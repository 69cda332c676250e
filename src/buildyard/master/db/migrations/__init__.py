"""Alembic migrations of the store: ``env.py``, the revision template and ``versions/``.

Run through :mod:`buildyard.master.db.migrate`, which builds the Alembic configuration in code
(there is no ``alembic.ini``). A change to :mod:`buildyard.master.db.schema` needs a new revision
here; ``tests/master/db/test_migrations.py`` fails until the two agree. To draft one, bring a
scratch database to head and let Alembic compare it with the metadata::

    from alembic import command
    from buildyard.master.db.migrate import alembic_config

    cfg = alembic_config("sqlite:////tmp/scratch.sqlite")
    command.upgrade(cfg, "head")
    command.revision(cfg, message="what changed", autogenerate=True, rev_id="0002")

then review the draft by hand (both backends: SQLite cannot ALTER constraints, use batch mode).
"""
