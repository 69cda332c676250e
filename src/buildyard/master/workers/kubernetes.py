"""``worker.KubeLatentWorker``: a latent worker whose instance is a Kubernetes pod, and the
``util.Kube*`` loaders that tell it how to reach the cluster.

It speaks the Kubernetes REST API itself, with aiohttp (the master's HTTP library): create a pod
(``POST /api/v1/namespaces/{ns}/pods``), read it (``GET .../pods/{name}``), delete it
(``DELETE .../pods/{name}``) and list the pods carrying a label selector. The loaders give the
API server's URL, the namespace, and how to authenticate, as Buildbot's do:

- ``util.KubeHardcodedConfig``: written in master.cfg (a bearer token or basic auth, a client
  certificate, the CA to verify the server with);
- ``util.KubeCtlProxyConfigLoader``: ``kubectl proxy`` run by the master, which reaches the
  cluster with the user's kubeconfig; the master talks plain HTTP to it on loopback;
- ``util.KubeInClusterConfigLoader``: inside a pod, the service account's token, CA and
  namespace files, and the API server of ``KUBERNETES_PORT``.

The pod is named ``buildbot-<worker>-<masterhash>`` (Buildbot's name) and labelled
``buildyard.master=<identity of the master>`` and ``buildyard.worker=<worker>``: a master that was
killed and restarted deletes the pods its earlier run left.
"""

from __future__ import annotations

import asyncio
import atexit
import base64
import contextlib
import ctypes
import hashlib
import json
import os
import re
import signal
import socket
import ssl
import subprocess
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any, ClassVar

import aiohttp
import structlog

from buildyard.common.config_object import ConfigObject
from buildyard.common.errors import config_error
from buildyard.master.model.properties import Properties, is_renderable
from buildyard.master.workers.config import (
    AbstractLatentWorker,
    LatentWorkerCannotSubstantiate,
    LatentWorkerFailedToSubstantiate,
    worker_environment,
)

log = structlog.get_logger(__name__)

__all__ = [
    "KubeConfigLoaderBase",
    "KubeCtlProxyConfigLoader",
    "KubeError",
    "KubeHardcodedConfig",
    "KubeInClusterConfigLoader",
    "KubeLatentWorker",
]

LABEL_MASTER = "buildyard.master"
LABEL_WORKER = "buildyard.worker"
_API_TIMEOUT = aiohttp.ClientTimeout(total=120, sock_connect=30)
#: a pod waiting for an image it cannot pull never starts: these reasons fail the start at once
_HOPELESS_WAITING = frozenset(
    {"ErrImagePull", "ImagePullBackOff", "InvalidImageName", "ErrImageNeverPull"}
)
_LABEL_VALUE = re.compile(r"^([A-Za-z0-9]([-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?)?$")


class KubeError(LatentWorkerFailedToSubstantiate):
    """The API server refused a call (``status``, Kubernetes' ``reason``) or was unreachable."""

    def __init__(self, message: str, *, status: int | None = None, reason: str | None = None):
        super().__init__(message)
        self.status = status
        self.code = status
        self.reason = reason


# -- where the cluster is -------------------------------------------------------------------------


class KubeConfigLoaderBase(ConfigObject):
    """What a loader gives (Buildbot's shape): ``getConfig()`` returns a dictionary with
    ``master_url``, ``namespace``, and optionally ``headers``, ``cert`` (a client certificate
    file, or a ``(certificate, key)`` pair) and ``verify`` (False, or the CA file to verify the
    server with); ``getAuthorization()`` the ``Authorization`` header, or None. A master.cfg may
    subclass it."""

    async def prepare(self) -> None:
        """Called before each use (the proxy loader starts ``kubectl proxy`` here)."""

    def getConfig(self) -> dict[str, Any]:  # noqa: N802 - Buildbot's name
        raise NotImplementedError(f"{type(self).__name__} must define getConfig()")

    def get_master_url(self) -> str:
        return str(self.getConfig()["master_url"])

    async def getAuthorization(self) -> str | None:  # noqa: N802 - Buildbot's name
        return None


