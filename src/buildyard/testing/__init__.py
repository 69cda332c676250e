"""Supported helpers for tests and benchmarks: real servers in temp dirs, fake clocks, probes.

Imported by tests and by e2e fixtures only; production code never imports it.
"""
