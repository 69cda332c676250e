"""Pure domain values (frozen dataclasses and enums), no IO. May import buildyard.common only."""
