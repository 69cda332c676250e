"""``worker.KubeLatentWorker`` with a real master process, against a Kubernetes API.

No cluster runs here, so the API server is :mod:`buildyard.testing.kube_api`: a server shaped
like the core v1 pod API whose pods' containers are real processes, the image's entrypoint a
real buildyard-worker that connects to the master with the environment the pod spec gives it.

One master shows the lifecycle: a build starts a pod on demand (the request waits); a second
build within ``build_wait_timeout`` reuses it; idle past the timeout it is deleted; a worker
whose image cannot be pulled fails its start and goes into quarantine while the request runs on
a spare worker. A second master is SIGKILLed with a pod running and restarted: the pod its first
run left is found by its labels and deleted. Side by side, the same master.cfg on stock
Buildbot 4.3.0 and on buildyard, with the stock buildbot-worker over PB in the pod, creates the
same pod.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
import urllib.parse
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
from buildyard.testing.postgres import free_port
from buildyard.testing.processes import ended_at_exit, wait_for

pytestmark = pytest.mark.e2e

IMAGE = "registry.local/buildyard-worker:1"
STOCK_IMAGE = "buildbot/buildbot-worker:4.3.0"
TOKEN = "kube-test-token"

HEAD = """\
from buildyard.plugins import *
c = BuildmasterConfig = {{}}
cluster = util.KubeHardcodedConfig(master_url='http://127.0.0.1:{api}',
    bearerToken=util.Interpolate('{token}'), namespace='ci')

class SizedKubeWorker(worker.KubeLatentWorker):
    async def getBuildContainerResources(self, build):
        return {{'limits': {{'cpu': '1', 'memory': '1Gi'}}}}

def kube(name, image={image!r}, cls=worker.KubeLatentWorker, **kw):
    return cls(name, image=image, kube_config=cluster, masterFQDN='127.0.0.1',
        master_protocol='msgpack', **kw)
