"""Pieces shared by master and worker: the service tree, the clock, logging, the root errors.

May import nothing from buildyard.
"""
