"""Change sources: pollers and hooks that record changes through data.updates (issue 4).

Sees the system only through buildyard.master.data and mq (import-linter checks).
"""
