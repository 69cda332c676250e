"""buildyard-worker: connects to a master and runs its commands (issue 3).

May import buildyard.common and buildyard.protocol; never buildyard.master.
"""
