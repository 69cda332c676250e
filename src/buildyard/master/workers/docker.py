"""``worker.DockerLatentWorker``: a latent worker whose instance is a Docker container.

It speaks the Docker Engine HTTP API itself, with aiohttp (already the master's HTTP library),
over a unix socket (``unix:///var/run/docker.sock``) or TCP (``tcp://host:2375``, or with ``tls``
``https``). The Docker SDK for Python is synchronous (each call would need a thread) and
aiodocker would be one more dependency for the dozen calls used here: the create, start, stop,
wait and delete of a container, the inspection, pull and build of an image, and the list of
containers by label.

Each container is named ``buildbot-<worker>-<masterhash>`` (Buildbot's name) and labelled
``buildyard.master=<identity of the master>`` and ``buildyard.worker=<worker>``: a master that
was killed and restarted finds the containers its earlier run left, by these labels, and removes
them (the worker's password changed with the restart, so they could not log in anyway).
"""

from __future__ import annotations

import asyncio
import gzip
import io
import json
import socket
import ssl
import tarfile
import urllib.parse
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import aiohttp
import structlog

from buildyard.common.errors import config_error
from buildyard.master.model.properties import Properties, is_renderable
from buildyard.master.workers.config import (
    AbstractLatentWorker,
    LatentWorkerCannotSubstantiate,
    worker_environment,
)

log = structlog.get_logger(__name__)

__all__ = ["DockerEngine", "DockerError", "DockerLatentWorker"]

LABEL_MASTER = "buildyard.master"
LABEL_WORKER = "buildyard.worker"
#: seconds Docker gives a container between SIGTERM and SIGKILL when the master stops it
STOP_TIMEOUT = 10
_API_TIMEOUT = aiohttp.ClientTimeout(total=None, sock_connect=30)

# docker-py's create_host_config keywords and the Engine API's HostConfig fields they set
_HOSTCONFIG_KEYS = {
    "auto_remove": "AutoRemove",
    "binds": "Binds",
    "cap_add": "CapAdd",
    "cap_drop": "CapDrop",
    "cpu_period": "CpuPeriod",
    "cpu_quota": "CpuQuota",
    "cpu_shares": "CpuShares",
    "cpuset_cpus": "CpusetCpus",
    "dns": "Dns",
    "dns_search": "DnsSearch",
    "extra_hosts": "ExtraHosts",
    "group_add": "GroupAdd",
    "init": "Init",
    "ipc_mode": "IpcMode",
    "links": "Links",
    "mem_limit": "Memory",
    "memswap_limit": "MemorySwap",
    "nano_cpus": "NanoCpus",
    "network_mode": "NetworkMode",
    "oom_kill_disable": "OomKillDisable",
    "pid_mode": "PidMode",
    "privileged": "Privileged",
    "read_only": "ReadonlyRootfs",
    "restart_policy": "RestartPolicy",
    "runtime": "Runtime",
    "security_opt": "SecurityOpt",
    "shm_size": "ShmSize",
    "sysctls": "Sysctls",
    "tmpfs": "Tmpfs",
    "ulimits": "Ulimits",
    "userns_mode": "UsernsMode",
    "volumes_from": "VolumesFrom",
}
_UNITS = {"b": 1, "k": 1024, "m": 1024**2, "g": 1024**3}


class DockerError(Exception):
    """The engine refused a call or could not be reached."""

    def __init__(self, message: str, *, status: int | None = None) -> None:
        super().__init__(message)
        self.status = status


def _size(value: object) -> object:
    """docker-py's sizes: an int, or a string such as ``"512m"``."""
    if isinstance(value, str) and value and value[-1].lower() in _UNITS:
        return int(float(value[:-1]) * _UNITS[value[-1].lower()])
    return value


def host_config(given: Mapping[str, Any]) -> dict[str, Any]:
    """The Engine API's ``HostConfig`` for docker-py-style ``hostconfig`` keywords (CamelCase
    fields pass through as they are); ValueError names an unknown keyword."""
    out: dict[str, Any] = {}
    for key, given_value in given.items():
        if key[:1].isupper():
            out[key] = given_value
            continue
        field = _HOSTCONFIG_KEYS.get(key)
        if field is None:
            raise ValueError(
                f"hostconfig key {key!r} is not known (known: {', '.join(sorted(_HOSTCONFIG_KEYS))}"
                "; or give the Engine API's CamelCase field)"
            )
        out[field] = _host_value(key, given_value)
    return out


def _camel(item: Mapping[str, Any]) -> dict[str, Any]:
    return {k[:1].upper() + k[1:]: v for k, v in item.items()}


