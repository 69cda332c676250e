"""``worker.LibVirtWorker`` against libvirt's ``test:///default`` driver, with the master in
this process.

The test driver keeps its domains in the memory of the process that opened it, so the master
runs in the test's process (a master in another process would see other domains), and its
"killed run" is shown by a domain left running with the master's identity in its metadata before
the master starts, as a killed run leaves it. The driver boots nothing: a thread plays the
machine, starting a buildyard-worker from the domain's ``<auth>`` metadata (the name, password
and master a real image's boot script reads) while the domain is active.
"""

from __future__ import annotations

import asyncio
import subprocess
import sys
import threading
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from buildyard.master.config.loader import load_master_config
from buildyard.master.db import migrate
from buildyard.master.master import BuildMaster
from buildyard.master.model.results import Results
from buildyard.master.workers.config import LatentMasterInfo
from buildyard.testing.postgres import free_port
from buildyard.testing.processes import end_popen, eventually

libvirt = pytest.importorskip("libvirt")

pytestmark = pytest.mark.e2e

URI = "test:///default"

CONFIG = """\
from buildyard.plugins import *
c = BuildmasterConfig = {{}}
def vm(name, **kw):
    return worker.LibVirtWorker(name, 'vm-secret', uri=util.Connection('test:///default'),
        masterFQDN='127.0.0.1', **kw)
c['protocols'] = {{'msgpack_experimental_v7': {{'port': {port}, 'interface': '127.0.0.1'}}}}
c['workers'] = [vm('vm1', build_wait_timeout=10), vm('vm-undefined'), vm('vm2'),
                vm('vm-orphan'), vm('vm-other'), vm('vm3'), vm('vm4')]
def builder(name, workers):
    return util.BuilderConfig(name=name, workernames=workers, collapseRequests=False,
        factory=util.BuildFactory([steps.ShellCommand(command='echo built')]))
c['builders'] = [builder('hello', ['vm1']), builder('pick', ['vm-undefined', 'vm2']),
                 builder('others', ['vm-orphan', 'vm-other']), builder('pair', ['vm3', 'vm4'])]
c['db'] = {{'db_url': 'sqlite:///state.sqlite'}}
"""


def _domain_xml(name: str) -> str:
    return (
        f"<domain type='test'><name>{name}</name><memory>65536</memory>"
        "<os><type>hvm</type></os></domain>"
    )


