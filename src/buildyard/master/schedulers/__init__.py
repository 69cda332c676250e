"""Schedulers: turn changes, timers and force requests into buildsets (issue 4).

Sees the system only through buildyard.master.data and mq (import-linter checks).
"""
