"""Errors of the wire protocol.

Tree::

    BuildyardError
    └── ProtocolError          a peer broke the protocol (bad frame, bad message)
        ├── RemoteError        the peer answered a request with is_exception
        └── ConnectionLost     the connection closed with requests still waiting
"""

from buildyard.common.errors import BuildyardError


class ProtocolError(BuildyardError):
    pass


class RemoteError(ProtocolError):
    pass


class ConnectionLost(ProtocolError):
    pass
