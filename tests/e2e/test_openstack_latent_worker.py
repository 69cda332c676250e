"""``worker.OpenStackLatentWorker`` with a real master process, against an OpenStack cloud.

No cloud runs here, so Keystone, Nova and Glance are :mod:`buildyard.testing.openstack_cloud`: a
server shaped like their documented APIs whose servers are real processes, the image's
entrypoint a real buildyard-worker started from the server's metadata (as an image's boot script
reading the metadata service would).

One master shows the lifecycle: a build starts a server on demand (Keystone v3 password auth
with user and project domains, the flavor and image found by name, the volume size of a block
device taken from the image, ``nova_args`` translated as novaclient does, a Nova microversion);
a second build within ``build_wait_timeout`` reuses it; idle past the timeout it is deleted; a
worker whose project's quota is exhausted fails its start (Nova's 403) and goes into quarantine
while the request runs on a spare worker, whose image a callable chooses. A second master is
SIGKILLed with a server running and restarted: the server its first run left is deleted. Side
by side, the same master.cfg on stock Buildbot 4.3.0 (novaclient and keystoneauth1) and on
buildyard, with the stock buildbot-worker over PB in the server, boots the same server.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from buildyard.testing.latent import (
    LatentMaster,
    alive,
    stand_in,
    stock_worker_command,
    twin_build,
    worker_command,
)
from buildyard.testing.openstack_cloud import image_id
from buildyard.testing.postgres import free_port
from buildyard.testing.processes import ended_at_exit, wait_for

pytestmark = pytest.mark.e2e

PASSWORD = "openstack-worker-secret"

HEAD = """\
from buildyard.plugins import *
c = BuildmasterConfig = {{}}
worker.OpenStackLatentWorker._poll_resolution = 0.5  # the stand-in builds in half a second

def newest(images):
    return sorted(images, key=lambda i: i.created_at)[-1]

def nova(name, user='ci', image='worker-image', **kw):
    meta = {{'BUILDMASTER': '127.0.0.1', 'BUILDMASTER_PORT': '{port}', 'WORKERNAME': name,
            'WORKERPASS': {password!r}}}
    return worker.OpenStackLatentWorker(name, {password!r}, 'm1.small', image=image,
        os_auth_url='http://127.0.0.1:{cloud}/identity', os_username=user,
        os_password=util.Interpolate('{{}}-pw'.format(user)), os_tenant_name=user + '-project',
        os_user_domain='Default', os_project_domain='Default', region='RegionOne',
        meta=meta, **kw)