class KubeHardcodedConfig(KubeConfigLoaderBase):
    """``util.KubeHardcodedConfig(master_url, bearerToken=None, basicAuth=None, headers=None,
    cert=None, verify=None, namespace='default')``; ``bearerToken`` and ``basicAuth``
    (``{'user': ..., 'password': ...}``) may be secrets (``util.Secret``, ``Interpolate``)."""

    _secret_arguments = frozenset({"bearerToken", "basicAuth"})

    def __init__(  # noqa: PLR0917 - Buildbot accepts these positionally
        self,
        master_url: str | None = None,
        bearerToken: object = None,  # noqa: N803 - Buildbot's keyword
        basicAuth: object = None,  # noqa: N803 - Buildbot's keyword
        headers: object = None,
        cert: object = None,
        verify: object = None,
        namespace: object = "default",
    ) -> None:
        label = "KubeHardcodedConfig"
        if not isinstance(master_url, str) or not master_url.startswith(("http://", "https://")):
            config_error(
                f"{label}: master_url must be the API server's URL (https://host:port), "
                f"not {master_url!r}"
            )
        if basicAuth is not None and bearerToken is not None:
            config_error(f"{label}: set one of basicAuth and bearerToken, not both")
        if (
            basicAuth is not None
            and not is_renderable(basicAuth)
            and (not isinstance(basicAuth, Mapping) or set(basicAuth) != {"user", "password"})
        ):
            config_error(f"{label}: basicAuth must be {{'user': ..., 'password': ...}}")
        if headers is not None and not isinstance(headers, Mapping):
            config_error(f"{label}: headers must be a dictionary")
        _check_cert(label, cert)
        if verify is not None and not isinstance(verify, bool | str):
            config_error(f"{label}: verify must be True, False or the path of a CA file")
        if not isinstance(namespace, str) or not namespace:
            config_error(f"{label}: namespace must be a non-empty string")
        self.master_url = master_url
        self.bearerToken = bearerToken
        self.basicAuth = basicAuth
        self.config: dict[str, Any] = {
            "master_url": master_url,
            "namespace": namespace,
            "headers": dict(headers) if isinstance(headers, Mapping) else {},
        }
        if cert is not None:
            self.config["cert"] = cert
        if verify is not None:
            self.config["verify"] = verify

    def getConfig(self) -> dict[str, Any]:  # noqa: N802 - Buildbot's name
        return self.config

    async def getAuthorization(self) -> str | None:  # noqa: N802 - Buildbot's name
        props = Properties()
        if self.basicAuth is not None:
            auth = await props.render(self.basicAuth)
            pair = f"{auth['user']}:{auth['password']}".encode()
            return "Basic " + base64.b64encode(pair).decode()
        if self.bearerToken is not None:
            return f"Bearer {await props.render(self.bearerToken)}"
        return None


# kubectl proxy processes, by port: one per port for the master process, ended when it exits
_PROXIES: dict[int, asyncio.subprocess.Process] = {}
_DRAINS: set[asyncio.Future[None]] = set()


def _end_proxies() -> None:
    for proc in _PROXIES.values():
        if proc.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(proc.pid, signal.SIGTERM)
    _PROXIES.clear()


atexit.register(_end_proxies)


def _end_with_the_master() -> Callable[[], None] | None:
    """What the proxy's process runs before kubectl, on Linux: have the kernel send it SIGTERM
    when the master dies, so a master that is SIGKILLed (its atexit never runs) leaves no
    ``kubectl proxy`` behind. ``prctl`` is looked up here, in the master: the child, forked
    from a process with threads, only calls it (no dlopen between fork and exec)."""
    if sys.platform != "linux":
        return None
    try:
        prctl = ctypes.CDLL(None, use_errno=True).prctl
    except (OSError, AttributeError):
        return None
    master = os.getpid()
    pr_set_pdeathsig = 1

    def in_child() -> None:
        prctl(pr_set_pdeathsig, signal.SIGTERM, 0, 0, 0)
        if os.getppid() != master:  # the master died before the signal was asked for
            os.kill(os.getpid(), signal.SIGTERM)

    return in_child