"""


class Api:
    def __init__(self, port: int, proc: subprocess.Popen[bytes]) -> None:
        self.port = port
        self.proc = proc

    def get(self, path: str) -> Any:
        req = urllib.request.Request(
            f"http://127.0.0.1:{self.port}{path}", headers={"Authorization": f"Bearer {TOKEN}"}
        )
        with urllib.request.urlopen(req, timeout=30) as resp:
            return json.loads(resp.read())

    def pods(self, worker: str, namespace: str = "ci") -> list[dict[str, Any]]:
        query = urllib.parse.quote(f"buildyard.worker={worker}")
        found = self.get(f"/api/v1/namespaces/{namespace}/pods?labelSelector={query}")
        return list(found["items"])

    def created(self, worker: str) -> list[dict[str, Any]]:
        """The pod specs posted for ``worker`` so far."""
        return [
            r["body"]
            for r in self.get("/_fake/requests")
            if r["method"] == "POST"
            and r["path"].endswith("/pods")
            and r["body"]["metadata"]["labels"].get("buildyard.worker") == worker
        ]

    def pids(self) -> list[int]:
        return [pid for pod in self.get("/_fake/pods") for pid in pod["pids"].values()]


@pytest.fixture(scope="module")
def kube_api(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Api]:
    state = tmp_path_factory.mktemp("kube")
    port = free_port()
    entry = json.dumps(worker_command(sys.executable))
    argv = [sys.executable, "-m", "buildyard.testing.kube_api", "--port", str(port)]
    argv += ["--state", str(state / "pods"), "--image", f"{IMAGE}={entry}", "--token", TOKEN]
    argv += ["--image", f"{STOCK_IMAGE}={json.dumps(stock_worker_command())}"]
    with stand_in(argv, state / "api.log") as proc:
        yield Api(port, proc)


def _head(api: Api) -> str:
    return HEAD.format(api=api.port, token=TOKEN, image=IMAGE)


def test_kube_latent_worker_lifecycle(tmp_path: Path, kube_api: Api) -> None:
    master = LatentMaster(tmp_path / "master")
    master.configure(
        _head(kube_api),
        [
            "kube('pod', cls=SizedKubeWorker, build_wait_timeout=10)",
            "kube('broken', image='registry.local/nowhere:0', check_instance_interval=1)",
            "kube('spare')",
        ],
        {"hello": ["pod"], "pick": ["broken", "spare"]},
    )
    with ended_at_exit(master.pids):
        master.start()
        assert kube_api.pods("pod") == []  # nothing runs before a build needs it

        # a build starts a pod; its worker connects and builds
        hello = master.force("hello")
        (first,) = master.finished(hello, 1)
        assert first["results"] == 0, master.log()[-4000:]
        assert master.worker_of(first) == "pod"
        assert "built by pod" in master.output(first)
        (pod,) = kube_api.pods("pod")
        assert pod["status"]["phase"] == "Running"
        assert pod["metadata"]["name"].startswith("buildbot-pod-")
        assert "buildyard.master" in pod["metadata"]["labels"]
        (spec,) = kube_api.created("pod")
        (container,) = spec["spec"]["containers"]
        assert container["image"] == IMAGE
        assert container["resources"] == {"limits": {"cpu": "1", "memory": "1Gi"}}  # the hook
        env = {e["name"]: e["value"] for e in container["env"]}
        assert env["WORKERNAME"] == "pod"
        assert (env["BUILDMASTER"], env["BUILDMASTER_PORT"]) == ("127.0.0.1", str(master.port))
        assert spec["spec"]["restartPolicy"] == "Never"
        # the loader's bearer token on every call
        calls = [r for r in kube_api.get("/_fake/requests") if "/namespaces/ci/" in r["path"]]
        assert calls
        assert {r["authorization"] for r in calls} == {f"Bearer {TOKEN}"}

        # a second build within build_wait_timeout reuses it
        master.force("hello")
        assert [b["results"] for b in master.finished(hello, 2)] == [0, 0]
        assert len(kube_api.created("pod")) == 1
        assert [p["metadata"]["uid"] for p in kube_api.pods("pod")] == [pod["metadata"]["uid"]]

        # idle past build_wait_timeout: deleted
        assert wait_for(lambda: kube_api.pods("pod") == [], timeout=120), master.log()[-3000:]

        # 'broken' cannot pull its image: its start fails, it is quarantined, the request
        # runs on 'spare' (whose pod goes after the build: build_wait_timeout 0)
        pick = master.force("pick")
        (picked,) = master.finished(pick, 1)
        assert picked["results"] == 0, master.log()[-4000:]
        assert master.worker_of(picked) == "spare"
        failed = master.failures("broken")
        assert any("ErrImagePull" in line for line in failed), failed
        assert any("latent_worker_quarantined" in line for line in failed), failed
        assert kube_api.pods("broken") == []  # a failed start leaves no pod
        assert wait_for(lambda: kube_api.pods("spare") == [], timeout=120)

        master.stop()


def test_a_restarted_master_deletes_the_pods_its_killed_run_left(
    tmp_path: Path, kube_api: Api
) -> None:
    master = LatentMaster(tmp_path / "master")
    master.configure(
        _head(kube_api), ["kube('keeper', build_wait_timeout=-1)"], {"keep": ["keeper"]}
    )
    with master.spawned():
        master.spawn()
        keep = master.force("keep")
        (build,) = master.finished(keep, 1)
        assert build["results"] == 0, master.log()[-4000:]
        assert len(kube_api.pods("keeper")) == 1
        pids = kube_api.pids()
        assert pids

        master.sigkill()
        assert kube_api.pods("keeper")[0]["status"]["phase"] == "Running"  # left behind

        master.spawn()
        assert wait_for(lambda: kube_api.pods("keeper") == [], timeout=120), master.log()[-3000:]
        assert not any(alive(pid) for pid in pids)
        assert "kube_orphan_deleted" in master.log()
        assert master.end() == 0


# The same worker for both masters: the stock buildbot-worker, over PB, in the pod.
TWIN_CONFIG = """\
from buildbot.plugins import *
c = BuildmasterConfig = {{}}
c['protocols'] = {{'pb': {{'port': 'tcp:{pb}:interface=127.0.0.1'}}}}
c['workers'] = [worker.KubeLatentWorker('twin', image={image!r}, masterFQDN='127.0.0.1',
    kube_config=util.KubeHardcodedConfig(master_url='http://127.0.0.1:{api}',
        bearerToken={token!r}, namespace='ci'))]