"""


class Cloud:
    def __init__(self, port: int, proc: subprocess.Popen[bytes]) -> None:
        self.port = port
        self.proc = proc

    def get(self, path: str) -> Any:
        with urllib.request.urlopen(f"http://127.0.0.1:{self.port}{path}", timeout=30) as resp:
            return json.loads(resp.read())

    def servers(self, worker: str) -> list[dict[str, Any]]:
        return [s for s in self.get("/_fake/servers") if s["name"] == worker]

    def created(self, worker: str) -> list[dict[str, Any]]:
        return [
            r
            for r in self.get("/_fake/requests")
            if r["method"] == "POST"
            and r["path"].endswith("/servers")
            and r["body"]["server"]["name"] == worker
        ]


@pytest.fixture(scope="module")
def cloud(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cloud]:
    state = tmp_path_factory.mktemp("openstack")
    port = free_port()
    entry = json.dumps(worker_command(sys.executable))
    argv = [sys.executable, "-m", "buildyard.testing.openstack_cloud", "--port", str(port)]
    argv += ["--state", str(state / "servers"), "--flavor", "m1.tiny", "--flavor", "m1.small"]
    # in order of creation: worker-image is the newest (the 'spare' worker's function picks it)
    argv += ["--image", f"stock-worker-image={json.dumps(stock_worker_command())}"]
    argv += ["--image", f"old-image={entry}", "--image", f"worker-image={entry}"]
    argv += ["--user", "ci:ci-pw:ci-project", "--user", "full:full-pw:full-project:0"]
    with stand_in(argv, state / "cloud.log") as proc:
        yield Cloud(port, proc)


def _head(master: LatentMaster, cloud: Cloud) -> str:
    return HEAD.format(port=master.port, password=PASSWORD, cloud=cloud.port)


def test_openstack_latent_worker_lifecycle(tmp_path: Path, cloud: Cloud) -> None:
    master = LatentMaster(tmp_path / "master")
    worker_image = image_id("worker-image")
    master.configure(
        _head(master, cloud),
        [
            "nova('vm', build_wait_timeout=10, client_version='2.52', "
            f"block_devices=[{{'uuid': {worker_image!r}}}], "
            "nova_args={'nics': [{'net-id': 'net-1'}], 'key_name': 'ci', "
            "'security_groups': ['builders']})",
            "nova('full', user='full')",
            "nova('spare', image=newest, build_wait_timeout=0)",
        ],
        {"hello": ["vm"], "pick": ["full", "spare"]},
    )
    with ended_at_exit(master.pids):
        master.start()
        assert cloud.servers("vm") == []  # nothing runs before a build needs it

        # a build starts a server; its worker connects and builds
        hello = master.force("hello")
        (first,) = master.finished(hello, 1)
        assert first["results"] == 0, master.log()[-4000:]
        assert master.worker_of(first) == "vm"
        (server,) = cloud.servers("vm")
        assert server["status"] == "ACTIVE"
        (create,) = cloud.created("vm")
        body = create["body"]["server"]
        assert body["flavorRef"] == "2"  # m1.small, found by name
        assert body["imageRef"] == worker_image  # found by name
        assert body["networks"] == [{"uuid": "net-1"}]
        assert body["security_groups"] == [{"name": "builders"}]
        assert body["key_name"] == "ci"
        # Buildbot's block device defaults; the size: the image's, rounded up to GiB
        assert body["block_device_mapping_v2"] == [
            {
                "device_name": "vda",
                "source_type": "image",
                "destination_type": "volume",
                "delete_on_termination": True,
                "uuid": worker_image,
                "boot_index": 0,
                "volume_size": 3,
            }
        ]
        assert body["metadata"]["WORKERNAME"] == "vm"
        assert "BUILDBOT:instance" in body["metadata"]
        assert "buildyard:master" in body["metadata"]
        assert create["headers"]["OpenStack-API-Version"] == "compute 2.52"
        tokens = [r for r in cloud.get("/_fake/requests") if r["path"].endswith("/auth/tokens")]
        user = tokens[0]["body"]["auth"]["identity"]["password"]["user"]
        assert (user["name"], user["domain"]) == ("ci", {"name": "Default"})
        assert tokens[0]["body"]["auth"]["scope"]["project"]["name"] == "ci-project"

        # a second build within build_wait_timeout reuses it
        master.force("hello")
        assert [b["results"] for b in master.finished(hello, 2)] == [0, 0]
        assert len(cloud.created("vm")) == 1
        assert [s["id"] for s in cloud.servers("vm")] == [server["id"]]

        # idle past build_wait_timeout: deleted
        assert wait_for(lambda: cloud.servers("vm") == [], timeout=120), master.log()[-3000:]

        # the project of 'full' has no instance left: Nova's 403 fails its start, it is
        # quarantined, and the request runs on 'spare', whose image the function chose
        # (build_wait_timeout 0: its server goes after the build)
        pick = master.force("pick")
        (picked,) = master.finished(pick, 1)
        assert picked["results"] == 0, master.log()[-4000:]
        assert master.worker_of(picked) == "spare"
        failed = master.failures("full")
        assert any("403 Quota exceeded for instances" in line for line in failed), failed
        assert any("latent_worker_quarantined" in line for line in failed), failed
        assert cloud.servers("full") == []
        (spare,) = cloud.created("spare")
        assert spare["body"]["server"]["imageRef"] == worker_image  # the newest image
        assert wait_for(lambda: cloud.servers("spare") == [], timeout=120)

        master.stop()


def test_a_restarted_master_deletes_the_servers_its_killed_run_left(
    tmp_path: Path, cloud: Cloud
) -> None:
    master = LatentMaster(tmp_path / "master")
    master.configure(
        _head(master, cloud), ["nova('keeper', build_wait_timeout=-1)"], {"keep": ["keeper"]}
    )
    with master.spawned():
        master.spawn()
        keep = master.force("keep")
        (build,) = master.finished(keep, 1)
        assert build["results"] == 0, master.log()[-4000:]
        (server,) = cloud.servers("keeper")
        assert server["pid"]

        master.sigkill()
        assert cloud.servers("keeper")[0]["status"] == "ACTIVE"  # left behind

        master.spawn()
        assert wait_for(lambda: cloud.servers("keeper") == [], timeout=120), master.log()[-3000:]
        assert not alive(server["pid"])
        assert "openstack_orphan_deleted" in master.log()
        assert master.end() == 0


# The same worker for both masters: the stock buildbot-worker, over PB, in the server.
TWIN_CONFIG = """\
from buildbot.plugins import *
c = BuildmasterConfig = {{}}
worker.OpenStackLatentWorker._poll_resolution = 1
c['protocols'] = {{'pb': {{'port': 'tcp:{pb}:interface=127.0.0.1'}}}}
meta = {{'BUILDMASTER': '127.0.0.1', 'BUILDMASTER_PORT': '{pb}', 'WORKERNAME': 'twin',
        'WORKERPASS': {password!r}}}
