"""``worker.OpenStackLatentWorker``: a latent worker whose instance is an OpenStack server.

Buildbot drives OpenStack through python-novaclient and keystoneauth1, both synchronous (a thread
per call) and both large; the dozen calls a latent worker makes are plain REST, so buildyard
speaks the documented APIs itself with aiohttp (already the master's HTTP library) and needs no
extra package:

- Keystone v3: ``POST /v3/auth/tokens`` (password or application credential), the token from
  ``X-Subject-Token`` and the endpoints from the token's catalog (``region`` chooses among them;
  the public interface);
- Nova (compute, ``client_version`` as the microversion): ``GET /flavors``, ``POST /servers``,
  ``GET /servers/{id}``, ``GET /servers/detail?name=``, ``DELETE /servers/{id}``;
- Glance v2 (image): ``GET /v2/images`` and ``GET /v2/images/{id}`` to find ``image`` by name or
  id, offer the list to a callable ``image``, and size volumes made from images;
- Cinder (block storage): the size of a volume or snapshot a block device is made from.

A server is named after the worker and carries Buildbot's metadata ``BUILDBOT:instance=<master
hash>`` plus ``buildyard:master=<identity of the master>``: a restarted master deletes the
servers its killed run left.
"""

from __future__ import annotations

import asyncio
import base64
import datetime
import json
import math
import re
import time
import types
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import aiohttp
import structlog

from buildyard.common.errors import config_error
from buildyard.master.model.properties import Properties, is_renderable
from buildyard.master.workers.config import (
    AbstractLatentWorker,
    LatentWorkerCannotSubstantiate,
    LatentWorkerFailedToSubstantiate,
)

log = structlog.get_logger(__name__)

__all__ = ["OpenStackError", "OpenStackLatentWorker"]

ACTIVE = "ACTIVE"
BUILD = "BUILD"
DELETED = "DELETED"
UNKNOWN = "UNKNOWN"
_ENDED = frozenset({"ERROR", DELETED, "SHUTOFF", "SOFT_DELETED", UNKNOWN})
META_MASTER = "buildyard:master"
META_MASTERHASH = "BUILDBOT:instance"
_API_TIMEOUT = aiohttp.ClientTimeout(total=120, sock_connect=30)
_AUTH_TYPES = ("password", "v3password", "v3applicationcredential", "token", "v3token")
_SOURCE_TYPES = ("image", "snapshot", "volume", "blank")


class OpenStackError(LatentWorkerFailedToSubstantiate):
    """Keystone or Nova refused a call (``status``), or could not be reached."""

    def __init__(self, message: str, *, status: int | None = None) -> None:
        super().__init__(message)
        self.status = status


def _parse_block_device(label: str, given: object) -> dict[str, Any] | None:
    """Buildbot's defaults for a block device (as Horizon shows them)."""
    if not isinstance(given, Mapping):
        config_error(f"{label}: each of block_devices must be a dictionary, not {given!r}")
        return None
    if "uuid" not in given:
        config_error(f"{label}: a block device needs 'uuid' (the image, snapshot or volume)")
        return None
    source = given.get("source_type", "image")
    if isinstance(source, str) and source not in _SOURCE_TYPES:
        config_error(f"{label}: block device source_type must be one of {', '.join(_SOURCE_TYPES)}")
    device = {
        "device_name": given.get("device_name", "vda"),
        "source_type": source,
        "destination_type": given.get("destination_type", "volume"),
        "delete_on_termination": bool(given.get("delete_on_termination", True)),
        "uuid": given["uuid"],
        "boot_index": given.get("boot_index", 0),
        # None: the smallest size that holds the source, found at each start
        "volume_size": given.get("volume_size"),
    }
    if not is_renderable(device["boot_index"]):
        try:
            device["boot_index"] = int(device["boot_index"])
        except (TypeError, ValueError):
            config_error(f"{label}: block device boot_index must be an integer")
    return device


