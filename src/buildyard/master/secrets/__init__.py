"""Secrets: the providers of ``c['secretsProviders']`` and the lookup builds render with.

May import buildyard.master.model and buildyard.common."""
