"""The commands a master can start on the worker; importing this registers all of them."""

from buildyard.worker.commands import fs, shell, transfer
from buildyard.worker.commands.base import REGISTRY, Command, create, execute, worker_commands

__all__ = ["REGISTRY", "Command", "create", "execute", "fs", "shell", "transfer", "worker_commands"]
