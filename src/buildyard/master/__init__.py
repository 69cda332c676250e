"""The build master: everything that runs in the master process.

docs/architecture.md describes its services and layers.
"""