c['workers'] = [worker.OpenStackLatentWorker('twin', {password!r}, 'm1.small',
    image='stock-worker-image', os_auth_url='http://127.0.0.1:{cloud}/identity',
    os_username='ci', os_password='ci-pw', os_tenant_name='ci-project',
    os_user_domain='Default', os_project_domain='Default', region='RegionOne', meta=meta,
    build_wait_timeout=0)]
c['builders'] = [util.BuilderConfig(name='hello', workernames=['twin'],
    factory=util.BuildFactory([steps.ShellCommand(command='echo twin')]))]
c['schedulers'] = [schedulers.ForceScheduler(name='force', builderNames=['hello'])]
c['www'] = {{'port': 'tcp:{www}:interface=127.0.0.1'}}
c['db'] = {{'db_url': 'sqlite:///state.sqlite'}}
"""


def _twin_build(kind: str, basedir: Path, cloud: Cloud) -> list[dict[str, Any]]:
    """Run one build of TWIN_CONFIG on a ``kind`` master; the cloud requests it made."""
    before = len(cloud.get("/_fake/requests"))
    www = free_port()
    config = TWIN_CONFIG.format(pb=free_port(), password=PASSWORD, cloud=cloud.port, www=www)
    # build_wait_timeout 0 in both: the server goes after the build
    twin_build(kind, basedir, config, www, lambda: cloud.servers("twin") == [])
    return list(cloud.get("/_fake/requests"))[before:]


def test_openstack_latent_worker_side_by_side_with_buildbot(tmp_path: Path, cloud: Cloud) -> None:
    """The same master.cfg on stock Buildbot 4.3.0 and on buildyard, against the same cloud:
    each builds on a fresh server running the stock worker, and the servers are alike."""
    seen = {kind: _twin_build(kind, tmp_path / kind, cloud) for kind in ("buildbot", "buildyard")}
    bodies = {}
    for kind, requests in seen.items():
        (create,) = [
            r for r in requests if r["method"] == "POST" and r["path"].endswith("/servers")
        ]
        bodies[kind] = create["body"]["server"]
        # both delete it after the build
        assert any(
            r["method"] == "DELETE"
            and re.fullmatch(r"/compute/v2\.1/servers/[-0-9a-f]{36}", r["path"])
            for r in requests
        ), requests
    stock, ours = bodies["buildbot"], bodies["buildyard"]
    for key in ("name", "imageRef", "flavorRef"):
        assert stock[key] == ours[key], key
    assert ours["imageRef"] == image_id("stock-worker-image")
    assert ours["flavorRef"] == "2"
    assert re.fullmatch(r"[0-9a-f]{6}", stock["metadata"]["BUILDBOT:instance"])
    assert re.fullmatch(r"[0-9a-f]{6}", ours["metadata"]["BUILDBOT:instance"])
    # on purpose: buildyard also records the master's identity to find its servers after a kill
    assert set(ours["metadata"]) - set(stock["metadata"]) == {"buildyard:master"}
    assert "block_device_mapping_v2" not in ours or not ours["block_device_mapping_v2"]
    assert not stock.get("block_device_mapping_v2")