class Machines:
    """Plays the machines: a worker per active domain that has Buildbot's auth metadata."""

    def __init__(self, workdir: Path, port: int) -> None:
        self.workdir = workdir
        self.port = port
        self.conn = libvirt.open(URI)
        self.workers: dict[str, subprocess.Popen[bytes]] = {}
        self.boots: list[str] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._watch, daemon=True)

    def active(self, name: str) -> bool:
        try:
            return bool(self.conn.lookupByName(name).isActive())
        except libvirt.libvirtError:
            return False

    def _watch(self) -> None:
        conn = libvirt.open(URI)
        while not self._stop.wait(0.2):  # bounded by the fixture, which sets _stop
            for domain in conn.listAllDomains():
                name = domain.name()
                running = self.workers.get(name)
                if domain.isActive() and running is None:
                    try:
                        auth = domain.metadata(
                            libvirt.VIR_DOMAIN_METADATA_ELEMENT, "http://buildbot.net/", 0
                        )
                    except libvirt.libvirtError:
                        continue
                    self._boot(name, ET.fromstring(auth))
                elif not domain.isActive() and running is not None:
                    end_popen(self.workers.pop(name))
        conn.close()

    def _boot(self, domain: str, auth: ET.Element) -> None:
        master = f"{auth.get('master')}:{self.port}"
        basedir = self.workdir / f"{domain}-{len(self.boots)}"
        cli = [sys.executable, "-m", "buildyard.worker.cli"]
        argv = [*cli, "create-worker", "--quiet", str(basedir), master]
        subprocess.run([*argv, str(auth.get("username")), str(auth.get("password"))], check=True)
        self.boots.append(domain)
        self.workers[domain] = subprocess.Popen(
            [*cli, "start", "--nodaemon", str(basedir)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )


@pytest.fixture
def machines(tmp_path: Path) -> Iterator[Machines]:
    found = Machines(tmp_path / "machines", free_port())
    found._thread.start()
    try:
        yield found
    finally:
        found._stop.set()
        found._thread.join(timeout=30)
        for proc in found.workers.values():
            end_popen(proc)
        for domain in found.conn.listAllDomains():
            if domain.name().startswith("vm"):
                if domain.isActive():
                    domain.destroy()
                domain.undefine()
        found.conn.close()


async def _run(master: BuildMaster, builder: str) -> Any:
    updates = master.data.updates
    builderid = await updates.find_builder_id(builder)
    _bsid, brids = await updates.add_buildset(
        scheduler="test",
        sourcestamps=[
            {"branch": None, "revision": None, "repository": "", "project": "", "codebase": ""}
        ],
        reason="test",
        properties={},
        builderids=[builderid],
    )
    brid = brids[builderid]

    async def done() -> bool:
        request = await master.db.buildrequests.get_buildrequest(brid)
        return request is not None and request.complete

    await eventually(done, within=120, interval=0.2)
    (build,) = await master.db.builds.get_builds(buildrequestid=brid)
    return build


async def test_libvirt_latent_worker_lifecycle(tmp_path: Path, machines: Machines) -> None:
    basedir = tmp_path / "master"
    basedir.mkdir()
    (basedir / "master.cfg").write_text(CONFIG.format(port=machines.port))
    master = BuildMaster(basedir, config=load_master_config(basedir))
    identity = LatentMasterInfo(
        name=master.master_name, host="", msgpack_port=None, pb_port=None
    ).identity
    conn = machines.conn
    for name in ("vm1", "vm2", "vm3", "vm4", "vm-orphan", "vm-other"):
        conn.defineXML(_domain_xml(name))
    # what a killed run of this master leaves: a running domain with its identity; and one
    # another master started, which is not this master's to stop
    for name, owner in (("vm-orphan", identity), ("vm-other", "another-master")):
        domain = conn.lookupByName(name)
        domain.create()
        domain.setMetadata(
            libvirt.VIR_DOMAIN_METADATA_ELEMENT,
            f'<buildyard master="{owner}" worker="{name}"/>',
            "buildyard",
            "https://buildyard.invalid/latent",
            libvirt.VIR_DOMAIN_AFFECT_LIVE,
        )
    await migrate.upgrade(master.db)
    await master.start()
    try:
        # the orphan is destroyed when the master starts; the other master's domain stays
        await eventually(lambda: not machines.active("vm-orphan"), within=60)
        assert machines.active("vm-other")
        assert not machines.active("vm1")  # nothing before a build needs it

        # a build starts vm1 (the machine boots its worker from the domain's metadata)
        first = await _run(master, "hello")
        assert first.results == Results.SUCCESS
        assert machines.boots.count("vm1") == 1
        # a second within build_wait_timeout reuses it
        second = await _run(master, "hello")
        assert second.results == Results.SUCCESS
        assert machines.boots.count("vm1") == 1
        # idle past the timeout: destroyed
        await eventually(lambda: not machines.active("vm1"), within=120)

        # 'vm-undefined' has no domain: its start fails, it is quarantined, vm2 builds
        picked = await _run(master, "pick")
        assert picked.results == Results.SUCCESS
        worker = await master.db.workers.get_worker(picked.workerid)
        assert worker is not None and worker.name == "vm2"
        assert master.workers.latent.in_quarantine("vm-undefined")
        assert not machines.active("vm-undefined")

        # two requests waiting at once start two machines, one for each (the first machine
        # to connect may build both before the second has booted)
        pair = await asyncio.gather(_run(master, "pair"), _run(master, "pair"))
        assert [b.results for b in pair] == [Results.SUCCESS, Results.SUCCESS]
        await eventually(lambda: "vm3" in machines.boots and "vm4" in machines.boots, within=60)
        assert machines.boots.count("vm3") == machines.boots.count("vm4") == 1
    finally:
        await master.stop()
    # the master's stop destroys what it started
    assert not machines.active("vm2")
