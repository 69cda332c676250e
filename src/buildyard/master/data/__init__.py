"""The data API: the single write path (``updates``) and the read side (``api``).

Every state change goes through :class:`~buildyard.master.data.updates.Updates`: one database
transaction, then its events on the message queue. Reads go through
:class:`~buildyard.master.data.api.DataAPI` with REST query semantics.

May import buildyard.master.db, mq, secrets, model and buildyard.common.
"""