class KubeCtlProxyConfigLoader(KubeConfigLoaderBase):
    """``util.KubeCtlProxyConfigLoader(proxy_port=8001, namespace='default')``: the master runs
    ``kubectl proxy -p <proxy_port>`` (the first time a worker needs it; once per port) and
    talks to ``http://localhost:<proxy_port>``; kubectl reaches the cluster with the kubeconfig
    of the master's user (``KUBECONFIG``, ``~/.kube/config``). The proxy ends with the
    master."""

    #: the command, ``-p PORT`` appended (Buildbot's hook for tests)
    kube_ctl_proxy_cmd: ClassVar[list[str]] = ["kubectl", "proxy"]

    def __init__(self, proxy_port: int = 8001, namespace: str = "default") -> None:
        label = "KubeCtlProxyConfigLoader"
        if not isinstance(proxy_port, int) or isinstance(proxy_port, bool) or proxy_port <= 0:
            config_error(f"{label}: proxy_port must be a port number, not {proxy_port!r}")
        if not isinstance(namespace, str) or not namespace:
            config_error(f"{label}: namespace must be a non-empty string")
        self.proxy_port = proxy_port
        self.namespace = namespace
        self.kube_proxy_output: bytes = b""

    async def prepare(self) -> None:
        proc = _PROXIES.get(self.proxy_port)
        if proc is not None and proc.returncode is None:
            return
        argv = [*self.kube_ctl_proxy_cmd, "-p", str(self.proxy_port)]
        try:
            proc = await asyncio.create_subprocess_exec(
                *argv,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                preexec_fn=_end_with_the_master(),
            )
        except OSError as exc:
            raise KubeError(f"cannot run {' '.join(argv)}: {exc}") from exc
        assert proc.stdout is not None
        assert proc.stderr is not None
        out = asyncio.ensure_future(proc.stdout.readline())
        err = asyncio.ensure_future(proc.stderr.readline())
        done, _ = await asyncio.wait({out, err}, timeout=30, return_when="FIRST_COMPLETED")
        if out in done and out.result():
            err.cancel()
            self.kube_proxy_output = out.result()
            _PROXIES[self.proxy_port] = proc
            # keep reading what it says, or its pipes fill up
            _DRAINS.update(
                asyncio.ensure_future(_drain(stream)) for stream in (proc.stdout, proc.stderr)
            )
            log.info("kubectl_proxy_started", port=self.proxy_port, pid=proc.pid)
            return
        message = err.result().decode(errors="replace").strip() if err in done else ""
        out.cancel()
        err.cancel()
        with contextlib.suppress(ProcessLookupError):
            proc.kill()
        await proc.wait()
        raise KubeError(f"{' '.join(argv)} did not start: {message or 'no output in 30 s'}")

    def getConfig(self) -> dict[str, Any]:  # noqa: N802 - Buildbot's name
        return {"master_url": f"http://localhost:{self.proxy_port}", "namespace": self.namespace}


async def _drain(stream: asyncio.StreamReader) -> None:
    while await stream.readline():
        pass


