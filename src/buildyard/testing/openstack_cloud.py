"""A stand-in for an OpenStack cloud (Keystone v3, Nova, Glance v2), for tests where none runs.

Shaped like the documented APIs that ``OpenStackLatentWorker`` uses:

- Keystone: ``POST /identity/v3/auth/tokens`` with a password (or application credential)
  identity and a project scope; 201 with the token in ``X-Subject-Token`` and a body whose
  ``token.catalog`` lists the compute and image endpoints of ``RegionOne``; 401 with Keystone's
  ``{"error": {...}}`` otherwise. Every other call needs ``X-Auth-Token``.
- Nova, under ``/compute/v2.1``: ``GET /flavors``, ``POST /servers`` (202; 400 ``badRequest``
  for an unknown flavor or image; 403 ``forbidden`` "Quota exceeded for instances" past the
  project's quota), ``GET /servers/{id}``, ``GET /servers/detail`` with ``name`` (a regular
  expression, as Nova takes it), ``DELETE /servers/{id}`` (204; the server is gone once its
  process has ended).
- Glance, under ``/image``: ``GET /v2/images`` (with ``name``) and ``GET /v2/images/{id}``.

A server is a real process: the entrypoint of its image as given with ``--image
NAME=JSON-ARGV``, run with the server's metadata as its environment (the keys that are valid
variable names), as an image's boot script that reads the metadata service would; so the
buildyard-worker it runs really connects and builds. A server is ``BUILD`` for a moment, then
``ACTIVE``. Image ids are ``uuid5(URL namespace, name)``.

Every request is recorded; ``GET /_fake/requests`` returns them and ``GET /_fake/servers`` every
server with its process id (neither is OpenStack's).

Run: ``python -m buildyard.testing.openstack_cloud --port PORT --state DIR --user
NAME:PASSWORD:PROJECT[:QUOTA]... --image NAME=ARGV... --flavor NAME...``.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import re
import secrets
import time
import uuid
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from aiohttp import web

from buildyard.testing.instances import InstanceProcess, serve_until_stopped

REGION = "RegionOne"
PROJECT = web.RequestKey("project", str)
_ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


def image_id(name: str) -> str:
    return str(uuid.uuid5(uuid.NAMESPACE_URL, name))


def _nova_error(status: int, kind: str, message: str) -> web.Response:
    return web.json_response({kind: {"code": status, "message": message}}, status=status)


class Server:
    def __init__(self, project: str, body: dict[str, Any], root: Path) -> None:
        self.id = str(uuid.uuid4())
        self.project = project
        self.body = body
        self.status = "BUILD"
        self.process = InstanceProcess(root)
        self.deleting = False
        self.created = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())

    def to_json(self) -> dict[str, Any]:
        status = self.status
        if status == "ACTIVE" and not self.process.running and not self.deleting:
            status = "SHUTOFF"  # its process ended on its own
        return {
            "id": self.id,
            "name": self.body.get("name"),
            "status": status,
            "OS-EXT-STS:task_state": "deleting" if self.deleting else None,
            "metadata": self.body.get("metadata") or {},
            "flavor": {"id": self.body.get("flavorRef")},
            "image": {"id": self.body.get("imageRef")} if self.body.get("imageRef") else "",
            "tenant_id": self.project,
            "created": self.created,
            "links": [],
        }


class FakeCloud:
    def __init__(
        self,
        state: Path,
        users: dict[str, tuple[str, str, int | None]],
        images: dict[str, list[str]],
        flavors: list[str],
    ) -> None:
        self.state = state
        self.users = users
        self.images = {
            image_id(n): {
                "id": image_id(n),
                "name": n,
                "status": "active",
                "size": 2 * 1024**3 + 1,  # a little over 2 GiB: volumes made from it need 3
                "created_at": f"2026-01-{i + 1:02d}T00:00:00Z",
                "visibility": "public",
            }
            for i, n in enumerate(images)
        }
        self.entrypoints = {image_id(n): argv for n, argv in images.items()}
        self.flavors = {str(i + 1): n for i, n in enumerate(flavors)}
        self.tokens: dict[str, str] = {}  # token -> project
        self.servers: dict[str, Server] = {}
        self.requests: list[dict[str, Any]] = []
        self.base = ""
        self._tasks: set[asyncio.Task[None]] = set()

    def app(self) -> web.Application:
        app = web.Application(middlewares=[self._record])
        app.router.add_post("/identity/v3/auth/tokens", self.issue_token)
        app.router.add_get("/identity", self.identity_versions)
        app.router.add_get("/identity/", self.identity_versions)
        app.router.add_get("/identity/v3", self.identity_version)
        app.router.add_get("/identity/v3/", self.identity_version)
        nova = "/compute/v2.1"
        app.router.add_get(nova + "/flavors", self.flavor_list)
        app.router.add_get(nova + "/flavors/detail", self.flavor_list)
        app.router.add_post(nova + "/servers", self.server_create)
        app.router.add_get(nova + "/servers/detail", self.server_list)
        app.router.add_get(nova + "/servers", self.server_list)
        app.router.add_get(nova + "/servers/{id}", self.server_get)
        app.router.add_delete(nova + "/servers/{id}", self.server_delete)
        app.router.add_get("/image/v2/images", self.image_list)
        app.router.add_get("/image/v2/images/{id}", self.image_get)
        app.router.add_get("/_fake/requests", self.list_requests)
        app.router.add_get("/_fake/servers", self.fake_servers)
        app.on_shutdown.append(self._kill_all)
        return app

    @web.middleware
    async def _record(
        self, request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
    ) -> web.StreamResponse:
        if request.path.startswith("/_fake/"):
            return await handler(request)
        if not self.base:
            self.base = f"{request.scheme}://{request.host}"
        record: dict[str, Any] = {
            "method": request.method,
            "path": request.path,
            "query": dict(request.query),
            "headers": {
                k: v
                for k, v in request.headers.items()
                if k.lower().startswith(("x-openstack", "openstack-api"))
            },
        }
        if request.can_read_body:
            with contextlib.suppress(ValueError):
                record["body"] = await request.json()
        self.requests.append(record)
        if request.path == "/identity" or request.path.startswith("/identity/"):
            return await handler(request)
        project = self.tokens.get(request.headers.get("X-Auth-Token", ""))
        if project is None:
            return web.json_response(
                {
                    "error": {
                        "code": 401,
                        "message": "The request you have made requires authentication.",
                        "title": "Unauthorized",
                    }
                },
                status=401,
            )
        request[PROJECT] = project
        return await handler(request)

    async def list_requests(self, _request: web.Request) -> web.Response:
        return web.json_response(self.requests)

    async def fake_servers(self, _request: web.Request) -> web.Response:
        return web.json_response(
            [
                {
                    **s.to_json(),
                    "pid": s.process.proc.pid if s.process.running and s.process.proc else None,
                }
                for s in self.servers.values()
            ]
        )

    # -- keystone -------------------------------------------------------------------------------

    def _v3(self) -> dict[str, Any]:
        return {
            "id": "v3.14",
            "status": "stable",
            "updated": "2020-04-07T00:00:00Z",
            "links": [{"rel": "self", "href": f"{self.base}/identity/v3/"}],
            "media-types": [
                {"base": "application/json", "type": "application/vnd.openstack.identity-v3+json"}
            ],
        }

    async def identity_versions(self, _request: web.Request) -> web.Response:
        """Keystone's version discovery, which keystoneauth reads first."""
        return web.json_response({"versions": {"values": [self._v3()]}}, status=300)

    async def identity_version(self, _request: web.Request) -> web.Response:
        return web.json_response({"version": self._v3()})

    async def issue_token(self, request: web.Request) -> web.Response:
        unauthorized = web.json_response(
            {
                "error": {
                    "code": 401,
                    "message": "The request you have made requires authentication.",
                    "title": "Unauthorized",
                }
            },
            status=401,
        )
        try:
            auth = (await request.json())["auth"]
            identity = auth["identity"]
            user = identity["password"]["user"]
            name, password = user["name"], user["password"]
            scope = auth["scope"]["project"]["name"]
        except (ValueError, KeyError, TypeError):
            return unauthorized
        known = self.users.get(name)
        if known is None or known[0] != password or known[1] != scope:
            return unauthorized
        token = secrets.token_hex(16)
        self.tokens[token] = scope
        expires = time.strftime("%Y-%m-%dT%H:%M:%S.000000Z", time.gmtime(time.time() + 3600))
        base = self.base

        def endpoint(url: str) -> dict[str, Any]:
            return {"interface": "public", "region": REGION, "region_id": REGION, "url": url}

        body = {
            "token": {
                "methods": ["password"],
                "expires_at": expires,
                "project": {"name": scope, "id": scope, "domain": {"name": "Default"}},
                "user": {"name": name, "id": name},
                "catalog": [
                    {
                        "type": "compute",
                        "name": "nova",
                        "endpoints": [endpoint(f"{base}/compute/v2.1")],
                    },
                    {"type": "image", "name": "glance", "endpoints": [endpoint(f"{base}/image")]},
                    {
                        "type": "identity",
                        "name": "keystone",
                        "endpoints": [endpoint(f"{base}/identity")],
                    },
                ],
            }
        }
        return web.json_response(body, status=201, headers={"X-Subject-Token": token})

    # -- glance ---------------------------------------------------------------------------------

    async def image_list(self, request: web.Request) -> web.Response:
        name = request.query.get("name")
        found = [i for i in self.images.values() if name is None or i["name"] == name]
        return web.json_response(
            {"images": found, "first": "/v2/images", "schema": "/v2/schemas/images"}
        )

    async def image_get(self, request: web.Request) -> web.Response:
        image = self.images.get(request.match_info["id"])
        if image is None:
            return web.Response(status=404, text="No image found with ID")
        return web.json_response(image)

    # -- nova -----------------------------------------------------------------------------------

    async def flavor_list(self, _request: web.Request) -> web.Response:
        return web.json_response(
            {"flavors": [{"id": i, "name": n, "links": []} for i, n in self.flavors.items()]}
        )

    def _mine(self, request: web.Request) -> list[Server]:
        return [s for s in self.servers.values() if s.project == request[PROJECT]]

    async def server_create(self, request: web.Request) -> web.Response:
        try:
            body = (await request.json())["server"]
        except (ValueError, KeyError):
            return _nova_error(400, "badRequest", "Malformed request body")
        if not body.get("name"):
            return _nova_error(400, "badRequest", "Invalid input for field/attribute name.")
        if str(body.get("flavorRef")) not in self.flavors:
            return _nova_error(
                400, "badRequest", f"Flavor {body.get('flavorRef')} could not be found."
            )
        boot = body.get("imageRef") or next(
            (
                d.get("uuid")
                for d in body.get("block_device_mapping_v2") or []
                if d.get("boot_index") == 0 and d.get("source_type") == "image"
            ),
            None,
        )
        if boot not in self.images:
            return _nova_error(400, "badRequest", f"Image {boot} could not be found.")
        quota = self.users_quota(request[PROJECT])
        used = len(self._mine(request))
        if quota is not None and used >= quota:
            return _nova_error(
                403,
                "forbidden",
                f"Quota exceeded for instances: Requested 1, but already used {used} of "
                f"{quota} instances",
            )
        server = Server(request[PROJECT], body, self.state / secrets.token_hex(6))
        self.servers[server.id] = server
        task = asyncio.ensure_future(self._boot(server, str(boot)))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return web.json_response(
            {"server": {"id": server.id, "links": [], "adminPass": secrets.token_hex(6)}},
            status=202,
        )

    def users_quota(self, project: str) -> int | None:
        for _password, proj, quota in self.users.values():
            if proj == project:
                return quota
        return None

    async def _boot(self, server: Server, boot: str) -> None:
        await asyncio.sleep(0.5)  # BUILD for a moment
        if server.deleting:
            return
        env = {
            k: str(v) for k, v in (server.body.get("metadata") or {}).items() if _ENV_NAME.match(k)
        }
        await server.process.start(self.entrypoints[boot], env)
        server.status = "ACTIVE"

    async def server_list(self, request: web.Request) -> web.Response:
        pattern = request.query.get("name")
        found = [
            s.to_json()
            for s in self._mine(request)
            if pattern is None or re.search(pattern, str(s.body.get("name")))
        ]
        return web.json_response({"servers": found})

    async def server_get(self, request: web.Request) -> web.Response:
        server = self.servers.get(request.match_info["id"])
        if server is None or server.project != request[PROJECT]:
            return _nova_error(
                404, "itemNotFound", f"Instance {request.match_info['id']} could not be found."
            )
        return web.json_response({"server": server.to_json()})

    async def server_delete(self, request: web.Request) -> web.Response:
        server = self.servers.get(request.match_info["id"])
        if server is None or server.project != request[PROJECT]:
            return _nova_error(
                404, "itemNotFound", f"Instance {request.match_info['id']} could not be found."
            )
        if not server.deleting:
            server.deleting = True
            task = asyncio.ensure_future(self._delete(server))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)
        return web.Response(status=204)

    async def _delete(self, server: Server) -> None:
        await server.process.end(5.0)
        self.servers.pop(server.id, None)

    async def _kill_all(self, _app: web.Application) -> None:
        for server in list(self.servers.values()):
            await server.process.end(5.0)


async def _serve(args: argparse.Namespace) -> None:
    users = {}
    for item in args.user:
        name, password, project, *quota = item.split(":")
        users[name] = (password, project, int(quota[0]) if quota else None)
    images = {}
    for item in args.image:
        name, _, argv = item.partition("=")
        images[name] = json.loads(argv)
    cloud = FakeCloud(Path(args.state), users, images, args.flavor)
    runner = web.AppRunner(cloud.app(), access_log=None)
    await runner.setup()
    await serve_until_stopped(runner, web.TCPSite(runner, "127.0.0.1", args.port))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--state", required=True)
    parser.add_argument("--user", action="append", default=[])
    parser.add_argument("--image", action="append", default=[])
    parser.add_argument("--flavor", action="append", default=[])
    args = parser.parse_args()
    Path(args.state).mkdir(parents=True, exist_ok=True)
    asyncio.run(_serve(args))


if __name__ == "__main__":
    main()
