"""Reporters: read-only consumers of build and buildset events (none is implemented yet;
master.cfg's ``reporters`` names report that by name).

Sees the system only through buildyard.master.data and mq (import-linter checks)."""
