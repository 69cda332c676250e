"""Events: (routing key tuple, body) published by data.updates, consumed by services and /ws.

May import buildyard.master.model and buildyard.common.
"""
