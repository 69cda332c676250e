"""``KubeLatentWorker`` and its loaders against :mod:`buildyard.testing.kube_api` in this
process: what master.cfg gets wrong, the three loaders' ways of reaching the API server (a
bearer token, a client certificate and a CA over TLS, the service account's files in a cluster,
the real ``kubectl proxy``), the pod spec hooks, and the API's refusals failing a start."""

from __future__ import annotations

import datetime
import json
import os
import signal
import ssl
import subprocess
import sys
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from buildyard.common.errors import ConfigErrors, collecting_config_errors
from buildyard.master.model.properties import Interpolate, Properties
from buildyard.master.workers import kubernetes
from buildyard.master.workers.config import LatentMasterInfo
from buildyard.master.workers.kubernetes import (
    KubeClient,
    KubeCtlProxyConfigLoader,
    KubeError,
    KubeHardcodedConfig,
    KubeInClusterConfigLoader,
    KubeLatentWorker,
)
from buildyard.master.workers.latent import LatentBuild
from buildyard.testing.kube_api import FakeKube
from buildyard.testing.postgres import free_port

TOKEN = "unit-token"


def _errors(build: Any) -> list[str]:
    errors = ConfigErrors()
    with collecting_config_errors(errors):
        build()
    return [e.message for e in errors.errors]


def test_bad_configuration_names_the_argument(tmp_path: Path) -> None:
    cluster = KubeHardcodedConfig("https://k8s:6443")
    assert _errors(lambda: KubeLatentWorker("k")) == [
        "worker 'k': kube_config is required: util.KubeHardcodedConfig(...), "
        "util.KubeCtlProxyConfigLoader() or util.KubeInClusterConfigLoader()"
    ]
    assert _errors(lambda: KubeLatentWorker("k", kube_config={"url": "x"})) == [
        "worker 'k': kube_config must be a util.Kube*ConfigLoader (something with "
        "getConfig()), not dict"
    ]
    assert _errors(lambda: KubeLatentWorker("k", kube_config=cluster, password="pw")) == [
        "worker 'k': a KubeLatentWorker takes no password (one is generated)"
    ]
    assert _errors(lambda: KubeLatentWorker("k", kube_config=cluster, image=3)) == [
        "worker 'k': image must be a string"
    ]
    assert _errors(lambda: KubeLatentWorker("k", kube_config=cluster, master_protocol="x")) == [
        "worker 'k': master_protocol must be 'pb' or 'msgpack'"
    ]
    assert _errors(lambda: KubeHardcodedConfig("k8s:6443")) == [
        "KubeHardcodedConfig: master_url must be the API server's URL (https://host:port), "
        "not 'k8s:6443'"
    ]
    assert _errors(
        lambda: KubeHardcodedConfig("https://k", bearerToken="t", basicAuth={"user": "u"})
    ) == [
        "KubeHardcodedConfig: set one of basicAuth and bearerToken, not both",
        "KubeHardcodedConfig: basicAuth must be {'user': ..., 'password': ...}",
    ]
    assert _errors(lambda: KubeHardcodedConfig("https://k", cert=["a", "b", "c"])) == [
        "KubeHardcodedConfig: cert must be a certificate file or a (certificate, key) pair"
    ]
    assert _errors(lambda: KubeCtlProxyConfigLoader(proxy_port="8001")) == [  # type: ignore[arg-type]
        "KubeCtlProxyConfigLoader: proxy_port must be a port number, not '8001'"
    ]

    class Elsewhere(KubeInClusterConfigLoader):
        kube_dir = str(tmp_path / "nowhere")

    assert _errors(Elsewhere) == [
        f"Not in kubernetes cluster (kube_dir not found: {tmp_path / 'nowhere'})"
    ]
    worker = KubeLatentWorker("k", kube_config=cluster)
    assert worker.build_wait_timeout == 0  # a pod per build, as in Buildbot


# -- a served stand-in ----------------------------------------------------------------------------


