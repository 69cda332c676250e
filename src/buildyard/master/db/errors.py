"""Database errors, translated from SQLAlchemy's at this package's boundary.

Tree::

    BuildyardError
    └── DbError                 any failure talking to the database
        ├── UnsupportedDatabase the db_url names a backend buildyard does not support
        ├── AlreadyClaimed      a claim lost the race to another master
        ├── NotClaimed          a completion for requests this master does not hold
        ├── BuildsetAlreadyComplete       completing a complete (or missing) buildset
        ├── TestResultSetAlreadyComplete  likewise for a test result set
        └── LogSlugExists       a step already has a log with that slug
"""

from buildyard.common.errors import BuildyardError


class DbError(BuildyardError):
    pass


class UnsupportedDatabase(DbError):
    pass


class AlreadyClaimed(DbError):
    pass


class NotClaimed(DbError):
    pass


class BuildsetAlreadyComplete(DbError):
    pass


class TestResultSetAlreadyComplete(DbError):
    __test__ = False  # not a pytest test class


class LogSlugExists(DbError):
    pass
