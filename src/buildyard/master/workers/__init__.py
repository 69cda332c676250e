"""Workers seen from the master: their configuration, and (issue 3) their live connections.

May import buildyard.master.data, db, mq, model, buildyard.protocol and buildyard.common.
"""
