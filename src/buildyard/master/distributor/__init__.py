"""Build request distribution and the botmaster that owns the builders.

May import buildyard.master.builds, steps, workers, logs, data, db, mq, model and common.
"""