class KubeInClusterConfigLoader(KubeConfigLoaderBase):
    """``util.KubeInClusterConfigLoader()``: for a master running in a pod. The service
    account's files under :attr:`kube_dir` (``token``, read again at each use since the kubelet
    rotates it; ``ca.crt``; ``namespace``) and the API server of ``KUBERNETES_PORT``
    (``tcp://10.0.0.1:443``, made ``https``)."""

    #: where Kubernetes mounts the service account (Buildbot's attribute; a subclass may change it)
    kube_dir: ClassVar[str] = "/var/run/secrets/kubernetes.io/serviceaccount/"

    def __init__(self) -> None:
        if not os.path.exists(self.kube_dir):
            config_error(f"Not in kubernetes cluster (kube_dir not found: {self.kube_dir})")

    @property
    def kube_token_file(self) -> str:
        return os.path.join(self.kube_dir, "token")

    @property
    def kube_cert_file(self) -> str:
        return os.path.join(self.kube_dir, "ca.crt")

    @property
    def kube_namespace_file(self) -> str:
        return os.path.join(self.kube_dir, "namespace")

    def get_master_url(self) -> str:
        port = os.environ.get("KUBERNETES_PORT")
        if port:
            return port.replace("tcp://", "https://", 1)
        host = os.environ.get("KUBERNETES_SERVICE_HOST")
        if host:
            return f"https://{host}:{os.environ.get('KUBERNETES_SERVICE_PORT', '443')}"
        raise KubeError("KubeInClusterConfigLoader: KUBERNETES_PORT is not set (not in a pod?)")

    def getConfig(self) -> dict[str, Any]:  # noqa: N802 - Buildbot's name
        token = Path(self.kube_token_file).read_text(encoding="utf-8").strip()
        namespace = Path(self.kube_namespace_file).read_text(encoding="utf-8").strip()
        return {
            "master_url": self.get_master_url(),
            "namespace": namespace,
            "verify": self.kube_cert_file,
            "headers": {"Authorization": f"Bearer {token}"},
        }


def _check_cert(label: str, cert: object) -> None:
    if cert is None or isinstance(cert, str):
        return
    if isinstance(cert, list | tuple) and len(cert) == 2 and all(isinstance(c, str) for c in cert):
        return
    config_error(f"{label}: cert must be a certificate file or a (certificate, key) pair")


class KubeClient:
    """One use of the API server as a loader describes it."""

    def __init__(self, loader: Any) -> None:
        self.loader = loader
        self._session: aiohttp.ClientSession | None = None
        self.base = ""
        self._headers: dict[str, str] = {}

    async def __aenter__(self) -> KubeClient:
        prepare = getattr(self.loader, "prepare", None)
        if prepare is not None:
            await _maybe_await(prepare())
        config = dict(await _maybe_await(self.loader.getConfig()))
        self.base = str(config["master_url"]).rstrip("/")
        self.namespace = str(config.get("namespace") or "default")
        self._headers = {str(k): str(v) for k, v in (config.get("headers") or {}).items()}
        get_auth = getattr(self.loader, "getAuthorization", None)
        auth = await _maybe_await(get_auth()) if get_auth is not None else None
        if auth is not None:
            self._headers["Authorization"] = str(auth)
        ssl_context: ssl.SSLContext | bool = True
        verify = config.get("verify")
        cert = config.get("cert")
        if self.base.startswith("https://"):
            if verify is False:
                context = ssl.create_default_context()
                context.check_hostname = False
                context.verify_mode = ssl.CERT_NONE
            elif isinstance(verify, str):
                context = ssl.create_default_context(cafile=verify)
            else:
                context = ssl.create_default_context()
            if isinstance(cert, str):
                context.load_cert_chain(cert)
            elif isinstance(cert, list | tuple):
                context.load_cert_chain(cert[0], cert[1])
            ssl_context = context
        self._session = aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(ssl=ssl_context), timeout=_API_TIMEOUT
        )
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    async def call(
        self,
        method: str,
        path: str,
        *,
        params: Mapping[str, str] | None = None,
        body: object = None,
        ok: Sequence[int] = (200, 201, 202),
    ) -> tuple[int, Any]:
        assert self._session is not None
        try:
            async with self._session.request(
                method, self.base + path, params=params, json=body, headers=self._headers
            ) as resp:
                status = resp.status
                text = await resp.text()
        except (aiohttp.ClientError, OSError) as exc:
            raise KubeError(f"kubernetes API {self.base}: {exc}") from exc
        try:
            data = json.loads(text) if text.strip() else None
        except ValueError:
            data = None
        if status not in ok:
            reason = data.get("reason") if isinstance(data, dict) else None
            message = data.get("message") if isinstance(data, dict) else text[:200]
            raise KubeError(
                f"{method} {path}: {status} {reason or ''} {message or ''}".strip(),
                status=status,
                reason=reason,
            )
        return status, data