def _host_value(key: str, value: Any) -> Any:
    if key in ("mem_limit", "memswap_limit", "shm_size"):
        return _size(value)
    if key == "extra_hosts" and isinstance(value, Mapping):
        return [f"{h}:{ip}" for h, ip in value.items()]
    if key == "restart_policy" and isinstance(value, Mapping):
        return _camel(value)
    if key == "ulimits" and isinstance(value, list):
        return [_camel(u) if isinstance(u, Mapping) else u for u in value]
    return value


class DockerEngine:
    """A client of one Docker Engine (``docker_host``); a session per use."""

    def __init__(self, docker_host: str, *, version: str | None = None, tls: object = None) -> None:
        url = urllib.parse.urlsplit(docker_host)
        self._socket: str | None = None
        if url.scheme in ("unix", "http+unix"):
            self._socket = url.path
            self.base = "http://docker"
        elif url.scheme in ("tcp", "http", "https"):
            scheme = "https" if tls or url.scheme == "https" else "http"
            self.base = f"{scheme}://{url.netloc}"
        else:
            raise ValueError(f"docker_host {docker_host!r}: use unix:///path or tcp://host:port")
        if version not in (None, "auto"):
            self.base += f"/v{str(version).removeprefix('v')}"
        self._ssl = _ssl_context(tls)
        if self._ssl is None and self.base.startswith("https:"):
            # https without tls settings: the engine's certificate is checked against the
            # system's CAs (docker-py's TLSConfig(verify=False) or a context turns that off)
            self._ssl = ssl.create_default_context()
        self._session: aiohttp.ClientSession | None = None

    async def __aenter__(self) -> DockerEngine:
        connector: aiohttp.BaseConnector
        if self._socket is not None:
            connector = aiohttp.UnixConnector(path=self._socket)
        else:
            connector = aiohttp.TCPConnector(ssl=self._ssl if self._ssl is not None else False)
        self._session = aiohttp.ClientSession(connector=connector, timeout=_API_TIMEOUT)
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    async def request(
        self,
        method: str,
        path: str,
        *,
        params: Mapping[str, str] | None = None,
        body: object = None,
        data: bytes | None = None,
        headers: Mapping[str, str] | None = None,
        ok: Sequence[int] = (200, 201, 204, 304),
    ) -> tuple[int, bytes]:
        assert self._session is not None, "use 'async with DockerEngine(...)'"
        try:
            async with self._session.request(
                method,
                self.base + path,
                params=params,
                json=body if data is None and body is not None else None,
                data=data,
                headers=headers,
            ) as resp:
                content = await resp.read()
                status = resp.status
        except aiohttp.ClientError as exc:
            raise DockerError(f"docker engine {self.base}: {exc}") from exc
        if status not in ok:
            try:
                message = json.loads(content).get("message", "")
            except (ValueError, AttributeError):
                message = content.decode(errors="replace")[:300]
            raise DockerError(f"{method} {path}: {status} {message}".strip(), status=status)
        return status, content

    async def json(self, method: str, path: str, **kwargs: Any) -> Any:
        _status, content = await self.request(method, path, **kwargs)
        return json.loads(content) if content.strip() else None

    async def image_exists(self, image: str) -> bool:
        status, _ = await self.request(
            "GET", f"/images/{urllib.parse.quote(image, safe='')}/json", ok=(200, 404)
        )
        return status == 200

    async def pull(self, image: str) -> None:
        name, _, tag = image.rpartition(":") if ":" in image.rsplit("/", 1)[-1] else (image, "", "")
        params = {"fromImage": name, "tag": tag or "latest"}
        _, content = await self.request("POST", "/images/create", params=params)
        _raise_stream_error(content, f"pulling {image}")

    async def build(self, context: bytes, *, params: Mapping[str, str], gzipped: bool) -> bytes:
        headers = {"Content-Type": "application/x-tar"}
        if gzipped:
            headers["Content-Encoding"] = "gzip"
        _, content = await self.request(
            "POST", "/build", params=params, data=context, headers=headers
        )
        _raise_stream_error(content, "building the image")
        return content

    async def containers(self, *, name: str | None = None, labels: Sequence[str] = ()) -> Any:
        filters: dict[str, list[str]] = {}
        if name is not None:
            filters["name"] = [name]
        if labels:
            filters["label"] = list(labels)
        return await self.json(
            "GET", "/containers/json", params={"all": "1", "filters": json.dumps(filters)}
        )

    async def remove(self, container_id: str) -> None:
        await self.request(
            "DELETE",
            f"/containers/{container_id}",
            params={"v": "1", "force": "1"},
            ok=(200, 204, 404, 409),
        )


