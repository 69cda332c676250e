"""``worker.LibVirtWorker`` and ``util.Connection``: a latent worker whose instance is a libvirt
domain (a virtual machine).

It uses the libvirt Python bindings, the optional extra ``buildyard[libvirt]``
(``libvirt-python``, which builds against the system's libvirt: Debian's ``libvirt-dev`` and
``pkg-config``), each call in a thread. Without them a configuration that builds a
``LibVirtWorker`` is a configuration error naming the extra.

As in Buildbot: with ``xml`` the domain is created from it (a transient domain); without, the
domain defined under the worker's name is started, after its metadata
(``<auth username= password= master=/>`` in the ``http://buildbot.net/`` namespace) tells the
machine how to log in. With ``base_image``, ``hd_image`` is first made a copy-on-write clone of
it (``qemu-img create``) and removed when the domain stops.

Each domain the master starts also carries ``<buildyard master="<identity>"/>`` metadata (in the
``https://buildyard.invalid/latent`` namespace): a master that was killed and restarted destroys
the running domain of each of its libvirt workers that still carries its identity.
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib
import os
import socket
import xml.etree.ElementTree as ET
from typing import Any
from xml.sax.saxutils import quoteattr

import structlog

from buildyard.common.config_object import ConfigObject
from buildyard.common.errors import config_error
from buildyard.master.workers.config import AbstractLatentWorker, LatentWorkerFailedToSubstantiate

log = structlog.get_logger(__name__)

__all__ = ["Connection", "LibVirtWorker"]

EXTRA = (
    "pip install 'buildyard[libvirt]' (it builds against libvirt: "
    "apt-get install libvirt-dev pkg-config)"
)
AUTH_NS = "http://buildbot.net/"
AUTH_KEY = "buildbot"
OWN_NS = "https://buildyard.invalid/latent"
OWN_KEY = "buildyard"


def _libvirt() -> Any:
    return importlib.import_module("libvirt")


class Connection(ConfigObject):
    """Buildbot's ``util.Connection(uri)``: a libvirt connection URI."""

    def __init__(self, uri: str) -> None:
        if not isinstance(uri, str) or not uri:
            config_error("util.Connection: uri must be a libvirt URI such as 'qemu:///system'")
        self.uri = uri