# novaclient's servers.create() keywords, as the body of Nova's POST /servers says them
def _nova_body(nova_args: Mapping[str, Any]) -> dict[str, Any]:
    body: dict[str, Any] = {}
    for key, value in nova_args.items():
        if key == "nics":
            if isinstance(value, str):
                body["networks"] = value  # 'auto' or 'none'
            else:
                networks = []
                for nic in value:
                    net: dict[str, Any] = {}
                    for given, field in (
                        ("net-id", "uuid"),
                        ("port-id", "port"),
                        ("v4-fixed-ip", "fixed_ip"),
                        ("v6-fixed-ip", "fixed_ip"),
                        ("tag", "tag"),
                    ):
                        if nic.get(given):
                            net[field] = nic[given]
                    networks.append(net or dict(nic))
                body["networks"] = networks
        elif key == "security_groups":
            body["security_groups"] = [
                {"name": g} if isinstance(g, str) else dict(g) for g in value
            ]
        elif key in ("userdata", "user_data"):
            data = value.encode() if isinstance(value, str) else bytes(value)
            body["user_data"] = base64.b64encode(data).decode()
        elif key == "scheduler_hints":
            body["os:scheduler_hints"] = dict(value)
        elif key == "admin_pass":
            body["adminPass"] = value
        elif key == "disk_config":
            body["OS-DCF:diskConfig"] = value
        else:
            # availability_zone, key_name, config_drive, min_count, description, tags, ... are
            # Nova's own field names; anything else goes into the body as given
            body[key] = value
    return body


class _Cloud:
    """A Keystone token, the endpoints of its catalog, and the calls made with them."""

    def __init__(self, auth_args: Mapping[str, Any], region: str | None, version: str) -> None:
        self.auth_args = auth_args
        self.region = region
        self.version = version
        self.token: str | None = None
        self.expires = 0.0
        self.catalog: list[dict[str, Any]] = []

    def _auth_url(self) -> str:
        url = str(self.auth_args["auth_url"]).rstrip("/")
        return url if url.endswith("/v3") else url + "/v3"

    def _auth_body(self, args: Mapping[str, Any]) -> dict[str, Any]:
        kind = str(args.get("auth_type", "password"))

        def domain(prefix: str) -> dict[str, str]:
            if args.get(f"{prefix}_domain_id"):
                return {"id": str(args[f"{prefix}_domain_id"])}
            return {"name": str(args.get(f"{prefix}_domain_name") or "Default")}

        if kind in ("v3applicationcredential",):
            credential: dict[str, Any] = {"secret": str(args["application_credential_secret"])}
            if args.get("application_credential_id"):
                credential["id"] = str(args["application_credential_id"])
            else:
                credential["name"] = str(args["application_credential_name"])
                credential["user"] = {"name": str(args["username"]), "domain": domain("user")}
            return {
                "auth": {
                    "identity": {
                        "methods": ["application_credential"],
                        "application_credential": credential,
                    }
                }
            }
        if kind in ("token", "v3token"):
            identity: dict[str, Any] = {"methods": ["token"], "token": {"id": str(args["token"])}}
        else:
            user: dict[str, Any] = {"password": str(args["password"])}
            if args.get("user_id"):
                user["id"] = str(args["user_id"])
            else:
                user["name"] = str(args["username"])
                user["domain"] = domain("user")
            identity = {"methods": ["password"], "password": {"user": user}}
        auth: dict[str, Any] = {"identity": identity}
        project_id = args.get("project_id") or args.get("tenant_id")
        project_name = args.get("project_name") or args.get("tenant_name")
        if project_id:
            auth["scope"] = {"project": {"id": str(project_id)}}
        elif project_name:
            auth["scope"] = {"project": {"name": str(project_name), "domain": domain("project")}}
        elif args.get("domain_name") or args.get("domain_id"):
            auth["scope"] = {"domain": _scope_domain(args)}
        return {"auth": auth}

    async def authenticate(self, session: aiohttp.ClientSession) -> None:
        args = await Properties().render(dict(self.auth_args))  # secrets in os_password, ...
        url = self._auth_url() + "/auth/tokens"
        try:
            async with session.post(url, json=self._auth_body(args)) as resp:
                status = resp.status
                data = await _json(resp)
                token = resp.headers.get("X-Subject-Token")
        except (aiohttp.ClientError, OSError) as exc:
            raise OpenStackError(f"keystone {url}: {exc}") from exc
        if status != 201 or not token:
            raise OpenStackError(
                f"keystone refused the credentials: {status} {_message(data)}", status=status
            )
        body = data.get("token") or {}
        self.token = token
        self.catalog = list(body.get("catalog") or [])
        self.expires = time.monotonic() + _lifetime(body.get("expires_at"))

    def endpoint(self, *types_: str) -> str:
        for service in self.catalog:
            if service.get("type") not in types_:
                continue
            for endpoint in service.get("endpoints") or []:
                if endpoint.get("interface", "public") != "public":
                    continue
                if self.region and self.region not in (
                    endpoint.get("region"),
                    endpoint.get("region_id"),
                ):
                    continue
                return str(endpoint["url"]).rstrip("/")
        where = f" in region {self.region}" if self.region else ""
        raise OpenStackError(f"the catalog has no public {' or '.join(types_)} endpoint{where}")

    async def call(
        self,
        session: aiohttp.ClientSession,
        method: str,
        service: tuple[str, ...],
        path: str,
        *,
        params: Mapping[str, str] | None = None,
        body: object = None,
        ok: Sequence[int] = (200, 201, 202, 204),
    ) -> tuple[int, Any]:
        for attempt in (1, 2):
            if self.token is None or time.monotonic() >= self.expires:
                await self.authenticate(session)
            assert self.token is not None
            headers = {"X-Auth-Token": self.token, "Accept": "application/json"}
            if "compute" in service and self.version != "2":
                headers["X-OpenStack-Nova-API-Version"] = self.version
                headers["OpenStack-API-Version"] = f"compute {self.version}"
            url = self.endpoint(*service) + path
            try:
                async with session.request(
                    method, url, params=params, json=body, headers=headers
                ) as resp:
                    status = resp.status
                    data = await _json(resp)
            except (aiohttp.ClientError, OSError) as exc:
                raise OpenStackError(f"{method} {url}: {exc}") from exc
            if status == 401 and attempt == 1:
                self.token = None  # expired early or revoked: authenticate again, once
                continue
            if status not in ok:
                raise OpenStackError(f"{method} {path}: {status} {_message(data)}", status=status)
            return status, data
        raise AssertionError("unreachable")