c['builders'] = [util.BuilderConfig(name='hello', workernames=['twin'],
    factory=util.BuildFactory([steps.ShellCommand(command='echo twin')]))]
c['schedulers'] = [schedulers.ForceScheduler(name='force', builderNames=['hello'])]
c['www'] = {{'port': 'tcp:{www}:interface=127.0.0.1'}}
c['db'] = {{'db_url': 'sqlite:///state.sqlite'}}
"""


def _twin_build(kind: str, basedir: Path, kube: Api) -> list[dict[str, Any]]:
    """Run one build of TWIN_CONFIG on a ``kind`` master; the API requests it made."""
    before = len(kube.get("/_fake/requests"))
    www = free_port()
    config = TWIN_CONFIG.format(
        pb=free_port(), image=STOCK_IMAGE, api=kube.port, token=TOKEN, www=www
    )
    # build_wait_timeout is 0 for Kubernetes in both: the pod goes after the build
    twin_build(kind, basedir, config, www, lambda: kube.pods("twin") == [])
    return list(kube.get("/_fake/requests"))[before:]


def test_kube_latent_worker_side_by_side_with_buildbot(tmp_path: Path, kube_api: Api) -> None:
    """The same master.cfg on stock Buildbot 4.3.0 and on buildyard, against the same API
    server: each builds on a fresh pod running the stock worker, and the pods are alike."""
    seen = {
        kind: _twin_build(kind, tmp_path / kind, kube_api) for kind in ("buildbot", "buildyard")
    }
    pods = {}
    for kind, requests in seen.items():
        (create,) = [r for r in requests if r["method"] == "POST"]
        assert create["path"] == "/api/v1/namespaces/ci/pods"
        pods[kind] = create["body"]
        # both delete the pod after the build
        deletes = [r for r in requests if r["method"] == "DELETE"]
        assert (
            deletes[-1]["path"]
            == f"/api/v1/namespaces/ci/pods/{create['body']['metadata']['name']}"
        )
        assert {r["authorization"] for r in requests} == {f"Bearer {TOKEN}"}
    stock, ours = pods["buildbot"], pods["buildyard"]
    # buildbot-<worker>-<hash of the master's name> (the masters' basedirs differ)
    for pod in (stock, ours):
        assert re.fullmatch(r"buildbot-twin-[0-9a-f]{6}", pod["metadata"]["name"])
    assert stock["spec"]["restartPolicy"] == ours["spec"]["restartPolicy"] == "Never"
    for key in ("affinity", "nodeSelector", "volumes"):
        assert stock["spec"][key] == ours["spec"][key], key
    (stock_container,) = stock["spec"]["containers"]
    (our_container,) = ours["spec"]["containers"]
    assert stock_container["name"] == stock["metadata"]["name"]
    assert our_container["name"] == ours["metadata"]["name"]
    for key in ("image", "resources", "volumeMounts"):
        assert stock_container[key] == our_container[key], key
    env = {
        kind: {e["name"]: e["value"] for e in c["env"]}
        for kind, c in (("buildbot", stock_container), ("buildyard", our_container))
    }
    assert (
        set(env["buildbot"])
        == set(env["buildyard"])
        == {
            "BUILDMASTER",
            "BUILDMASTER_PORT",
            "BUILDMASTER_PROTOCOL",
            "WORKERNAME",
            "WORKERPASS",
        }
    )
    for key in ("BUILDMASTER", "BUILDMASTER_PROTOCOL", "WORKERNAME"):
        assert env["buildbot"][key] == env["buildyard"][key], key
    # on purpose: buildyard labels its pods to find them after the master is killed
    assert not stock["metadata"].get("labels")
    assert set(ours["metadata"]["labels"]) == {"buildyard.master", "buildyard.worker"}
