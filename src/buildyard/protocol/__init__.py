"""The master<->worker wire format: Buildbot's msgpack_experimental_v7 (issue 3).

May import buildyard.common only.
"""
