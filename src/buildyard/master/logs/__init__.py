"""Step logs: the writer that turns command output into stored lines, and log observers.

May import buildyard.master.data, db, mq, secrets, model, buildyard.protocol and
buildyard.common."""
