"""Database access: async SQLAlchemy Core repositories returning model values.

May import buildyard.master.model and buildyard.common. No events, no business rules: those
live in buildyard.master.data, the only caller of the write methods here.
"""
