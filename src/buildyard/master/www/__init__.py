"""The web server: REST API (/api/v2), live events (/ws, issue 5), change hooks, the web UI.

Sees the system only through buildyard.master.data and mq (import-linter checks).
"""
