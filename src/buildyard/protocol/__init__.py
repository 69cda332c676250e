"""The master<->worker wire formats: Buildbot's msgpack_experimental_v7 (issue 3: codec, peer)
and Twisted's Perspective Broker (issue 13: banana, jelly, pb), written without Twisted.

May import buildyard.common only.
"""