def _pki(tmp: Path) -> dict[str, Path]:
    """A CA, a server certificate for 127.0.0.1 and a client certificate, signed by the CA."""
    now = datetime.datetime.now(datetime.UTC)

    def make(name: str, issuer: Any, issuer_key: Any, *, ca: bool, ip: bool) -> tuple[Any, Any]:
        key = ec.generate_private_key(ec.SECP256R1())
        subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
        builder = (
            x509.CertificateBuilder()
            .subject_name(subject)
            .issuer_name(issuer or subject)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5))
            .not_valid_after(now + datetime.timedelta(days=1))
            .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
        )
        if ip:
            import ipaddress

            builder = builder.add_extension(
                x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
                critical=False,
            )
        cert = builder.sign(issuer_key or key, hashes.SHA256())
        return cert, key

    ca, ca_key = make("test-ca", None, None, ca=True, ip=False)
    files: dict[str, Path] = {}
    for name, (cert, key) in {
        "ca": (ca, ca_key),
        "server": make("kube-apiserver", ca.subject, ca_key, ca=False, ip=True),
        "client": make("buildyard", ca.subject, ca_key, ca=False, ip=False),
    }.items():
        files[f"{name}.crt"] = tmp / f"{name}.crt"
        files[f"{name}.crt"].write_bytes(cert.public_bytes(serialization.Encoding.PEM))
        files[f"{name}.key"] = tmp / f"{name}.key"
        files[f"{name}.key"].write_bytes(
            key.private_bytes(
                serialization.Encoding.PEM,
                serialization.PrivateFormat.PKCS8,
                serialization.NoEncryption(),
            )
        )
    return files


class Served:
    def __init__(self, kube: FakeKube, url: str) -> None:
        self.kube = kube
        self.url = url


async def _serve(
    tmp: Path, *, token: str | None = TOKEN, quota: int | None = None, tls: Any = None
) -> AsyncIterator[Served]:
    images = {"sleeper:1": [sys.executable, "-c", "import time; time.sleep(120)"]}
    kube = FakeKube(tmp / "pods", images, token, quota)
    runner = web.AppRunner(kube.app(), access_log=None)
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port, ssl_context=tls).start()
    try:
        yield Served(kube, f"{'https' if tls else 'http'}://127.0.0.1:{port}")
    finally:
        await runner.cleanup()


@pytest.fixture
async def served(tmp_path: Path) -> AsyncIterator[Served]:
    async for s in _serve(tmp_path):
        yield s


async def _list(loader: Any, namespace: str = "default") -> list[Any]:
    async with KubeClient(loader) as kube:
        _, found = await kube.call("GET", f"/api/v1/namespaces/{namespace}/pods")
        return list(found["items"])


async def test_a_client_certificate_and_the_ca_over_tls(tmp_path: Path) -> None:
    pki = _pki(tmp_path)
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(pki["server.crt"], pki["server.key"])
    context.load_verify_locations(pki["ca.crt"])
    context.verify_mode = ssl.CERT_REQUIRED
    async for s in _serve(tmp_path, token=None, tls=context):
        cert = (str(pki["client.crt"]), str(pki["client.key"]))
        loader = KubeHardcodedConfig(s.url, cert=cert, verify=str(pki["ca.crt"]))
        assert await _list(loader) == []
        # without the client certificate the server refuses the handshake
        with pytest.raises(KubeError, match=r"kubernetes API https://127\.0\.0\.1"):
            await _list(KubeHardcodedConfig(s.url, verify=str(pki["ca.crt"])))
        # and a server the CA did not sign is refused by the client
        with pytest.raises(KubeError, match="CERTIFICATE_VERIFY_FAILED"):
            await _list(KubeHardcodedConfig(s.url, cert=cert))


