"""The build master: everything that runs in the master process. See DESIGN.md for its layers."""
