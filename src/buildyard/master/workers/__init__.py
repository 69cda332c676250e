"""Workers seen from the master: their configuration, and their live connections over
msgpack_experimental_v7 (issue 3: listener, connection) or PB (issue 13: pb).

May import buildyard.master.data, db, mq, model, buildyard.protocol and buildyard.common.
"""