async def _maybe_await(value: Any) -> Any:
    from buildyard.master.workers.latent import call_user

    return await call_user(value)


def _label_value(text: str) -> str:
    """``text`` when Kubernetes takes it as a label value, else a hash of it."""
    return text if _LABEL_VALUE.match(text) else hashlib.sha256(text.encode()).hexdigest()[:20]


# -- the worker -----------------------------------------------------------------------------------


class KubeLatentWorker(AbstractLatentWorker):
    """Buildbot's ``KubeLatentWorker(name, image='buildbot/buildbot-worker', namespace=None,
    masterFQDN=None, master_protocol='pb', kube_config=None, **worker_keywords)``.

    ``kube_config`` (required) is one of the ``util.Kube*`` loaders; ``namespace`` (the
    loader's by default), ``image`` and ``kube_config`` may be renderables, rendered with the
    properties of the build request the pod is started for. No password is taken: one is
    generated and given to the pod. ``build_wait_timeout`` is 0 unless given (a pod per build).
    The pod spec comes from :meth:`getPodSpec`, whose parts a subclass may change with Buildbot's
    hooks: :meth:`getBuildContainerResources`, :meth:`get_build_container_volume_mounts`,
    :meth:`getServicesContainers`, :meth:`get_affinity`, :meth:`get_node_selector`,
    :meth:`get_volumes` (each may be a coroutine).
    """

    def __init__(  # noqa: PLR0917 - Buildbot's arguments
        self,
        name: str,
        image: object = "buildbot/buildbot-worker",
        namespace: object = None,
        masterFQDN: object = None,  # noqa: N803 - Buildbot's keyword
        master_protocol: str = "pb",
        kube_config: object = None,
        **kwargs: Any,
    ) -> None:
        if "password" in kwargs:
            config_error(
                f"worker {name!r}: a KubeLatentWorker takes no password (one is generated)"
            )
            kwargs.pop("password")
        kwargs.setdefault("build_wait_timeout", 0)  # starting a pod is quick
        super().__init__(name, None, **kwargs)
        label = f"worker {self.name!r}"
        if not isinstance(image, str) and not is_renderable(image):
            config_error(f"{label}: image must be a string")
        if (
            namespace is not None
            and not isinstance(namespace, str)
            and not is_renderable(namespace)
        ):
            config_error(f"{label}: namespace must be a string")
        if master_protocol not in ("pb", "msgpack"):
            config_error(f"{label}: master_protocol must be 'pb' or 'msgpack'")
        if kube_config is None:
            config_error(
                f"{label}: kube_config is required: util.KubeHardcodedConfig(...), "
                "util.KubeCtlProxyConfigLoader() or util.KubeInClusterConfigLoader()"
            )
        elif not is_renderable(kube_config) and not callable(
            getattr(kube_config, "getConfig", None)
        ):
            config_error(
                f"{label}: kube_config must be a util.Kube*ConfigLoader (something with "
                f"getConfig()), not {type(kube_config).__name__}"
            )
        if masterFQDN is not None and not isinstance(masterFQDN, str) and not callable(masterFQDN):
            config_error(f"{label}: masterFQDN must be a string or a function returning one")
        self.image = image
        self.namespace = namespace
        self.masterFQDN = masterFQDN
        self.master_protocol = master_protocol
        self.kube_config = kube_config
        #: the running pod: its namespace, name and loader
        self.instance: dict[str, Any] | None = None

    # -- Buildbot's helpers ---------------------------------------------------------------------

    def getContainerName(self) -> str:  # noqa: N802 - Buildbot's name
        masterhash = self.master_info.masterhash if self.master_info is not None else "000000"
        return f"buildbot-{self.name}-{masterhash}".replace("_", "-").lower()

    @staticmethod
    def get_fqdn() -> str:
        return socket.getfqdn()

    @staticmethod
    def get_ip() -> str:
        fqdn = socket.getfqdn()
        try:
            return socket.gethostbyname(fqdn)
        except OSError:
            return fqdn

    def _master_fqdn(self) -> str:
        fqdn = self.masterFQDN
        if fqdn is None:
            fqdn = self.get_ip()
        if callable(fqdn):
            fqdn = fqdn()
        return str(fqdn)

    def createEnvironment(self, build: Any = None) -> dict[str, str]:  # noqa: N802
        info = self.master_info
        assert info is not None
        return worker_environment(
            info,
            fqdn=self._master_fqdn(),
            protocol=self.master_protocol,
            name=self.name,
            password=self.login_password,
        )

    # -- the pod spec and its hooks (Buildbot's names) ------------------------------------------

    def getBuildContainerResources(self, build: Any) -> Any:  # noqa: N802
        """The build container's ``resources`` (requests and limits)."""
        return {}

    def get_build_container_volume_mounts(self, build: Any) -> Any:
        return []

    def get_affinity(self, build: Any) -> Any:
        return {}

    def get_node_selector(self, build: Any) -> Any:
        return {}

    def get_volumes(self, build: Any) -> Any:
        return []

    def getServicesContainers(self, build: Any) -> Any:  # noqa: N802
        """Containers run beside the build container, in the same pod (same localhost)."""
        return []

    async def getPodSpec(self, build: Any) -> dict[str, Any]:  # noqa: N802 - Buildbot's name
        image = await build.render(self.image)
        env = await _maybe_await(self.createEnvironment(build))
        name = self.getContainerName()
        return {
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {"name": name},
            "spec": {
                "affinity": await _maybe_await(self.get_affinity(build)),
                "containers": [
                    {
                        "name": name,
                        "image": image,
                        "env": [{"name": k, "value": v} for k, v in env.items()],
                        "resources": await _maybe_await(self.getBuildContainerResources(build)),
                        "volumeMounts": await _maybe_await(
                            self.get_build_container_volume_mounts(build)
                        ),
                    },
                    *(await _maybe_await(self.getServicesContainers(build)) or []),
                ],
                "nodeSelector": await _maybe_await(self.get_node_selector(build)),
                "restartPolicy": "Never",
                "volumes": await _maybe_await(self.get_volumes(build)),
            },
        }

    # -- lifecycle ------------------------------------------------------------------------------

    def _labels(self) -> dict[str, str]:
        assert self.master_info is not None
        return {LABEL_MASTER: self.master_info.identity, LABEL_WORKER: _label_value(self.name)}

    async def _loader_and_namespace(self, props: Any) -> tuple[Any, str | None]:
        loader = await props.render(self.kube_config)
        namespace = await props.render(self.namespace)
        if not callable(getattr(loader, "getConfig", None)):
            raise LatentWorkerCannotSubstantiate(
                f"kube_config rendered to {loader!r}, not a util.Kube*ConfigLoader"
            )
        return loader, None if namespace is None else str(namespace)

    async def start_instance(self, build: Any) -> bool:
        if self.instance is not None:
            raise ValueError("instance active")
        loader, namespace = await self._loader_and_namespace(build)
        spec = await self.getPodSpec(build)
        metadata = spec.setdefault("metadata", {})
        metadata.setdefault("labels", {}).update(self._labels())
        name = str(metadata.get("name") or self.getContainerName())
        metadata["name"] = name
        async with KubeClient(loader) as kube:
            namespace = namespace or kube.namespace
            pods = f"/api/v1/namespaces/{namespace}/pods"
            # a pod of the same name left by an earlier start goes first
            status, _ = await kube.call("DELETE", f"{pods}/{name}", ok=(200, 202, 404))
            if status != 404:
                await self._wait_deleted(kube, f"{pods}/{name}")
            self.instance = {"namespace": namespace, "name": name, "loader": loader}
            await kube.call("POST", pods, body=spec)
        log.info("kube_pod_created", worker=self.name, namespace=namespace, pod=name)
        return True

    async def _wait_deleted(self, kube: KubeClient, path: str) -> None:
        timeout = self.missing_timeout
        timeout = self.default_missing_timeout if timeout is None else float(timeout)
        deadline = time.monotonic() + timeout
        while True:
            status, _ = await kube.call("GET", f"{path}/status", ok=(200, 404))
            if status == 404:
                return
            if time.monotonic() > deadline:
                raise KubeError(f"did not see pod {path.rsplit('/', 1)[-1]} go in {timeout:g} s")
            await asyncio.sleep(1)

    async def check_instance(self) -> tuple[bool, str]:
        instance = self.instance
        if instance is None:
            return True, ""
        async with KubeClient(instance["loader"]) as kube:
            path = f"/api/v1/namespaces/{instance['namespace']}/pods/{instance['name']}"
            status, pod = await kube.call("GET", path, ok=(200, 404))
        if status == 404:
            return False, f"the pod {instance['name']} is gone"
        state = (pod or {}).get("status") or {}
        phase = state.get("phase")
        if phase in ("Failed", "Succeeded"):
            return False, f"the pod {instance['name']} ended: {phase} {_why(state)}".strip()
        for container in state.get("containerStatuses") or []:
            waiting = (container.get("state") or {}).get("waiting") or {}
            if waiting.get("reason") in _HOPELESS_WAITING:
                return False, (
                    f"the pod {instance['name']} cannot start: {waiting['reason']} "
                    f"{waiting.get('message') or ''}".strip()
                )
        return True, ""

    async def stop_instance(self, fast: bool = False) -> None:
        instance, self.instance = self.instance, None
        if instance is None:
            return
        async with KubeClient(instance["loader"]) as kube:
            path = f"/api/v1/namespaces/{instance['namespace']}/pods/{instance['name']}"
            status, _ = await kube.call(
                "DELETE", path, params={"gracePeriodSeconds": "0"}, ok=(200, 202, 404)
            )
            if status != 404 and not fast:
                await self._wait_deleted(kube, path)
        log.info("kube_pod_deleted", worker=self.name, pod=instance["name"])

    async def cleanup_orphans(self) -> int:
        loader, namespace = await self._loader_and_namespace(Properties())
        async with KubeClient(loader) as kube:
            namespace = namespace or kube.namespace
            pods = f"/api/v1/namespaces/{namespace}/pods"
            selector = ",".join(f"{k}={v}" for k, v in self._labels().items())
            _, found = await kube.call("GET", pods, params={"labelSelector": selector})
            items = (found or {}).get("items") or []
            for pod in items:
                name = pod["metadata"]["name"]
                await kube.call(
                    "DELETE",
                    f"{pods}/{name}",
                    params={"gracePeriodSeconds": "0"},
                    ok=(200, 202, 404),
                )
                log.warning(
                    "kube_orphan_deleted",
                    worker=self.name,
                    pod=name,
                    phase=(pod.get("status") or {}).get("phase"),
                )
            return len(items)


def _why(state: Mapping[str, Any]) -> str:
    for container in state.get("containerStatuses") or []:
        ended = (container.get("state") or {}).get("terminated") or {}
        if ended:
            return f"(exit code {ended.get('exitCode')}, {ended.get('reason') or ''})"
    return str(state.get("reason") or "")
