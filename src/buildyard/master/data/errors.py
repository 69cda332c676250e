"""Errors of the data API.

Tree::

    BuildyardError
    └── DataError
        ├── NotFound       no such path, or no such item (REST 404)
        └── InvalidQuery   a bad query argument or path value (REST 400)
"""

from buildyard.common.errors import BuildyardError


class DataError(BuildyardError):
    pass


class NotFound(DataError):
    pass


class InvalidQuery(DataError):
    pass
