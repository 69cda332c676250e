"""Secrets: the providers of ``c['secretsProviders']`` (:mod:`.providers`) and the redaction
that hides the values builds used wherever the master stores or shows text
(:mod:`.redaction`).

May import buildyard.master.model and buildyard.common.
"""