class LibVirtWorker(AbstractLatentWorker):
    """Buildbot's ``LibVirtWorker(name, password, hd_image=None, base_image=None,
    uri='system:///', xml=None, masterFQDN=None)``; ``uri`` may also be a ``util.Connection``."""

    def __init__(  # noqa: PLR0917 - Buildbot's arguments
        self,
        name: str,
        password: object,
        hd_image: str | None = None,
        base_image: str | None = None,
        uri: object = "system:///",
        xml: str | None = None,
        masterFQDN: str | None = None,  # noqa: N803 - Buildbot's keyword
        **kwargs: Any,
    ) -> None:
        super().__init__(name, password, **kwargs)
        label = f"worker {self.name!r}"
        self.uri: Any = uri.uri if isinstance(uri, Connection) else uri
        self.image = hd_image
        self.base_image = base_image
        self.xml = xml
        self.masterFQDN = masterFQDN or socket.getfqdn()
        self.cheap_copy = True
        self.graceful_shutdown = False
        self._started = False
        try:
            _libvirt()
        except ImportError:
            config_error(
                f"{label}: LibVirtWorker needs the libvirt bindings, not installed: {EXTRA}"
            )
            return
        if not isinstance(self.uri, str):
            config_error(f"{label}: uri must be a string or a util.Connection")
        if base_image is not None and hd_image is None:
            config_error(f"{label}: base_image needs hd_image, the clone to boot")
        if xml is not None:
            try:
                ET.fromstring(xml)
            except ET.ParseError as exc:
                config_error(f"{label}: xml is not a libvirt domain definition: {exc}")

    # -- libvirt, in threads --------------------------------------------------------------------

    def _open(self) -> Any:
        return _libvirt().open(self.uri)

    def _domain_name(self) -> str:
        if self.xml is not None:
            name = ET.fromstring(self.xml).findtext("name")
            if name:
                return name
        return self.name

    def _own_metadata(self) -> str:
        assert self.master_info is not None
        return (
            f"<buildyard master={quoteattr(self.master_info.identity)} "
            f"worker={quoteattr(self.name)}/>"
        )

    def _auth_metadata(self) -> str:
        """Buildbot's ``<auth username= password= master=/>``, each value escaped: a password
        with ``"``, ``&`` or ``<`` is given to the machine as it is, never as broken XML."""
        return (
            f"<auth username={quoteattr(self.name)} password={quoteattr(str(self.login_password))} "
            f"master={quoteattr(str(self.masterFQDN))}/>"
        )

    def _thd_active(self, conn: Any) -> Any:
        libvirt = _libvirt()
        try:
            domain = conn.lookupByName(self._domain_name())
        except libvirt.libvirtError:
            return None
        return domain if domain.isActive() else None

    def _thd_start(self) -> None:
        libvirt = _libvirt()
        conn = self._open()
        try:
            if self._thd_active(conn) is not None:
                raise LatentWorkerFailedToSubstantiate(
                    f"domain {self._domain_name()!r} is already running"
                )
            try:
                if self.xml is not None:
                    domain = conn.createXML(self.xml, 0)
                    flags = libvirt.VIR_DOMAIN_AFFECT_LIVE
                else:
                    domain = conn.lookupByName(self.name)
                    flags = libvirt.VIR_DOMAIN_AFFECT_CONFIG
                    domain.setMetadata(
                        libvirt.VIR_DOMAIN_METADATA_ELEMENT,
                        self._auth_metadata(),
                        AUTH_KEY,
                        AUTH_NS,
                        flags,
                    )
                    domain.setMetadata(
                        libvirt.VIR_DOMAIN_METADATA_ELEMENT,
                        self._own_metadata(),
                        OWN_KEY,
                        OWN_NS,
                        flags,
                    )
                    domain.create()
                    return
                domain.setMetadata(
                    libvirt.VIR_DOMAIN_METADATA_ELEMENT,
                    self._own_metadata(),
                    OWN_KEY,
                    OWN_NS,
                    flags,
                )
            except libvirt.libvirtError as exc:
                raise LatentWorkerFailedToSubstantiate(f"starting the domain: {exc}") from exc
        finally:
            conn.close()

    def _thd_stop(self, fast: bool) -> None:
        conn = self._open()
        try:
            domain = self._thd_active(conn)
            if domain is None:
                log.info("libvirt_domain_not_running", worker=self.name)
            elif self.graceful_shutdown and not fast:
                try:
                    domain.shutdown()
                except Exception as exc:
                    log.info("libvirt_shutdown_failed", worker=self.name, error=str(exc))
                    domain.destroy()
            else:
                domain.destroy()
        finally:
            conn.close()
        if self.base_image and self.image:
            with contextlib.suppress(FileNotFoundError):
                os.remove(self.image)

    def _thd_orphans(self) -> int:
        libvirt = _libvirt()
        conn = self._open()
        try:
            domain = self._thd_active(conn)
            if domain is None:
                return 0
            try:
                mine = domain.metadata(libvirt.VIR_DOMAIN_METADATA_ELEMENT, OWN_NS, 0)
            except libvirt.libvirtError:
                return 0  # not started by a buildyard master
            assert self.master_info is not None
            if ET.fromstring(mine).get("master") != self.master_info.identity:
                return 0
            domain.destroy()
            log.warning("libvirt_orphan_destroyed", worker=self.name, domain=domain.name())
            return 1
        finally:
            conn.close()

    # -- lifecycle ------------------------------------------------------------------------------

    async def _prepare_base_image(self) -> None:
        if not self.base_image:
            return
        assert self.image is not None
        if self.cheap_copy:
            argv = ["qemu-img", "create", "-o", "backing_fmt=qcow2", "-b", self.base_image]
            argv += ["-f", "qcow2", self.image]
        else:
            argv = ["cp", self.base_image, self.image]
        log.info("libvirt_cloning_base_image", worker=self.name, command=argv)
        proc = await asyncio.create_subprocess_exec(
            *argv, stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.PIPE
        )
        _, err = await proc.communicate()
        if proc.returncode != 0:
            raise LatentWorkerFailedToSubstantiate(
                f"failed to clone image (rc={proc.returncode}): {err.decode(errors='replace')}"
            )

    async def start_instance(self, build: Any) -> bool:
        await self._prepare_base_image()
        self._started = True
        await asyncio.to_thread(self._thd_start)
        return True

    async def stop_instance(self, fast: bool = False) -> None:
        if not self._started:
            return
        self._started = False
        await asyncio.to_thread(self._thd_stop, fast)

    async def check_instance(self) -> tuple[bool, str]:
        def active() -> bool:
            conn = self._open()
            try:
                return self._thd_active(conn) is not None
            finally:
                conn.close()

        if self._started and not await asyncio.to_thread(active):
            return False, f"domain {self._domain_name()!r} is not running"
        return True, ""

    async def cleanup_orphans(self) -> int:
        return await asyncio.to_thread(self._thd_orphans)
