"""The ``buildyard`` command line. The top layer: may import anything in buildyard."""