def _scope_domain(args: Mapping[str, Any]) -> dict[str, str]:
    if args.get("domain_id"):
        return {"id": str(args["domain_id"])}
    return {"name": str(args["domain_name"])}


def _lifetime(expires_at: object) -> float:
    """Seconds the token lives, less a minute (an hour when Keystone does not say)."""
    if isinstance(expires_at, str):
        try:
            end = datetime.datetime.fromisoformat(expires_at.replace("Z", "+00:00"))
            return max(0.0, end.timestamp() - time.time() - 60)
        except ValueError:
            pass
    return 3600.0


async def _json(resp: aiohttp.ClientResponse) -> Any:
    text = await resp.text()
    try:
        return json.loads(text) if text.strip() else {}
    except ValueError:
        return {"message": text[:200]}


def _message(data: Any) -> str:
    """Nova's ``{"badRequest": {"message": ...}}``, Keystone's ``{"error": {...}}``, ..."""
    if isinstance(data, Mapping):
        if isinstance(data.get("message"), str):
            return str(data["message"])
        for value in data.values():
            if isinstance(value, Mapping) and "message" in value:
                return str(value["message"])
    return str(data)[:200]


class OpenStackLatentWorker(AbstractLatentWorker):
    """Buildbot's ``OpenStackLatentWorker(name, password, flavor, os_username=None,
    os_password=None, os_tenant_name=None, os_auth_url=None, os_user_domain=None,
    os_project_domain=None, os_auth_args=None, block_devices=None, region=None, image=None,
    meta=None, nova_args=None, client_version='2', **worker_keywords)``.

    ``flavor`` (a name or id), ``image`` (a name or id), ``block_devices``' values, ``meta`` and
    ``nova_args`` may be renderables, rendered with the properties of the build request the
    server is started for; ``image`` may also be a function given the list of images (objects
    with Glance's fields as attributes: ``id``, ``name``, ``created_at``, ``size``, ...) that
    returns the one to boot (or its id).
    """

    _secret_arguments = frozenset({"password", "os_password", "os_auth_args"})
    #: seconds between two looks at a building or deleting server (Buildbot's hook point)
    _poll_resolution: float = 5

    def __init__(  # noqa: PLR0915, PLR0917 - Buildbot's arguments
        self,
        name: str,
        password: object,
        flavor: object,
        os_username: object = None,
        os_password: object = None,
        os_tenant_name: object = None,
        os_auth_url: object = None,
        os_user_domain: object = None,
        os_project_domain: object = None,
        os_auth_args: object = None,
        block_devices: object = None,
        region: object = None,
        image: object = None,
        meta: object = None,
        nova_args: object = None,
        client_version: object = "2",
        **kwargs: Any,
    ) -> None:
        super().__init__(name, password, **kwargs)
        label = f"worker {self.name!r}"
        if block_devices is None and image is None:
            config_error(f"{label}: one of block_devices or image must be given")
        if image is not None and not (
            isinstance(image, str) or is_renderable(image) or callable(image)
        ):
            config_error(f"{label}: image must be a name, an id, or a function choosing one")
        if flavor is None or not (isinstance(flavor, str | int) or is_renderable(flavor)):
            config_error(f"{label}: flavor must be a flavor's name or id, not {flavor!r}")
        auth: dict[str, Any] = {}
        if os_auth_args is None:
            if os_auth_url is None:
                config_error(f"{label}: os_auth_url is required (or os_auth_args with auth_url)")
            if os_username is None or os_password is None:
                config_error(f"{label}: os_username and os_password are required (or os_auth_args)")
            auth = {"auth_url": os_auth_url, "username": os_username, "password": os_password}
            for key, value in (
                ("project_name", os_tenant_name),
                ("user_domain_name", os_user_domain),
                ("project_domain_name", os_project_domain),
            ):
                if value is not None:
                    auth[key] = value
        elif not isinstance(os_auth_args, Mapping):
            config_error(f"{label}: os_auth_args must be a dictionary")
        else:
            auth = dict(os_auth_args)
            if auth.get("auth_url") is None:
                config_error(f"{label}: os_auth_args has no 'auth_url'")
            kind = auth.get("auth_type", "password")
            if kind not in _AUTH_TYPES:
                config_error(
                    f"{label}: os_auth_args auth_type {kind!r} is not supported "
                    f"(supported: {', '.join(_AUTH_TYPES)})"
                )
        url = auth.get("auth_url")
        if isinstance(url, str) and re.search(r"/v2\.0/?$", url):
            config_error(
                f"{label}: auth_url {url!r} is Keystone v2.0, which OpenStack removed; "
                "give the v3 URL (.../v3, or the identity service's root)"
            )
        if not isinstance(client_version, str) or not re.fullmatch(r"2(\.\d+)?", client_version):
            config_error(
                f"{label}: client_version must be '2' or '2.<microversion>', not {client_version!r}"
            )
        if region is not None and not isinstance(region, str):
            config_error(f"{label}: region must be a string")
        self.block_devices: list[dict[str, Any]] | None = None
        if block_devices is not None:
            if not isinstance(block_devices, list | tuple):
                config_error(f"{label}: block_devices must be a list of dictionaries")
            else:
                parsed = [_parse_block_device(label, bd) for bd in block_devices]
                self.block_devices = [bd for bd in parsed if bd is not None]
        for keyword, value in (("meta", meta), ("nova_args", nova_args)):
            if value is not None and not isinstance(value, Mapping) and not is_renderable(value):
                config_error(f"{label}: {keyword} must be a dictionary")
        self.flavor = flavor
        self.image = image
        self.meta = meta
        self.nova_args = nova_args if nova_args is not None else {}
        self.region = region
        self.client_version = str(client_version)
        self.os_auth_args = auth
        #: the running server: its id and name
        self.instance: dict[str, Any] | None = None
        self._cloud: _Cloud | None = None

    # -- helpers --------------------------------------------------------------------------------

    def _get_cloud(self) -> _Cloud:
        if self._cloud is None:
            region = self.region if isinstance(self.region, str) else None
            self._cloud = _Cloud(self.os_auth_args, region, self.client_version)
        return self._cloud

    @staticmethod
    def _session() -> aiohttp.ClientSession:
        return aiohttp.ClientSession(timeout=_API_TIMEOUT)

    @property
    def masterhash(self) -> str:
        return self.master_info.masterhash if self.master_info is not None else "000000"

    async def _images(self, session: aiohttp.ClientSession) -> list[dict[str, Any]]:
        cloud = self._get_cloud()
        images: list[dict[str, Any]] = []
        params: dict[str, str] | None = {"limit": "100"}
        path = "/v2/images"
        for _page in range(100):  # bounded: 10,000 images
            _, data = await cloud.call(session, "GET", ("image",), path, params=params)
            images += data.get("images") or []
            following = data.get("next")
            if not following:
                break
            path, _, query = str(following).removeprefix("/v2/images").partition("?")
            path = "/v2/images" + path
            params = dict(p.split("=", 1) for p in query.split("&") if "=" in p)
        return images

    async def _find_image(self, session: aiohttp.ClientSession, build: Any) -> str | None:
        cloud = self._get_cloud()
        if self.image is None:
            return None
        if callable(self.image) and not is_renderable(self.image):
            images = await self._images(session)
            choices = [types.SimpleNamespace(**i) for i in images]
            chooser: Callable[[list[Any]], Any] = self.image
            chosen = await asyncio.to_thread(chooser, choices)
            if chosen is None:
                raise LatentWorkerCannotSubstantiate("the image function chose no image")
            return str(chosen if isinstance(chosen, str) else getattr(chosen, "id", chosen))
        wanted = str(await build.render(self.image))
        status, data = await cloud.call(
            session, "GET", ("image",), f"/v2/images/{wanted}", ok=(200, 404)
        )
        if status == 200:
            return str(data["id"])
        _, data = await cloud.call(
            session, "GET", ("image",), "/v2/images", params={"name": wanted}
        )
        found = data.get("images") or []
        if not found:
            raise LatentWorkerCannotSubstantiate(f"Cannot find OpenStack image {wanted}")
        if len(found) > 1:
            raise LatentWorkerCannotSubstantiate(
                f"several OpenStack images are named {wanted}: give its id"
            )
        return str(found[0]["id"])

    async def _find_flavor(self, session: aiohttp.ClientSession, build: Any) -> str:
        wanted = str(await build.render(self.flavor))
        _, data = await self._get_cloud().call(session, "GET", ("compute",), "/flavors")
        for flavor in data.get("flavors") or []:
            if flavor.get("name") == wanted:
                return str(flavor["id"])
        return wanted

    async def _volume_size(self, session: aiohttp.ClientSession, source: str, uuid: str) -> int:
        """The smallest size in GiB that holds the source of a block device."""
        cloud = self._get_cloud()
        if source == "image":
            _, image = await cloud.call(session, "GET", ("image",), f"/v2/images/{uuid}")
            return max(1, math.ceil(int(image.get("size") or 0) / 1024**3))
        cinder = ("block-storage", "volumev3", "volume")
        if source == "volume":
            _, data = await cloud.call(session, "GET", cinder, f"/volumes/{uuid}")
            return int(data["volume"]["size"])
        if source == "snapshot":
            _, data = await cloud.call(session, "GET", cinder, f"/snapshots/{uuid}")
            return int(data["snapshot"]["size"])
        raise LatentWorkerCannotSubstantiate(
            f"The source type '{source}' for UUID '{uuid}' is unknown"
        )

    async def _servers_of_mine(self, session: aiohttp.ClientSession) -> list[dict[str, Any]]:
        _, data = await self._get_cloud().call(
            session,
            "GET",
            ("compute",),
            "/servers/detail",
            params={"name": f"^{re.escape(self.name)}$"},
        )
        return [s for s in data.get("servers") or [] if s.get("name") == self.name]

    # -- lifecycle ------------------------------------------------------------------------------

    async def start_instance(self, build: Any) -> bool:
        if self.instance is not None:
            raise ValueError("instance active")
        assert self.master_info is not None
        cloud = self._get_cloud()
        async with self._session() as session:
            image = await self._find_image(session, build)
            flavor = await self._find_flavor(session, build)
            nova_args = await build.render(self.nova_args)
            meta = dict(await build.render(self.meta) or {})
            meta[META_MASTERHASH] = self.masterhash
            meta[META_MASTER] = self.master_info.identity
            devices = None
            if self.block_devices is not None:
                devices = []
                for given in self.block_devices:
                    device = dict(await build.render(given))
                    if device["volume_size"] is None:
                        device["volume_size"] = await self._volume_size(
                            session, str(device["source_type"]), str(device["uuid"])
                        )
                    devices.append(device)
            # servers of this worker and master left by an earlier start go first
            for old in await self._servers_of_mine(session):
                if (old.get("metadata") or {}).get(META_MASTERHASH) == self.masterhash:
                    await cloud.call(
                        session, "DELETE", ("compute",), f"/servers/{old['id']}", ok=(204, 404)
                    )
            server: dict[str, Any] = {
                "name": self.name,
                "flavorRef": flavor,
                "metadata": {str(k): str(v) for k, v in meta.items()},
                **_nova_body(nova_args or {}),
            }
            server["imageRef"] = image or ""
            if devices:
                server["block_device_mapping_v2"] = devices
            _, created = await cloud.call(
                session, "POST", ("compute",), "/servers", body={"server": server}
            )
            server_id = str(created["server"]["id"])
            self.instance = {"id": server_id, "name": self.name, "image": image}
            log.info("openstack_server_created", worker=self.name, id=server_id, image=image)
            await self._wait_active(session, server_id)
        return True

    async def _wait_active(self, session: aiohttp.ClientSession, server_id: str) -> None:
        started = time.monotonic()
        while True:
            status, data = await self._get_cloud().call(
                session, "GET", ("compute",), f"/servers/{server_id}", ok=(200, 404)
            )
            if status == 404:
                raise LatentWorkerFailedToSubstantiate(f"server {server_id} went missing")
            server = data["server"]
            state = str(server.get("status"))
            if not state.startswith(BUILD):
                break
            if self.instance is None or self.instance["id"] != server_id:  # stopped meanwhile
                return
            await asyncio.sleep(self._poll_resolution)
        if state != ACTIVE:
            fault = (server.get("fault") or {}).get("message")
            raise LatentWorkerFailedToSubstantiate(
                f"server {server_id} is {state}, not ACTIVE" + (f": {fault}" if fault else "")
            )
        log.info(
            "openstack_server_active",
            worker=self.name,
            id=server_id,
            seconds=round(time.monotonic() - started, 1),
        )

    async def check_instance(self) -> tuple[bool, str]:
        instance = self.instance
        if instance is None:
            return True, ""
        async with self._session() as session:
            status, data = await self._get_cloud().call(
                session, "GET", ("compute",), f"/servers/{instance['id']}", ok=(200, 404)
            )
        if status == 404:
            return False, f"server {instance['id']} is gone"
        state = str(data["server"].get("status"))
        if state in _ENDED:
            return False, f"server {instance['id']} is {state}"
        return True, ""

    async def stop_instance(self, fast: bool = False) -> None:
        instance, self.instance = self.instance, None
        if instance is None:
            return
        cloud = self._get_cloud()
        async with self._session() as session:
            path = f"/servers/{instance['id']}"
            status, _ = await cloud.call(session, "DELETE", ("compute",), path, ok=(204, 404))
            log.info("openstack_server_deleting", worker=self.name, id=instance["id"])
            if status == 404 or fast:
                return
            for _ in range(120):  # bounded: 120 looks
                status, data = await cloud.call(session, "GET", ("compute",), path, ok=(200, 404))
                if status == 404 or data["server"].get("status") == DELETED:
                    break
                await asyncio.sleep(self._poll_resolution)
        log.info("openstack_server_deleted", worker=self.name, id=instance["id"])

    async def cleanup_orphans(self) -> int:
        assert self.master_info is not None
        cloud = self._get_cloud()
        count = 0
        async with self._session() as session:
            for server in await self._servers_of_mine(session):
                if (server.get("metadata") or {}).get(META_MASTER) != self.master_info.identity:
                    continue
                if server.get("status") in (DELETED, UNKNOWN):
                    continue
                await cloud.call(
                    session, "DELETE", ("compute",), f"/servers/{server['id']}", ok=(204, 404)
                )
                log.warning(
                    "openstack_orphan_deleted",
                    worker=self.name,
                    id=server["id"],
                    status=server.get("status"),
                )
                count += 1
        return count
