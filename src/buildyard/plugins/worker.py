"""``worker``: ``Worker``, ``LocalWorker``, and the latent ``DockerLatentWorker``,
``EC2LatentWorker``, ``KubeLatentWorker``, ``LibVirtWorker`` and ``OpenStackLatentWorker``."""

from __future__ import annotations

from typing import Any

from buildyard.master.workers.config import LocalWorker, Worker
from buildyard.master.workers.docker import DockerLatentWorker
from buildyard.master.workers.ec2 import EC2LatentWorker
from buildyard.master.workers.kubernetes import KubeLatentWorker
from buildyard.master.workers.libvirt import LibVirtWorker
from buildyard.master.workers.openstack import OpenStackLatentWorker
from buildyard.plugins._namespace import WORKERS, placeholders, unknown_name

__all__ = [
    "DockerLatentWorker",
    "EC2LatentWorker",
    "KubeLatentWorker",
    "LibVirtWorker",
    "LocalWorker",
    "OpenStackLatentWorker",
    "Worker",
]

# Buildbot 4.3's names in this namespace.
_NAMES = [
    "Worker",
    "DockerLatentWorker",
    "EC2LatentWorker",
    "KubeLatentWorker",
    "LibVirtWorker",
    "LocalWorker",
    "OpenStackLatentWorker",
]

# Every name not imported above is a stand-in until buildyard implements it.
globals().update(placeholders("worker", {n: WORKERS for n in _NAMES if n not in globals()}))


def __getattr__(name: str) -> Any:
    raise unknown_name("worker", name, _NAMES)