async def test_in_cluster_reads_the_service_account(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    pki = _pki(tmp_path)
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(pki["server.crt"], pki["server.key"])
    account = tmp_path / "serviceaccount"
    account.mkdir()
    (account / "token").write_text(TOKEN + "\n")
    (account / "namespace").write_text("builds\n")
    (account / "ca.crt").write_bytes(pki["ca.crt"].read_bytes())

    class InPod(KubeInClusterConfigLoader):
        kube_dir = str(account)

    async for s in _serve(tmp_path, tls=context):
        monkeypatch.setenv("KUBERNETES_PORT", s.url.replace("https://", "tcp://"))
        loader = InPod()
        assert loader.getConfig()["namespace"] == "builds"
        assert await _list(loader, "builds") == []
        assert s.kube.requests[-1]["authorization"] == f"Bearer {TOKEN}"
        # the kubelet rotates the token: it is read again at each use
        (account / "token").write_text("rotated")
        with pytest.raises(KubeError, match="401 Unauthorized"):
            await _list(loader, "builds")
        assert s.kube.requests[-1]["authorization"] == "Bearer rotated"


async def test_kubectl_proxy_reaches_the_api_server_with_the_kubeconfig(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The real kubectl, reaching the stand-in over TLS with the kubeconfig's CA and token
    (kubectl sends no token over plain HTTP)."""
    pki = _pki(tmp_path)
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(pki["server.crt"], pki["server.key"])
    async for served in _serve(tmp_path, tls=context):
        cluster = {"server": served.url, "certificate-authority": str(pki["ca.crt"])}
        kubeconfig = {
            "apiVersion": "v1",
            "kind": "Config",
            "clusters": [{"name": "fake", "cluster": cluster}],
            "users": [{"name": "ci", "user": {"token": TOKEN}}],
            "contexts": [{"name": "fake", "context": {"cluster": "fake", "user": "ci"}}],
            "current-context": "fake",
        }
        (tmp_path / "kubeconfig").write_text(json.dumps(kubeconfig))
        monkeypatch.setenv("KUBECONFIG", str(tmp_path / "kubeconfig"))
        port = free_port()
        loader = KubeCtlProxyConfigLoader(proxy_port=port, namespace="ci")
        try:
            url = f"http://localhost:{port}"
            assert loader.getConfig() == {"master_url": url, "namespace": "ci"}
            # the master speaks plain HTTP with no token; kubectl adds the kubeconfig's
            assert await _list(loader, "ci") == []
            assert b"Starting to serve" in loader.kube_proxy_output
            seen = served.kube.requests[-1]
            assert seen["path"] == "/api/v1/namespaces/ci/pods"
            assert seen["authorization"] == f"Bearer {TOKEN}"
        finally:
            proc = kubernetes._PROXIES.pop(port, None)
            if proc is not None:
                proc.terminate()
                await proc.wait()


_KILLED_MASTER = """
import asyncio, sys
from buildyard.master.workers.kubernetes import KubeCtlProxyConfigLoader, _PROXIES

class Loader(KubeCtlProxyConfigLoader):
    # stands for kubectl: says it serves, then waits (the -p PORT given is ignored)
    kube_ctl_proxy_cmd = [sys.executable, "-c",
        "import time; print('Starting to serve', flush=True); time.sleep(300)"]

async def main():
    loader = Loader(proxy_port=int(sys.argv[1]))
    await loader.prepare()
    print("PROXY", _PROXIES[loader.proxy_port].pid, flush=True)
    await asyncio.sleep(300)

asyncio.run(main())
"""


@pytest.mark.skipif(sys.platform != "linux", reason="the parent-death signal is Linux's")
def test_a_sigkilled_master_leaves_no_kubectl_proxy(tmp_path: Path) -> None:
    """atexit does not run when the master is SIGKILLed: the kernel ends the proxy then."""
    script = tmp_path / "master.py"
    script.write_text(_KILLED_MASTER)
    master = subprocess.Popen(
        [sys.executable, str(script), str(free_port())],
        stdout=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONPATH": str(Path(kubernetes.__file__).parents[3])},
    )
    try:
        assert master.stdout is not None
        lines = (master.stdout.readline() for _ in range(20))  # the master logs there too
        proxy = int(next(line for line in lines if line.startswith("PROXY ")).split()[1])
        os.kill(proxy, 0)  # running
        master.kill()
        master.wait(timeout=30)
        for _ in range(300):  # bounded: 30 s
            try:
                os.kill(proxy, 0)
            except ProcessLookupError:
                break
            try:
                if Path(f"/proc/{proxy}/stat").read_text().split()[2] == "Z":
                    break  # ended, not yet reaped by its new parent
            except FileNotFoundError:
                break
            time.sleep(0.1)
        else:
            os.kill(proxy, signal.SIGKILL)
            raise AssertionError(f"the proxy (pid {proxy}) outlived its master")
    finally:
        if master.poll() is None:
            master.kill()
            master.wait()
        if master.stdout is not None:
            master.stdout.close()


class WithServices(KubeLatentWorker):
    def getServicesContainers(self, build: Any) -> Any:  # noqa: N802 - Buildbot's hook
        return [{"name": "db", "image": "sleeper:1"}]

    async def get_node_selector(self, build: Any) -> Any:
        return {"pool": await build.render(Interpolate("%(prop:pool:-ci)s"))}


def _worker(cls: type[KubeLatentWorker], url: str, **kw: Any) -> KubeLatentWorker:
    worker = cls(
        "k_1",
        kube_config=KubeHardcodedConfig(url, bearerToken=TOKEN),
        masterFQDN="127.0.0.1:9989",
        **kw,
    )
    worker.master_info = LatentMasterInfo(
        name="m", host="127.0.0.1", msgpack_port=None, pb_port=9989
    )
    return worker


async def test_the_pod_spec_hooks_start_check_and_stop(served: Served) -> None:
    # image and namespace rendered with the request's properties
    worker = _worker(
        WithServices,
        served.url,
        image=Interpolate("%(prop:image)s"),
        namespace=Interpolate("%(prop:ns)s"),
    )
    props = Properties(image="sleeper:1", ns="ci")
    assert await worker.start_instance(LatentBuild(props))
    pod = worker.getContainerName()
    assert pod == f"buildbot-k-1-{worker.master_info.masterhash}"  # type: ignore[union-attr]
    (created,) = [r["body"] for r in served.kube.requests if r["method"] == "POST"]
    assert [c["name"] for c in created["spec"]["containers"]] == [pod, "db"]
    assert created["spec"]["nodeSelector"] == {"pool": "ci"}
    env = {e["name"]: e["value"] for e in created["spec"]["containers"][0]["env"]}
    assert (env["BUILDMASTER"], env["BUILDMASTER_PORT"], env["WORKERNAME"]) == (
        "127.0.0.1",
        "9989",
        "k_1",
    )
    assert await worker.check_instance() == (True, "")
    (fake,) = served.kube.pods.values()
    assert fake.namespace == "ci"
    assert set(fake.processes) == {pod, "db"}
    await worker.stop_instance()
    assert served.kube.pods == {}  # waited until it was gone
    assert all(not p.running for p in fake.processes.values())
    delete = [r for r in served.kube.requests if r["method"] == "DELETE"][-1]
    assert delete["query"] == {"gracePeriodSeconds": "0"}


async def test_refusals_and_unpullable_images_fail_the_start(tmp_path: Path) -> None:
    async for s in _serve(tmp_path, quota=0):
        worker = _worker(KubeLatentWorker, s.url, image="sleeper:1")
        with pytest.raises(KubeError, match=r"403 Forbidden .*exceeded quota") as info:
            await worker.start_instance(LatentBuild(Properties()))
        assert info.value.reason == "Forbidden"
    async for s in _serve(tmp_path / "2"):
        worker = _worker(KubeLatentWorker, s.url, image="nowhere:1")
        await worker.start_instance(LatentBuild(Properties()))
        ok, why = await worker.check_instance()
        assert not ok
        assert "ErrImagePull" in why
        await worker.stop_instance(fast=True)
        assert [r["method"] for r in s.kube.requests][-1] == "DELETE"


async def test_basic_auth_and_secrets_make_the_authorization_header() -> None:
    basic = KubeHardcodedConfig("https://k", basicAuth={"user": "ci", "password": "s3"})
    assert await basic.getAuthorization() == "Basic Y2k6czM="
    bearer = KubeHardcodedConfig("https://k", bearerToken=Interpolate("%(prop:x:-tok)s"))
    assert await bearer.getAuthorization() == "Bearer tok"
    assert await KubeHardcodedConfig("https://k").getAuthorization() is None
