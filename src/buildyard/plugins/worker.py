"""``worker``: ``Worker``, ``LocalWorker``, and the latent ``DockerLatentWorker``,
``EC2LatentWorker``, ``KubeLatentWorker``, ``LibVirtWorker`` and ``OpenStackLatentWorker``."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from buildyard.plugins._namespace import WORKERS, LazyNames

if TYPE_CHECKING:
    from buildyard.master.workers.config import LocalWorker, Worker
    from buildyard.master.workers.docker import DockerLatentWorker
    from buildyard.master.workers.ec2 import EC2LatentWorker
    from buildyard.master.workers.kubernetes import KubeLatentWorker
    from buildyard.master.workers.libvirt import LibVirtWorker
    from buildyard.master.workers.openstack import OpenStackLatentWorker

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

# Each name is resolved when master.cfg first uses it (buildyard.plugins._namespace.LazyNames):
# the implemented ones from these modules, the others as stand-ins until buildyard has them.
_LAZY = LazyNames(
    "worker",
    store=globals(),
    known=_NAMES,
    sources={
        "LocalWorker": "buildyard.master.workers.config",
        "Worker": "buildyard.master.workers.config",
        "DockerLatentWorker": "buildyard.master.workers.docker",
        "EC2LatentWorker": "buildyard.master.workers.ec2",
        "KubeLatentWorker": "buildyard.master.workers.kubernetes",
        "LibVirtWorker": "buildyard.master.workers.libvirt",
        "OpenStackLatentWorker": "buildyard.master.workers.openstack",
    },
    features=WORKERS,
)


def __getattr__(name: str) -> Any:
    return _LAZY.resolve(name)


def __dir__() -> list[str]:
    return _LAZY.names()