def _raise_stream_error(content: bytes, what: str) -> None:
    """The pull and build answers are JSON lines; an ``error`` line is a failure."""
    for line in content.splitlines():
        try:
            item = json.loads(line)
        except ValueError:
            continue
        if isinstance(item, Mapping) and item.get("error"):
            raise DockerError(f"{what}: {item['error']}")


def _ssl_context(tls: object) -> ssl.SSLContext | None:
    """``tls``: True (verify with the system's CAs), an ``ssl.SSLContext``, or docker-py's
    ``TLSConfig`` (its ``client_cert``/``cert``, ``ca_cert`` and ``verify``)."""
    if tls is None or tls is False:
        return None
    if isinstance(tls, ssl.SSLContext):
        return tls
    if tls is True:
        return ssl.create_default_context()
    ca = getattr(tls, "ca_cert", None)
    context = ssl.create_default_context(cafile=ca)
    if getattr(tls, "verify", True) is False:
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    cert = getattr(tls, "cert", None) or getattr(tls, "client_cert", None)
    if isinstance(cert, tuple | list) and len(cert) == 2:
        context.load_cert_chain(cert[0], cert[1])
    return context


class DockerLatentWorker(AbstractLatentWorker):
    """Buildbot's ``DockerLatentWorker(name, password, docker_host, image=None, ...)``.

    ``docker_host``, ``image``, ``dockerfile``, ``volumes``, ``hostconfig``, ``custom_context``,
    ``encoding``, ``target``, ``buildargs`` and ``hostname`` may be renderables, rendered with
    the properties of the build request the container is started for. ``build_wait_timeout``
    is 0 unless given (a container per build). The container gets Buildbot's environment:
    ``BUILDMASTER``, ``BUILDMASTER_PORT``, ``BUILDMASTER_PROTOCOL``, ``WORKERNAME``,
    ``WORKERPASS``; the port is the master's ``pb`` port for ``master_protocol='pb'`` and its
    msgpack port for ``'msgpack'``.
    """

    _secret_arguments = frozenset({"password"})

    def __init__(  # noqa: PLR0917 - Buildbot's arguments
        self,
        name: str,
        password: object = None,
        docker_host: object = "unix:///var/run/docker.sock",
        image: object = None,
        command: Sequence[str] | str | None = None,
        volumes: object = None,
        dockerfile: object = None,
        version: str | None = None,
        tls: object = None,
        followStartupLogs: bool = False,  # noqa: N803 - Buildbot's keyword
        masterFQDN: str | None = None,  # noqa: N803 - Buildbot's keyword
        master_protocol: str = "pb",
        hostconfig: object = None,
        autopull: bool = False,
        alwaysPull: bool = False,  # noqa: N803 - Buildbot's keyword
        custom_context: object = False,
        encoding: object = "gzip",
        target: object = "",
        buildargs: object = None,
        hostname: object = None,
        **kwargs: Any,
    ) -> None:
        kwargs.setdefault("build_wait_timeout", 0)  # starting a container is quick
        super().__init__(name, password, **kwargs)
        label = f"worker {self.name!r}"
        self.docker_host = docker_host
        self.image = image
        self.command: list[str] = [command] if isinstance(command, str) else list(command or [])
        self.volumes = volumes if volumes is not None else []
        self.dockerfile = dockerfile
        self.version = version
        self.tls = tls
        self.followStartupLogs = followStartupLogs
        self.masterFQDN = masterFQDN
        self.master_protocol = master_protocol
        self.hostconfig = hostconfig if hostconfig is not None else {}
        self.autopull = autopull
        self.alwaysPull = alwaysPull
        self.custom_context = custom_context
        self.encoding = encoding
        self.target = target
        self.buildargs = buildargs
        self.hostname = hostname
        #: the running container: its id and image
        self.instance: dict[str, Any] | None = None
        self._engine_args: tuple[str, str | None, object] | None = None

        if image is None and dockerfile is None:
            config_error(f"{label}: DockerLatentWorker needs an image name or a dockerfile")
        if image is not None and not isinstance(image, str) and not is_renderable(image):
            config_error(f"{label}: image must be a string")
        if not isinstance(docker_host, str) and not is_renderable(docker_host):
            config_error(f"{label}: docker_host must be a string such as unix:///path")
        if master_protocol not in ("pb", "msgpack"):
            config_error(f"{label}: master_protocol must be 'pb' or 'msgpack'")
        if not all(isinstance(c, str) for c in self.command):
            config_error(f"{label}: command must be a list of strings")
        if isinstance(self.volumes, list):
            for volume in self.volumes:
                if isinstance(volume, str) and ":" not in volume:
                    config_error(
                        f"{label}: volume {volume!r} is not 'host path:container path[:ro]'"
                    )
        elif not is_renderable(self.volumes):
            config_error(f"{label}: volumes must be a list of 'host:container' strings")
        if isinstance(self.hostconfig, Mapping):
            try:
                host_config(self.hostconfig)
            except ValueError as exc:
                config_error(f"{label}: {exc}")
        elif not is_renderable(self.hostconfig):
            config_error(f"{label}: hostconfig must be a dictionary")
        if isinstance(encoding, str) and encoding not in ("gzip", "identity", ""):
            config_error(f"{label}: encoding must be 'gzip' or 'identity'")

    # -- naming ---------------------------------------------------------------------------------

    def getContainerName(self) -> str:  # noqa: N802 - Buildbot's name
        masterhash = self.master_info.masterhash if self.master_info is not None else "000000"
        return f"buildbot-{self.name}-{masterhash}".replace("_", "-")

    @property
    def shortid(self) -> str | None:
        return None if self.instance is None else str(self.instance["Id"])[:6]

    def _labels(self) -> dict[str, str]:
        assert self.master_info is not None
        return {LABEL_MASTER: self.master_info.identity, LABEL_WORKER: self.name}

    def createEnvironment(self) -> dict[str, str]:  # noqa: N802 - Buildbot's name
        info = self.master_info
        assert info is not None
        return worker_environment(
            info,
            fqdn=self.masterFQDN or socket.getfqdn(),
            protocol=self.master_protocol,
            name=self.name,
            password=self.login_password,
        )

    # -- lifecycle ------------------------------------------------------------------------------

    async def start_instance(self, build: Any) -> bool:
        if self.instance is not None:
            raise ValueError("instance active")
        rendered = [
            await build.render(v)
            for v in (
                self.docker_host,
                self.image,
                self.dockerfile,
                self.volumes,
                self.hostconfig,
                self.custom_context,
                self.encoding,
                self.target,
                self.buildargs,
                self.hostname,
            )
        ]
        docker_host, image, dockerfile, volumes, hostconfig = rendered[:5]
        custom_context, encoding, target, buildargs, hostname = rendered[5:]
        engine_args = (str(docker_host), self.version, self.tls)
        self._engine_args = engine_args
        async with DockerEngine(*engine_args[:1], version=self.version, tls=self.tls) as engine:
            container_name = self.getContainerName()
            # a container of the same name left by an earlier start goes first
            for old in await engine.containers(name=container_name):
                if f"/{container_name}" in (old.get("Names") or []):
                    await engine.remove(old["Id"])
            found = image is not None and await engine.image_exists(str(image))
            if image is None:
                image = f"{self.name}_{id(self)}_image".lower()
            if not found and dockerfile is not None:
                log.info("docker_image_building", worker=self.name, image=image)
                await self._build_image(
                    engine,
                    str(image),
                    dockerfile,
                    custom_context=custom_context,
                    encoding=encoding,
                    target=target,
                    buildargs=buildargs,
                )
            exists = await engine.image_exists(str(image))
            if (not exists or self.alwaysPull) and self.autopull:
                log.info("docker_image_pulling", worker=self.name, image=image)
                await engine.pull(str(image))
                exists = await engine.image_exists(str(image))
            if not exists:
                raise LatentWorkerCannotSubstantiate(f'Image "{image}" not found on docker host.')
            binds = [str(v) for v in volumes or []]
            mounts: dict[str, dict[str, str]] = {}
            for bind in binds:
                _host, _, inside = bind.partition(":")
                mounts[inside.removesuffix(":ro").removesuffix(":rw")] = {}
            config_host = host_config(hostconfig or {})
            config_host["Binds"] = [*config_host.get("Binds", []), *binds]
            config_host.setdefault("Init", True)
            body: dict[str, Any] = {
                "Image": str(image),
                "Env": [f"{k}={v}" for k, v in self.createEnvironment().items()],
                "Labels": self._labels(),
                "HostConfig": config_host,
                "Volumes": mounts,
            }
            if self.command:
                body["Cmd"] = list(self.command)
            if hostname:
                body["Hostname"] = str(hostname)
            created = await engine.json(
                "POST", "/containers/create", params={"name": container_name}, body=body
            )
            container_id = (created or {}).get("Id")
            if not container_id:
                raise DockerError("the engine created no container")
            self.instance = {"Id": container_id, "image": str(image)}
            log.info("docker_container_created", worker=self.name, id=container_id[:12])
            await engine.request("POST", f"/containers/{container_id}/start")
            log.info("docker_container_started", worker=self.name, id=container_id[:12])
        return True

    async def _build_image(
        self,
        engine: DockerEngine,
        image: str,
        dockerfile: object,
        *,
        custom_context: object,
        encoding: object,
        target: object,
        buildargs: object,
    ) -> None:
        params = {"t": image, "pull": "1" if self.alwaysPull else "0", "rm": "1"}
        if target:
            params["target"] = str(target)
        if buildargs:
            params["buildargs"] = json.dumps(dict(buildargs))  # type: ignore[call-overload]
        if custom_context:
            # dockerfile names a tar archive holding the context (and its Dockerfile)
            context = await asyncio.to_thread(Path(str(dockerfile)).read_bytes)
            gzipped = encoding == "gzip"
        else:
            text = str(dockerfile).encode()
            buffer = io.BytesIO()
            with tarfile.open(fileobj=buffer, mode="w") as tar:
                info = tarfile.TarInfo("Dockerfile")
                info.size = len(text)
                tar.addfile(info, io.BytesIO(text))
            context = gzip.compress(buffer.getvalue())
            gzipped = True
        await engine.build(context, params=params, gzipped=gzipped)

    async def check_instance(self) -> tuple[bool, str]:
        if self.instance is None or self._engine_args is None:
            return True, ""
        async with DockerEngine(self._engine_args[0], version=self.version, tls=self.tls) as engine:
            status, content = await engine.request(
                "GET", f"/containers/{self.instance['Id']}/json", ok=(200, 404)
            )
            if status == 404:
                return False, "the container is gone"
            state = (json.loads(content).get("State") or {}).get("Status")
            if state in ("exited", "dead"):
                _, logs = await engine.request(
                    "GET",
                    f"/containers/{self.instance['Id']}/logs",
                    params={"stdout": "1", "stderr": "1", "tail": "100"},
                )
                return False, "logs: \n" + _demux(logs)
        return True, ""

    async def while_starting(self) -> None:
        if not self.followStartupLogs or self.instance is None or self._engine_args is None:
            return
        async with DockerEngine(self._engine_args[0], version=self.version, tls=self.tls) as engine:
            assert engine._session is not None
            short = str(self.instance["Id"])[:6]
            async with engine._session.get(
                f"{engine.base}/containers/{self.instance['Id']}/logs",
                params={"follow": "1", "stdout": "1", "stderr": "1"},
            ) as resp:
                while True:
                    header = await resp.content.readexactly(8)
                    size = int.from_bytes(header[4:], "big")
                    chunk = await resp.content.readexactly(size)
                    for line in chunk.decode(errors="replace").splitlines():
                        log.info("docker_startup_log", worker=self.name, id=short, line=line)

    async def stop_instance(self, fast: bool = False) -> None:
        if self.instance is None or self._engine_args is None:
            return
        instance, self.instance = self.instance, None
        container_id = instance["Id"]
        async with DockerEngine(self._engine_args[0], version=self.version, tls=self.tls) as engine:
            status, _ = await engine.request(
                "POST",
                f"/containers/{container_id}/stop",
                params={"t": str(STOP_TIMEOUT)},
                ok=(204, 304, 404),
            )
            if status != 404 and not fast:
                await engine.request("POST", f"/containers/{container_id}/wait", ok=(200, 404))
            await engine.remove(container_id)
        log.info("docker_container_removed", worker=self.name, id=container_id[:12])

    async def cleanup_orphans(self) -> int:
        if isinstance(self.docker_host, str):
            docker_host = self.docker_host
        else:  # rendered without a build: what it gives for no properties
            docker_host = str(await Properties().render(self.docker_host))
        async with DockerEngine(docker_host, version=self.version, tls=self.tls) as engine:
            labels = [f"{k}={v}" for k, v in self._labels().items()]
            found = await engine.containers(labels=labels)
            for container in found:
                await engine.remove(container["Id"])
                log.warning(
                    "docker_orphan_removed",
                    worker=self.name,
                    id=str(container["Id"])[:12],
                    state=container.get("State"),
                )
            return len(found)


def _demux(content: bytes) -> str:
    """The text of a logs answer: Docker's 8-byte-header frames, or plain text (a TTY)."""
    out: list[bytes] = []
    rest = content
    while len(rest) >= 8 and rest[0] in (0, 1, 2) and rest[1:4] == b"\0\0\0":
        size = int.from_bytes(rest[4:8], "big")
        out.append(rest[8 : 8 + size])
        rest = rest[8 + size :]
    out.append(rest)
    return b"".join(out).decode(errors="replace")
